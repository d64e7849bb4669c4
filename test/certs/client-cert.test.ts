import { beforeAll, describe, expect, it } from "vitest";
import { X509Certificate, createHash } from "node:crypto";
import type { Ca } from "../../certs/ca.ts";
import { checkClientCert, ClientCertChecker } from "../../certs/client-cert.ts";
import { issueExecutorCert, issueServerCert } from "../../certs/profiles.ts";
import { certThumbprint } from "../../shared/fingerprint.ts";
import { x509 } from "../../certs/x509.ts";
import { keyPair } from "./helpers.ts";
import { legacyCa } from "../support/legacy-ca.ts";
import { x509ClientCertCheck } from "../support/x509-client-cert.ts";

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

describe("ClientCertChecker (verdicts kept per certificate and trust set)", () => {
  it("gives checkClientCert's answers, and keeps one verdict per certificate", async () => {
    const checker = new ClientCertChecker();
    const good = Buffer.from((await issueExecutorCert(ca, { executorId: "e7", trustDomain: TD, publicKey, ttlSeconds: 3600 })).der);
    const foreign = Buffer.from((await issueExecutorCert(other, { executorId: "e7", trustDomain: TD, publicKey, ttlSeconds: 3600 })).der);
    const noEku = await craft(ca, { sans: [spiffe("e1")] });
    for (const der of [good, foreign, noEku, Buffer.from("garbage"), undefined]) {
      expect(checker.check(der, trust)).toEqual(checkClientCert(der, trust));
      expect(checker.check(der, trust)).toEqual(checkClientCert(der, trust)); // the kept verdict, same answer
    }
    expect(checker.size).toBe(4); // no verdict kept for "no certificate"
  });

  it("checks the time on every call: a kept verdict expires with its certificate", async () => {
    const checker = new ClientCertChecker();
    const c = await issueExecutorCert(ca, { executorId: "e1", trustDomain: TD, publicKey, ttlSeconds: 3600 });
    const der = Buffer.from(c.der);
    expect(checker.check(der, trust, c.notAfter.getTime() - 1).ok).toBe(true);
    expect(checker.check(der, trust, c.notAfter.getTime())).toEqual({ ok: false, reason: "expired" });
    expect(checker.check(der, trust, c.notBefore.getTime() - 1000)).toEqual({ ok: false, reason: "not yet valid" });
    expect(checker.check(der, trust, c.notAfter.getTime() - 1).ok).toBe(true);
    expect(checker.size).toBe(1);
  });

  it("drops every verdict when the trust set changes: a certificate whose CA left the bundle is refused at once", async () => {
    const checker = new ClientCertChecker();
    const c = await issueExecutorCert(other, { executorId: "e1", trustDomain: TD, publicKey, ttlSeconds: 3600 });
    const der = Buffer.from(c.der);
    const both = { caCerts: [new X509Certificate(ca.certPem), new X509Certificate(other.certPem)], trustDomain: TD };
    expect(checker.check(der, both).ok).toBe(true);
    // The CA set after `other` left: a new array, as the CA set makes on every change.
    const after = { caCerts: both.caCerts.slice(0, 1), trustDomain: TD };
    expect(checker.check(der, after)).toEqual({ ok: false, reason: "untrusted issuer" });
    // and another trust domain is judged afresh too
    const good = Buffer.from((await issueExecutorCert(ca, { executorId: "e1", trustDomain: TD, publicKey, ttlSeconds: 3600 })).der);
    expect(checker.check(good, after).ok).toBe(true);
    expect(checker.check(good, { caCerts: after.caCerts, trustDomain: "other.local" })).toEqual({ ok: false, reason: "bad SAN" });
  });

  it("holds at most `max` verdicts, the oldest dropped first", async () => {
    const checker = new ClientCertChecker(2);
    const ders = await Promise.all(["a1", "a2", "a3"].map(async (id) => Buffer.from((await issueExecutorCert(ca, { executorId: id, trustDomain: TD, publicKey, ttlSeconds: 3600 })).der)));
    for (const der of ders) expect(checker.check(der, trust).ok).toBe(true);
    expect(checker.size).toBe(2);
    expect(checker.check(ders[0], trust).ok).toBe(true); // judged again, still right
  });
});

