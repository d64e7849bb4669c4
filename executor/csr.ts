/**
 * A fresh private key and a PKCS#10 CSR for it (RFC 2986), in-process with node:crypto:
 * the DER writer and the signature algorithms are the ones the controller reads CSRs with
 * (certs/der.ts, certs/signature-algorithms.ts), so the daemon loads no ASN.1 library.
 * The key never leaves this process except into the state dir (0600); only the CSR goes
 * to the controller, which ignores its subject.
 *
 *   CertificationRequest ::= SEQUENCE { certificationRequestInfo, signatureAlgorithm, signature BIT STRING }
 *   CertificationRequestInfo ::= SEQUENCE { version INTEGER (0), subject Name, subjectPKInfo, attributes [0] (empty) }
 */
import { createPrivateKey, createPublicKey, generateKeyPair, type KeyObject } from "node:crypto";
import { promisify } from "node:util";
import { bitString, contextTag, seq, tlv, TAG } from "../certs/der.ts";
// Types only: certs/keys.ts loads @peculiar/x509, which the daemon does without.
import type { KeyAlgorithmName, KeyTypeName } from "../certs/keys.ts";
import { signatureAlgorithmFor, signWith } from "../certs/signature-algorithms.ts";

export type KeyType = KeyTypeName;
export const KEY_TYPES: readonly KeyType[] = ["ed25519", "p256", "p384"];

/** certs/keys.ts KEY_ALGORITHMS (checked against its types; that module is not loaded here). */
const KEY_ALGORITHMS: Readonly<Record<KeyType, KeyAlgorithmName>> = { ed25519: "Ed25519", p256: "P-256", p384: "P-384" };

export interface KeyAndCsr {
  /** PKCS#8 PEM of the private key. */
  keyPem: string;
  csrPem: string;
}

const generate = promisify(generateKeyPair);

function newPrivateKey(alg: KeyAlgorithmName): Promise<KeyObject> {
  const pair = alg === "Ed25519" ? generate("ed25519") : generate("ec", { namedCurve: alg });
  return pair.then((p) => p.privateKey);
}

const VERSION_1 = tlv(TAG.INTEGER, Buffer.from([0]));
const ID_COMMON_NAME = tlv(TAG.OID, Buffer.from("550403", "hex")); // 2.5.4.3

/** Name ::= SEQUENCE OF SET OF SEQUENCE { type, value }: one CN, as a UTF8String. */
const commonNameSubject = (cn: string): Buffer => seq(tlv(TAG.SET, seq(ID_COMMON_NAME, tlv(TAG.UTF8_STRING, Buffer.from(cn, "utf8")))));

function pem(label: string, der: Buffer): string {
  const lines = der.toString("base64").match(/.{1,64}/g) ?? [];
  return `-----BEGIN ${label}-----\n${lines.join("\n")}\n-----END ${label}-----\n`;
}

/** Generates a new key pair of `type` and a CSR signed with it. `name` only decorates the subject. */
export async function newKeyAndCsr(type: KeyType = "ed25519", name = "tether-executor"): Promise<KeyAndCsr> {
  const alg = KEY_ALGORITHMS[type];
  if (!alg) throw new Error(`unsupported key type ${String(type)}`);
  const key = await newPrivateKey(alg);
  const cn = name.replace(/[^A-Za-z0-9_.-]/g, "_").slice(0, 64) || "tether-executor";
  const spki = createPublicKey(key).export({ type: "spki", format: "der" });
  const info = seq(VERSION_1, commonNameSubject(cn), spki, tlv(contextTag(0, true)));
  const sigAlg = signatureAlgorithmFor(alg);
  const csr = seq(info, sigAlg.id, bitString(signWith(sigAlg, info, key)));
  return { keyPem: key.export({ type: "pkcs8", format: "pem" }) as string, csrPem: pem("CERTIFICATE REQUEST", csr) };
}

/** DER SubjectPublicKeyInfo of a private key (PEM), for matching it against a certificate. */
export function publicKeyDerOfPrivateKey(keyPem: string): Buffer {
  return createPublicKey(createPrivateKey(keyPem)).export({ type: "spki", format: "der" });
}
