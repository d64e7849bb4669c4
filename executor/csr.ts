/**
 * A fresh private key and a PKCS#10 CSR for it, in-process (WebCrypto +
 * @peculiar/x509). The key never leaves this process except into the state dir
 * (0600); only the CSR goes to the controller, which ignores its subject.
 */
import { webcrypto, createPrivateKey, createPublicKey } from "node:crypto";
import { x509, toPem } from "../certs/x509.ts";

export type KeyType = "ed25519" | "p256" | "p384";
export const KEY_TYPES: readonly KeyType[] = ["ed25519", "p256", "p384"];

export interface KeyAndCsr {
  /** PKCS#8 PEM of the private key. */
  keyPem: string;
  csrPem: string;
}

type CreateParams = Parameters<typeof x509.Pkcs10CertificateRequestGenerator.create>[0];
type X509Crypto = Parameters<typeof x509.Pkcs10CertificateRequestGenerator.create>[1];

function algorithms(type: KeyType): { gen: webcrypto.AlgorithmIdentifier | webcrypto.EcKeyGenParams; sign: { name: string; hash?: string } } {
  switch (type) {
    case "ed25519":
      return { gen: { name: "Ed25519" }, sign: { name: "Ed25519" } };
    case "p256":
      return { gen: { name: "ECDSA", namedCurve: "P-256" }, sign: { name: "ECDSA", hash: "SHA-256" } };
    case "p384":
      return { gen: { name: "ECDSA", namedCurve: "P-384" }, sign: { name: "ECDSA", hash: "SHA-384" } };
  }
}

/** Generates a new key pair of `type` and a CSR signed with it. `name` only decorates the subject. */
export async function newKeyAndCsr(type: KeyType = "ed25519", name = "tether-executor"): Promise<KeyAndCsr> {
  const alg = algorithms(type);
  const keys = (await webcrypto.subtle.generateKey(alg.gen, true, ["sign", "verify"])) as webcrypto.CryptoKeyPair;
  const cn = name.replace(/[^A-Za-z0-9_.-]/g, "_").slice(0, 64) || "tether-executor";
  const params = { name: `CN=${cn}`, keys, signingAlgorithm: alg.sign } as unknown as CreateParams;
  const csr = await x509.Pkcs10CertificateRequestGenerator.create(params, webcrypto as unknown as X509Crypto);
  const keyPem = toPem("PRIVATE KEY", await webcrypto.subtle.exportKey("pkcs8", keys.privateKey));
  return { keyPem, csrPem: csr.toString("pem") };
}

/** DER SubjectPublicKeyInfo of a private key (PEM), for matching it against a certificate. */
export function publicKeyDerOfPrivateKey(keyPem: string): Buffer {
  return createPublicKey(createPrivateKey(keyPem)).export({ type: "spki", format: "der" });
}
