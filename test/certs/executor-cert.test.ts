/**
 * The executor certificate's DER template (certs/executor-cert.ts via issueExecutorCert) is
 * byte for byte what @peculiar/x509 made for the same serial, time and key before
 * (test/certs/legacy-peculiar.ts): the TBSCertificate always, and the whole certificate
 * for an Ed25519 CA (its signatures are deterministic). And the result is a certificate
 * node, @peculiar/x509, openssl and certs/client-cert.ts all accept.
 */
import { beforeAll, describe, expect, it } from "vitest";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { createPublicKey, generateKeyPairSync, X509Certificate, type KeyObject } from "node:crypto";
import { createCa, type Ca } from "../../certs/ca.ts";
import { parseAndVerifyCsr } from "../../certs/csr.ts";
import { issueExecutorCert, type IssuedCert } from "../../certs/profiles.ts";
import { checkClientCert } from "../../certs/client-cert.ts";
import { executorTbs } from "../../certs/executor-cert.ts";
import { issuerOf } from "../../certs/issuer.ts";
import { certificateSpki } from "../../certs/spki.ts";
import { generateKeyPair, signingParams } from "../../certs/keys.ts";
import { randomSerialHex, x509 } from "../../certs/x509.ts";
import { caFingerprint } from "../../shared/fingerprint.ts";
import { createChainCa } from "../support/ca.ts";
import { tempDir } from "../support/temp-dir.ts";
import { hasOpenssl, makeCsr, openssl } from "./helpers.ts";
import { legacyExecutorCert, tbsOf } from "./legacy-peculiar.ts";

const TD = "tether.local";
const YEAR_S = 365 * 86_400;

/** A P-256 CA whose certificate has no SubjectKeyIdentifier: the AKI falls back to the SHA-1 of its key. */
async function caWithoutSki(): Promise<Ca> {
  const keys = await generateKeyPair("P-256");
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: randomSerialHex(), name: "CN=No SKI CA, O=tether.local", notBefore: new Date(Date.now() - 60_000),
    notAfter: new Date(Date.now() + 86_400_000), signingAlgorithm: signingParams("P-256"), keys,
    extensions: [new x509.BasicConstraintsExtension(true, 0, true), new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign, true)],
  });
  const certPem = cert.toString("pem") + "\n";
  return {
    certPem, cert, privateKey: keys.privateKey, keyType: "p256", notBefore: cert.notBefore, notAfter: cert.notAfter,
    fingerprintSha256: caFingerprint(new Uint8Array(cert.rawData)),
  };
}

const cas: Record<string, Ca> = {};
beforeAll(async () => {
  cas.ed25519 = (await createCa({ trustDomain: TD, validitySeconds: 10 * YEAR_S })).ca;
  cas.p256 = (await createCa({ trustDomain: TD, keyType: "p256", validitySeconds: 10 * YEAR_S })).ca;
  cas["chain p256"] = (await createChainCa("chain")).ca;
  cas["p256 without SKI"] = await caWithoutSki();
});

/** A compressed P-256 key (as `openssl ec -conv_form compressed` would make a CSR carry). */
function compressedP256(): KeyObject {
  const { publicKey } = generateKeyPairSync("ec", { namedCurve: "P-256" });
  const raw = publicKey.export({ format: "jwk" });
  const x = Buffer.from(raw.x!, "base64url");
  const y = Buffer.from(raw.y!, "base64url");
  const prefix = Buffer.from("3039301306072a8648ce3d020106082a8648ce3d030107032200", "hex");
  return createPublicKey({ key: Buffer.concat([prefix, Buffer.from([0x02 | (y[y.length - 1]! & 1)]), x]), format: "der", type: "spki" });
}

async function subjectKeys(): Promise<Array<[string, KeyObject | CryptoKey]>> {
  const fromCsr = async (alg: "Ed25519" | "P-256" | "P-384") => parseAndVerifyCsr((await makeCsr(alg)).pem).publicKey;
  return [
    ["Ed25519 (KeyObject from a CSR)", await fromCsr("Ed25519")],
    ["P-256 (KeyObject from a CSR)", await fromCsr("P-256")],
    ["P-384 (KeyObject from a CSR)", await fromCsr("P-384")],
    ["P-256 (WebCrypto CryptoKey)", (await generateKeyPair("P-256")).publicKey],
    ["P-256 compressed point", compressedP256()],
  ];
}

/** The issued certificate's serial and times, fed to the former @peculiar path. */
async function legacyTwin(ca: Ca, c: IssuedCert, opts: { executorId: string; publicKey: KeyObject | CryptoKey; ttlSeconds: number; now: Date }) {
  return legacyExecutorCert(ca, { ...opts, trustDomain: TD, serialHex: c.serialHex });
}

function checkAccepted(ca: Ca, c: IssuedCert, executorId: string, now: Date): void {
  const n = new X509Certificate(c.pem);
  const caNode = new X509Certificate(ca.certPem);
  expect(Buffer.from(c.der)).toEqual(n.raw);
  expect(n.verify(caNode.publicKey)).toBe(true);
  expect(n.checkIssued(caNode)).toBe(true);
  const p = new x509.X509Certificate(c.pem);
  expect(p.subject).toBe(`CN=${executorId}`);
  expect(p.serialNumber).toBe(c.serialHex);
  const r = checkClientCert(n.raw, { caCerts: [caNode], trustDomain: TD }, now.getTime());
  expect(r).toEqual({ ok: true, identity: { executorId, fingerprint: c.fingerprint, notAfter: c.notAfter.getTime() } });
}

