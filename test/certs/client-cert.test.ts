import { beforeAll, describe, expect, it } from "vitest";
import { X509Certificate, createHash } from "node:crypto";
import type { Ca } from "../../certs/ca.ts";
import { checkClientCert } from "../../certs/client-cert.ts";
import { issueExecutorCert, issueServerCert } from "../../certs/profiles.ts";
import { certThumbprint } from "../../shared/fingerprint.ts";
import { x509 } from "../../certs/x509.ts";
import { keyPair } from "./helpers.ts";
import { legacyCa } from "../support/legacy-ca.ts";

const TD = "tether.local";
let ca: Ca;
let other: Ca; // a foreign CA with the very same subject name
let trust: { caCerts: X509Certificate[]; trustDomain: string };
let publicKey: CryptoKey;

beforeAll(async () => {
  // CAs subjects are unique now; an attacker picks any name, so the look-alike copies it (the earlier versions' name).
  ca = (await legacyCa(TD)).ca;
  other = (await legacyCa(TD)).ca;
  trust = { caCerts: [new X509Certificate(ca.certPem)], trustDomain: TD };
  publicKey = (await keyPair("P-256")).publicKey;
});

/** A certificate signed by `signer` with whatever EKU / SANs a test needs. */
async function craft(signer: Ca, opts: { eku?: string[]; sans?: x509.JsonGeneralName[]; isCa?: boolean; days?: number }): Promise<Buffer> {
  const now = Date.now();
  const extensions: x509.Extension[] = [new x509.BasicConstraintsExtension(opts.isCa ?? false, undefined, true)];
  if (opts.eku) extensions.push(new x509.ExtendedKeyUsageExtension(opts.eku));
  if (opts.sans) extensions.push(new x509.SubjectAlternativeNameExtension(opts.sans));
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: "0102",
    subject: "CN=e1",
    issuer: signer.cert.subjectName,
    notBefore: new Date(now - 60_000),
    notAfter: new Date(now + (opts.days ?? 1) * 86_400_000),
    signingKey: signer.privateKey,
    publicKey,
    extensions,
  });
  return Buffer.from(cert.rawData);
}
const spiffe = (id: string, td = TD): x509.JsonGeneralName => ({ type: "url", value: `spiffe://${td}/executor/${id}` });
const CLIENT = x509.ExtendedKeyUsage.clientAuth;
const SERVER = x509.ExtendedKeyUsage.serverAuth;

