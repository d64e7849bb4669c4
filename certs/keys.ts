/** Key generation and (de)serialisation for the key types the PKI uses: the one table of their parameters. */
import { createPrivateKey, type KeyObject } from "node:crypto";
import { subtle, toPem } from "./x509.ts";

export type KeyAlgorithmName = "Ed25519" | "P-256" | "P-384";

/** How the command line and the state files spell a key type. */
export type KeyTypeName = "ed25519" | "p256" | "p384";
export const KEY_ALGORITHMS: Readonly<Record<KeyTypeName, KeyAlgorithmName>> = { ed25519: "Ed25519", p256: "P-256", p384: "P-384" };

/** OpenSSL's names for the curves. */
const CURVES = new Map<string | undefined, KeyAlgorithmName>([["prime256v1", "P-256"], ["secp384r1", "P-384"]]);

export function generationParams(alg: KeyAlgorithmName): Algorithm | EcKeyGenParams {
  return alg === "Ed25519" ? { name: "Ed25519" } : { name: "ECDSA", namedCurve: alg };
}

/** The signature algorithm a key of this type signs certificates with. */
export function signingParams(alg: KeyAlgorithmName): Algorithm | EcdsaParams {
  if (alg === "Ed25519") return { name: "Ed25519" };
  return { name: "ECDSA", hash: alg === "P-384" ? "SHA-384" : "SHA-256" };
}

/** The algorithm of a node:crypto key, or undefined for a key type the PKI does not use. */
export function keyAlgorithmOf(ko: KeyObject): KeyAlgorithmName | undefined {
  if (ko.asymmetricKeyType === "ed25519") return "Ed25519";
  if (ko.asymmetricKeyType === "ec") return CURVES.get(ko.asymmetricKeyDetails?.namedCurve);
  return undefined;
}

export async function generateKeyPair(alg: KeyAlgorithmName): Promise<CryptoKeyPair> {
  return (await subtle.generateKey(generationParams(alg) as EcKeyGenParams, true, ["sign", "verify"])) as CryptoKeyPair;
}

export async function privateKeyToPem(key: CryptoKey): Promise<string> {
  return toPem("PRIVATE KEY", await subtle.exportKey("pkcs8", key));
}

/** Reads a PKCS#8 PEM private key, telling its algorithm from the key itself. */
export async function importPrivateKeyPem(pem: string): Promise<{ key: CryptoKey; alg: KeyAlgorithmName }> {
  return importPrivateKey(createPrivateKey(pem));
}

/** Reads a PKCS#8 DER private key (as the store keeps CA keys), telling its algorithm from the key itself. */
export async function importPrivateKeyDer(der: Buffer): Promise<{ key: CryptoKey; alg: KeyAlgorithmName }> {
  return importPrivateKey(createPrivateKey({ key: der, format: "der", type: "pkcs8" }));
}

async function importPrivateKey(ko: KeyObject): Promise<{ key: CryptoKey; alg: KeyAlgorithmName }> {
  const alg = keyAlgorithmOf(ko);
  if (!alg) throw new Error(`unsupported private key type ${ko.asymmetricKeyType}`);
  const der = ko.export({ type: "pkcs8", format: "der" });
  const key = await subtle.importKey("pkcs8", der, generationParams(alg) as EcKeyImportParams, false, ["sign"]);
  return { key, alg };
}

/** PKCS#8 DER of an extractable private key. */
export async function privateKeyToDer(key: CryptoKey): Promise<Buffer> {
  return Buffer.from(await subtle.exportKey("pkcs8", key));
}
