/**
 * A fresh private key and a PKCS#10 CSR for it, in-process (WebCrypto +
 * @peculiar/x509). The key never leaves this process except into the state dir
 * (0600); only the CSR goes to the controller, which ignores its subject.
 */
import { createPrivateKey, createPublicKey } from "node:crypto";
import { x509 } from "../certs/x509.ts";
import { generateKeyPair, KEY_ALGORITHMS, privateKeyToPem, signingParams, type KeyTypeName } from "../certs/keys.ts";

export type KeyType = KeyTypeName;
export const KEY_TYPES: readonly KeyType[] = ["ed25519", "p256", "p384"];

export interface KeyAndCsr {
  /** PKCS#8 PEM of the private key. */
  keyPem: string;
  csrPem: string;
}

/** Generates a new key pair of `type` and a CSR signed with it. `name` only decorates the subject. */
export async function newKeyAndCsr(type: KeyType = "ed25519", name = "tether-executor"): Promise<KeyAndCsr> {
  const alg = KEY_ALGORITHMS[type];
  const keys = await generateKeyPair(alg);
  const cn = name.replace(/[^A-Za-z0-9_.-]/g, "_").slice(0, 64) || "tether-executor";
  const csr = await x509.Pkcs10CertificateRequestGenerator.create({ name: `CN=${cn}`, keys, signingAlgorithm: signingParams(alg) });
  return { keyPem: await privateKeyToPem(keys.privateKey), csrPem: csr.toString("pem") };
}

/** DER SubjectPublicKeyInfo of a private key (PEM), for matching it against a certificate. */
export function publicKeyDerOfPrivateKey(keyPem: string): Buffer {
  return createPublicKey(createPrivateKey(keyPem)).export({ type: "spki", format: "der" });
}