describe("the DER check agrees with OpenSSL's (X509Certificate) on every certificate here", () => {
  it("same verdict, executor and expiry for valid, foreign, CA, server, EKU, SAN, time and damaged certificates", async () => {
    const ed = await issueExecutorCert(ca, { executorId: "ed-1", trustDomain: TD, publicKey, ttlSeconds: 3600 });
    const corpus: [string, Buffer][] = [
      ["executor", Buffer.from(ed.der)],
      ["foreign CA", Buffer.from((await issueExecutorCert(other, { executorId: "e1", trustDomain: TD, publicKey, ttlSeconds: 3600 })).der)],
      ["forged issuer name", await craft(other, { eku: [CLIENT], sans: [spiffe("e1")] })],
      ["CA itself", Buffer.from(new X509Certificate(ca.certPem).raw)],
      ["server", Buffer.from((await issueServerCert(ca, { sans: ["localhost"], ttlSeconds: 3600 })).der)],
      ["isCa", await craft(ca, { isCa: true, eku: [CLIENT], sans: [spiffe("e1")] })],
      ["no EKU", await craft(ca, { sans: [spiffe("e1")] })],
      ["both EKUs", await craft(ca, { eku: [SERVER, CLIENT], sans: [spiffe("e1")] })],
      ["two URIs", await craft(ca, { eku: [CLIENT], sans: [spiffe("e1"), spiffe("e2")] })],
      ["URI + DNS", await craft(ca, { eku: [CLIENT], sans: [spiffe("e1"), { type: "dns", value: "x" }] })],
      ["other domain", await craft(ca, { eku: [CLIENT], sans: [spiffe("e1", "other.local")] })],
      ["no SAN", await craft(ca, { eku: [CLIENT] })],
      ["long life", await craft(ca, { eku: [CLIENT], sans: [spiffe("e9")], days: 365 * 40 })], // notAfter past 2049: GeneralizedTime
      ["garbage", Buffer.from("not a certificate")],
    ];
    // Damaged copies of the valid certificate: a flipped bit in the signature, in the SAN, in the validity; cut short; a byte appended.
    const flip = (at: number) => { const b = Buffer.from(ed.der); b[at] = b[at]! ^ 0x01; return b; };
    const sanAt = Buffer.from(ed.der).indexOf(Buffer.from("ed-1"));
    const validityAt = Buffer.from(ed.der).indexOf(Buffer.from([0x17, 0x0d]));
    corpus.push(["signature bit", flip(ed.der.length - 3)], ["SAN byte", flip(sanAt)], ["validity byte", flip(validityAt + 5)],
      ["truncated", Buffer.from(ed.der).subarray(0, ed.der.length - 1)]);
    const times = [Date.now(), ed.notAfter.getTime(), ed.notBefore.getTime() - 1000];
    for (const [name, der] of corpus) {
      for (const now of times) {
        const mine = checkClientCert(der, trust, now);
        const ref = x509ClientCertCheck(der, trust, now);
        expect({ name, ok: mine.ok, id: mine.ok ? mine.identity.executorId : undefined, notAfter: mine.ok ? mine.identity.notAfter : undefined })
          .toEqual({ name, ok: ref.ok, id: ref.executorId, notAfter: ref.notAfter });
      }
    }
    // One deliberate difference: DER has nothing after the certificate; OpenSSL reads one and ignores what follows.
    const trailing = Buffer.concat([Buffer.from(ed.der), Buffer.from([0])]);
    expect(x509ClientCertCheck(trailing, trust).ok).toBe(true);
    expect(checkClientCert(trailing, trust)).toEqual({ ok: false, reason: "unparseable certificate" });
    // The corpus is not all refusals: the valid ones pass both.
    expect(corpus.filter(([, der]) => checkClientCert(der, trust).ok).map(([n]) => n)).toEqual(["executor", "both EKUs", "long life"]);
  });
});