describe("executor certificate DER template", () => {
  it("equals the former @peculiar/x509 certificate: every CA kind × key kind × id", async () => {
    const keys = await subjectKeys();
    for (const [caName, ca] of Object.entries(cas)) {
      for (const [keyName, publicKey] of keys) {
        for (const executorId of ["exec_01-A", "abc", "Z-9", "x".repeat(64)]) {
          const now = new Date(Date.now() - 1234); // milliseconds: the certificate holds whole seconds
          const ttlSeconds = 86_400;
          const c = await issueExecutorCert(ca, { executorId, trustDomain: TD, publicKey, ttlSeconds, now });
          const old = await legacyTwin(ca, c, { executorId, publicKey, ttlSeconds, now });
          const what = `${caName} CA, ${keyName}, id ${executorId.slice(0, 10)}`;
          expect(tbsOf(c.der).toString("hex"), what).toBe(tbsOf(new Uint8Array(old.rawData)).toString("hex"));
          if (ca.keyType === "ed25519") {
            expect(Buffer.from(c.der).toString("hex"), what).toBe(Buffer.from(old.rawData).toString("hex"));
            expect(c.pem, what).toBe(old.toString("pem") + "\n");
          }
          expect(c.notBefore.getTime()).toBe(old.notBefore.getTime());
          expect(c.notAfter.getTime()).toBe(old.notAfter.getTime());
          checkAccepted(ca, c, executorId, now);
        }
      }
    }
  });

  it("writes GeneralizedTime from 2050 on, as before, and stops at the CA's notAfter", async () => {
    const { ca } = await createCa({ trustDomain: TD, validitySeconds: 40 * YEAR_S });
    const { publicKey } = await generateKeyPair("Ed25519");
    for (const [now, ttlSeconds] of [
      [new Date("2049-12-31T23:59:59.750Z"), 3600], // notBefore UTCTime, notAfter GeneralizedTime
      [new Date("2049-12-31T23:50:00.000Z"), 600], // notAfter exactly 2050-01-01T00:00:00Z
      [new Date("2050-01-01T00:05:00.001Z"), 60], // both GeneralizedTime
      [new Date(ca.notAfter.getTime() - 10_000), 3600], // capped at the CA's notAfter
    ] as const) {
      const c = await issueExecutorCert(ca, { executorId: "e1", trustDomain: TD, publicKey, ttlSeconds, now });
      const old = await legacyTwin(ca, c, { executorId: "e1", publicKey, ttlSeconds, now });
      expect(Buffer.from(c.der).toString("hex"), now.toISOString()).toBe(Buffer.from(old.rawData).toString("hex"));
      expect(new X509Certificate(c.pem).verify(new X509Certificate(ca.certPem).publicKey)).toBe(true);
    }
  });

  it("the TBSCertificate depends only on the serial, times, id and key", () => {
    const issuer = issuerOf(cas.ed25519!);
    const spki = certificateSpki(generateKeyPairSync("ed25519").publicKey);
    const f = { serial: Buffer.from("01ff", "hex"), notBefore: new Date(0), notAfter: new Date(1000), executorId: "e", spiffeId: "spiffe://x/executor/e", spki };
    expect(executorTbs(issuer, f)).toEqual(executorTbs(issuer, { ...f }));
    expect(executorTbs(issuer, f)).not.toEqual(executorTbs(issuer, { ...f, executorId: "f" }));
    expect(() => executorTbs(issuer, { ...f, spiffeId: "spiffe://tëther/executor/e" })).toThrow(/not ASCII/);
  });

  it.skipIf(!hasOpenssl)("openssl parses and verifies it, for an Ed25519 and a P-256 CA", async () => {
    const dir = tempDir();
    for (const [caName, ca] of Object.entries(cas)) {
      for (const alg of ["Ed25519", "P-384"] as const) {
        const { publicKey } = parseAndVerifyCsr((await makeCsr(alg)).pem);
        const c = await issueExecutorCert(ca, { executorId: "exec_7", trustDomain: TD, publicKey, ttlSeconds: 3600 });
        const text = openssl(["x509", "-noout", "-text"], c.pem);
        expect(text).toMatch(/Subject: CN ?= ?exec_7\n/);
        expect(text).toMatch(/X509v3 Basic Constraints: critical\s+CA:FALSE/);
        expect(text).toMatch(/X509v3 Key Usage: critical\s+Digital Signature\n/);
        expect(text).toMatch(/X509v3 Extended Key Usage:\s*\n\s+TLS Web Client Authentication\n/);
        expect(text).toMatch(/X509v3 Subject Alternative Name:\s*\n\s+URI:spiffe:\/\/tether.local\/executor\/exec_7\n/);
        expect(text).toMatch(/X509v3 Authority Key Identifier/);
        writeFileSync(join(dir, "ca.pem"), ca.certPem);
        writeFileSync(join(dir, "c.pem"), c.pem);
        expect(openssl(["verify", "-CAfile", join(dir, "ca.pem"), "-purpose", "sslclient", join(dir, "c.pem")]), caName).toMatch(/OK/);
      }
    }
  });
});
