/**
 * A CA for tests: the controller's own (certs/ca.ts `loadOrCreateCa`) in a temp dir that
 * is removed after the test file, plus issuing with the timing a test needs.
 *
 *   import { createTestCa } from "../support/ca.ts";
 *   const ca = await createTestCa();                      // Ed25519, trust domain tether.local
 *   const p256 = await createTestCa({ keyType: "p256" });
 *   ca.ca                  // the certs/ca.ts `Ca` (issueExecutorCert, issueServerCert, bundlePem…)
 *   ca.certPem             // its certificate: the trust bundle to hand to the other side
 *   await ca.issueForCsr(csrPem, "ex_1", { ttlMs: 6000, notBefore })  // executor client cert, PEM
 *   await ca.serverCert()  // { certPem, keyPem } for 127.0.0.1 and localhost
 *
 * `issueForCsr` follows the PROTOCOL §2 SAN (spiffe://<trust domain>/executor/<id>) but,
 * unlike certs/profiles.ts, takes the validity as given (no back-dating, millisecond
 * lifetimes), so renewal timing can be tested.
 *
 * CA rotation (PROTOCOL §7.2) needs CAs with distinct subjects whose certificates allow
 * one intermediate (pathLenConstraint 1), and a cross certificate between them:
 *
 *   const old = await createChainCa("old"), next = await createChainCa("next");
 *   const cross = await old.crossSign(next);   // next's subject and key, issued by old (pathlen 0)
 *   const { certPem, keyPem } = await next.serverCert();
 *   // serve certPem + cross: a client trusting only old.certPem verifies it
 */
import { loadOrCreateCa, caKeyAlg, type Ca, type CaKeyType } from "../../certs/ca.ts";
import { generateKeyPair, signingParams } from "../../certs/keys.ts";
import { issueServerCert } from "../../certs/profiles.ts";
import { randomSerialHex, x509 } from "../../certs/x509.ts";
import { executorSpiffeId } from "../../shared/protocol.ts";
import { caFingerprint } from "../../shared/fingerprint.ts";
import { tempDir } from "./temp-dir.ts";

export const TEST_TRUST_DOMAIN = "tether.local";

export interface TestCa {
  ca: Ca;
  certPem: string;
  /** A client certificate for the key of `csrPem`, valid from `notBefore` (default 1 s ago) for `ttlMs` (default 1 h). */
  issueForCsr(csrPem: string, executorId: string, opts?: { ttlMs?: number; notBefore?: Date }): Promise<string>;
  /** A server certificate (P-256 key, 1 h) for 127.0.0.1 and localhost. */
  serverCert(): Promise<{ certPem: string; keyPem: string }>;
}

export async function createTestCa(opts: { keyType?: CaKeyType; trustDomain?: string; validityDays?: number } = {}): Promise<TestCa> {
  const trustDomain = opts.trustDomain ?? TEST_TRUST_DOMAIN;
  const { ca } = await loadOrCreateCa(tempDir("tether-test-ca-"), { trustDomain, keyType: opts.keyType, validityDays: opts.validityDays });
  return wrap(ca, trustDomain);
}

export interface ChainCa extends TestCa {
  /** A cross certificate: `next`'s subject and public key, issued by this CA, CA:true pathLenConstraint 0. */
  crossSign(next: ChainCa): Promise<string>;
}

/** A P-256 CA with the subject `CN=Tether test CA <name>, O=<trust domain>` and pathLenConstraint 1, valid 1 day. */
export async function createChainCa(name: string, opts: { trustDomain?: string } = {}): Promise<ChainCa> {
  const trustDomain = opts.trustDomain ?? TEST_TRUST_DOMAIN;
  const keys = await generateKeyPair("P-256");
  const now = Date.now();
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: randomSerialHex(),
    name: `CN=Tether test CA ${name}, O=${trustDomain}`,
    notBefore: new Date(now - 5 * 60_000),
    notAfter: new Date(now + 86_400_000),
    signingAlgorithm: signingParams("P-256"),
    keys,
    extensions: [...(await caExtensions(keys.publicKey, 1))],
  });
  const certPem = cert.toString("pem") + "\n";
  const ca: Ca = {
    certPem, cert, privateKey: keys.privateKey, keyType: "p256", notBefore: cert.notBefore, notAfter: cert.notAfter,
    fingerprintSha256: caFingerprint(new Uint8Array(cert.rawData)),
  };
  return {
    ...wrap(ca, trustDomain),
    async crossSign(next) {
      const cross = await x509.X509CertificateGenerator.create({
        serialNumber: randomSerialHex(),
        subject: next.ca.cert.subjectName,
        issuer: ca.cert.subjectName,
        publicKey: next.ca.cert.publicKey,
        signingKey: ca.privateKey,
        signingAlgorithm: signingParams("P-256"),
        notBefore: new Date(Date.now() - 60_000),
        notAfter: next.ca.notAfter,
        extensions: [
          ...(await caExtensions(await next.ca.cert.publicKey.export(), 0)),
          await x509.AuthorityKeyIdentifierExtension.create(keys.publicKey),
        ],
      });
      return cross.toString("pem") + "\n";
    },
  };
}

async function caExtensions(publicKey: CryptoKey, pathLength: number): Promise<x509.Extension[]> {
  return [
    new x509.BasicConstraintsExtension(true, pathLength, true),
    new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
    await x509.SubjectKeyIdentifierExtension.create(publicKey),
  ];
}

function wrap(ca: Ca, trustDomain: string): TestCa {
  return {
    ca,
    certPem: ca.certPem,
    async issueForCsr(csrPem, executorId, o = {}) {
      const notBefore = o.notBefore ?? new Date(Date.now() - 1000);
      const cert = await x509.X509CertificateGenerator.create({
        serialNumber: randomSerialHex(),
        subject: `CN=${executorId}`,
        issuer: ca.cert.subjectName,
        publicKey: new x509.Pkcs10CertificateRequest(csrPem).publicKey,
        signingKey: ca.privateKey,
        signingAlgorithm: signingParams(caKeyAlg(ca)),
        notBefore,
        notAfter: new Date(notBefore.getTime() + (o.ttlMs ?? 3600_000)),
        extensions: [
          new x509.SubjectAlternativeNameExtension([{ type: "url", value: executorSpiffeId(trustDomain, executorId) }]),
          new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.clientAuth]),
          new x509.BasicConstraintsExtension(false),
        ],
      });
      return cert.toString("pem");
    },
    async serverCert() {
      const { pem, keyPem } = await issueServerCert(ca, { sans: ["127.0.0.1", "localhost"], ttlSeconds: 3600 });
      return { certPem: pem, keyPem };
    },
  };
}