describe("checkClientCert", () => {
  it("accepts an executor certificate from the CA and names the executor", async () => {
    const c = await issueExecutorCert(ca, { executorId: "exec-42", trustDomain: TD, publicKey, ttlSeconds: 3600 });
    const r = checkClientCert(Buffer.from(c.der), trust);
    expect(r).toEqual({ ok: true, identity: { executorId: "exec-42", fingerprint: c.fingerprint, notAfter: c.notAfter.getTime() } });
  });

  it("accepts a certificate from any CA of the bundle (rotation)", async () => {
    const c = await issueExecutorCert(other, { executorId: "e1", trustDomain: TD, publicKey, ttlSeconds: 3600 });
    const both = { caCerts: [new X509Certificate(ca.certPem), new X509Certificate(other.certPem)], trustDomain: TD };
    expect(checkClientCert(Buffer.from(c.der), both).ok).toBe(true);
  });

  it("no certificate", () => {
    expect(checkClientCert(undefined, trust)).toEqual({ ok: false, reason: "no certificate" });
    expect(checkClientCert(Buffer.alloc(0), trust)).toEqual({ ok: false, reason: "no certificate" });
  });

  it("rejects garbage", () => {
    expect(checkClientCert(Buffer.from("not a certificate"), trust).ok).toBe(false);
  });

  it("untrusted issuer: a look-alike CA with the same name and the same SAN", async () => {
    expect(other.cert.subject).toBe(ca.cert.subject);
    const c = await issueExecutorCert(other, { executorId: "e1", trustDomain: TD, publicKey, ttlSeconds: 3600 });
    expect(checkClientCert(Buffer.from(c.der), trust)).toEqual({ ok: false, reason: "untrusted issuer" });
    // also when the issuer-name check alone would pass: a bare signature check must fail
    const forged = await craft(other, { eku: [CLIENT], sans: [spiffe("e1")] });
    expect(new X509Certificate(forged).checkIssued(trust.caCerts[0]!)).toBe(true);
    expect(checkClientCert(forged, trust)).toEqual({ ok: false, reason: "untrusted issuer" });
  });

  it("expired and not yet valid, via the now parameter", async () => {
    const c = await issueExecutorCert(ca, { executorId: "e1", trustDomain: TD, publicKey, ttlSeconds: 3600 });
    const der = Buffer.from(c.der);
    expect(checkClientCert(der, trust, c.notAfter.getTime() - 1).ok).toBe(true);
    expect(checkClientCert(der, trust, c.notAfter.getTime())).toEqual({ ok: false, reason: "expired" });
    expect(checkClientCert(der, trust, c.notAfter.getTime() + 86_400_000)).toEqual({ ok: false, reason: "expired" });
    expect(checkClientCert(der, trust, c.notBefore.getTime())).toMatchObject({ ok: true });
    expect(checkClientCert(der, trust, c.notBefore.getTime() - 1000)).toEqual({ ok: false, reason: "not yet valid" });
  });

  it("no clientAuth EKU: serverAuth only, no EKU at all, and the server certificate", async () => {
    expect(checkClientCert(await craft(ca, { eku: [SERVER], sans: [spiffe("e1")] }), trust)).toEqual({ ok: false, reason: "no clientAuth EKU" });
    expect(checkClientCert(await craft(ca, { sans: [spiffe("e1")] }), trust)).toEqual({ ok: false, reason: "no clientAuth EKU" });
    const s = await issueServerCert(ca, { sans: ["localhost"], ttlSeconds: 3600 });
    expect(checkClientCert(Buffer.from(s.der), trust)).toEqual({ ok: false, reason: "no clientAuth EKU" });
    // both EKUs is fine as far as this check goes
    expect(checkClientCert(await craft(ca, { eku: [SERVER, CLIENT], sans: [spiffe("e1")] }), trust).ok).toBe(true);
  });

  it("bad SAN: other trust domain, two URIs, extra DNS, bad id, other path, none", async () => {
    const bad: x509.JsonGeneralName[][] = [
      [spiffe("e1", "other.local")],
      [spiffe("e1"), spiffe("e2")],
      [spiffe("e1"), { type: "dns", value: "localhost" }],
      [spiffe("a.b")],
      [spiffe("x".repeat(65))],
      [spiffe("")],
      [{ type: "url", value: `spiffe://${TD}/controller` }],
      [{ type: "url", value: `spiffe://${TD}/executor/e1/extra` }],
      [{ type: "url", value: `https://${TD}/executor/e1` }],
      [{ type: "dns", value: "e1" }],
    ];
    for (const sans of bad) {
      expect(checkClientCert(await craft(ca, { eku: [CLIENT], sans }), trust), JSON.stringify(sans)).toEqual({ ok: false, reason: "bad SAN" });
    }
    expect(checkClientCert(await craft(ca, { eku: [CLIENT] }), trust)).toEqual({ ok: false, reason: "bad SAN" });
    // and a trust domain with regex metacharacters is matched literally
    const dotted = { caCerts: trust.caCerts, trustDomain: "a.b" };
    expect(checkClientCert(await craft(ca, { eku: [CLIENT], sans: [spiffe("e1", "axb")] }), dotted)).toEqual({ ok: false, reason: "bad SAN" });
    expect(checkClientCert(await craft(ca, { eku: [CLIENT], sans: [spiffe("e1", "a.b")] }), dotted).ok).toBe(true);
  });

  it("rejects the CA certificate itself", () => {
    const r = checkClientCert(new X509Certificate(ca.certPem).raw, trust);
    expect(r.ok).toBe(false);
  });

  it("the fingerprint is base64url SHA-256 of the DER", async () => {
    const der = await craft(ca, { eku: [CLIENT], sans: [spiffe("zz")] });
    const r = checkClientCert(der, trust);
    expect(r.ok && r.identity.fingerprint).toBe(certThumbprint(der));
    expect(r.ok && r.identity.fingerprint).toBe(createHash("sha256").update(der).digest("base64url"));
  });
});
