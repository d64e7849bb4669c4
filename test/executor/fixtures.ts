/**
 * A throwaway CA for the executor unit tests (identity store, client, reactions):
 * these test the executor's own code, so minting certificates here is fine. The
 * e2e tests get every certificate from the real controller through /register.
 */
import { webcrypto, createPrivateKey, X509Certificate as NodeX509 } from "node:crypto";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { x509, toPem as pem } from "../../certs/x509.ts";

const EC = { name: "ECDSA", namedCurve: "P-256" };
const SIGN = { name: "ECDSA", hash: "SHA-256" };

export function tempDir(prefix = "tether-exec-unit-"): string {
  return mkdtempSync(join(tmpdir(), prefix));
}

export interface TestCa {
  certPem: string;
  keys: CryptoKeyPairLike;
  issueForCsr(csrPem: string, executorId: string, opts?: { ttlMs?: number; notBefore?: Date }): Promise<string>;
  serverCert(): Promise<{ certPem: string; keyPem: string }>;
}

type CryptoKeyPairLike = { privateKey: unknown; publicKey: unknown };

export async function createTestCa(): Promise<TestCa> {
  const keys = (await webcrypto.subtle.generateKey(EC, true, ["sign", "verify"])) as unknown as CryptoKeyPairLike;
  const ca = await x509.X509CertificateGenerator.createSelfSigned({
    name: "CN=test CA",
    keys: keys as never,
    signingAlgorithm: SIGN,
    notBefore: new Date(Date.now() - 3600_000),
    notAfter: new Date(Date.now() + 24 * 3600_000),
    extensions: [new x509.BasicConstraintsExtension(true, 0, true), new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign, true)],
  });
  const caPem = ca.toString("pem");
  return {
    certPem: caPem,
    keys,
    async issueForCsr(csrPem, executorId, opts = {}) {
      const csr = new x509.Pkcs10CertificateRequest(csrPem);
      const notBefore = opts.notBefore ?? new Date(Date.now() - 1000);
      const cert = await x509.X509CertificateGenerator.create({
        subject: `CN=${executorId}`,
        issuer: ca.subject,
        publicKey: csr.publicKey,
        signingKey: keys.privateKey as never,
        signingAlgorithm: SIGN,
        notBefore,
        notAfter: new Date(notBefore.getTime() + (opts.ttlMs ?? 3600_000)),
        extensions: [
          new x509.SubjectAlternativeNameExtension([{ type: "url", value: `spiffe://tether.local/executor/${executorId}` }]),
          new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.clientAuth]),
          new x509.BasicConstraintsExtension(false),
        ],
      });
      return cert.toString("pem");
    },
    async serverCert() {
      const k = (await webcrypto.subtle.generateKey(EC, true, ["sign", "verify"])) as unknown as CryptoKeyPairLike;
      const cert = await x509.X509CertificateGenerator.create({
        subject: "CN=localhost",
        issuer: ca.subject,
        publicKey: k.publicKey as never,
        signingKey: keys.privateKey as never,
        signingAlgorithm: SIGN,
        notBefore: new Date(Date.now() - 60_000),
        notAfter: new Date(Date.now() + 3600_000),
        extensions: [
          new x509.SubjectAlternativeNameExtension([{ type: "ip", value: "127.0.0.1" }, { type: "dns", value: "localhost" }]),
          new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth]),
        ],
      });
      const keyPem = pem("PRIVATE KEY", await webcrypto.subtle.exportKey("pkcs8", k.privateKey as never));
      createPrivateKey(keyPem);
      return { certPem: cert.toString("pem"), keyPem };
    },
  };
}

export function fingerprintOf(certPem: string): string {
  return new NodeX509(certPem).fingerprint256;
}
