/** Key generation and (de)serialisation for the key types the PKI uses. */
import { createPrivateKey } from "node:crypto";
import { subtle, toPem } from "./x509.ts";

export type KeyAlgorithmName = "Ed25519" | "P-256" | "P-384";

export function generationParams(alg: KeyAlgorithmName): Algorithm | EcKeyGenParams {
  return alg === "Ed25519" ? { name: "Ed25519" } : { name: "ECDSA", namedCurve: alg };
}

/** The signature algorithm a key of this type signs certificates with. */
export function signingParams(alg: KeyAlgorithmName): Algorithm | EcdsaParams {
  if (alg === "Ed25519") return { name: "Ed25519" };
  return { name: "ECDSA", hash: alg === "P-384" ? "SHA-384" : "SHA-256" };
}

export async function generateKeyPair(alg: KeyAlgorithmName): Promise<CryptoKeyPair> {
  return (await subtle.generateKey(generationParams(alg) as EcKeyGenParams, true, ["sign", "verify"])) as CryptoKeyPair;
}

export async function privateKeyToPem(key: CryptoKey): Promise<string> {
  return toPem("PRIVATE KEY", await subtle.exportKey("pkcs8", key));
}

/** Reads a PKCS#8 PEM private key, telling its algorithm from the key itself. */
export async function importPrivateKeyPem(pem: string): Promise<{ key: CryptoKey; alg: KeyAlgorithmName }> {
  const ko = createPrivateKey(pem);
  let alg: KeyAlgorithmName;
  if (ko.asymmetricKeyType === "ed25519") alg = "Ed25519";
  else if (ko.asymmetricKeyType === "ec" && ko.asymmetricKeyDetails?.namedCurve === "prime256v1") alg = "P-256";
  else if (ko.asymmetricKeyType === "ec" && ko.asymmetricKeyDetails?.namedCurve === "secp384r1") alg = "P-384";
  else throw new Error(`unsupported private key type ${ko.asymmetricKeyType}`);
  const der = ko.export({ type: "pkcs8", format: "der" });
  const key = await subtle.importKey("pkcs8", der, generationParams(alg) as EcKeyImportParams, false, ["sign"]);
  return { key, alg };
}
