/**
 * The X.509 signature algorithms the PKI reads and writes, with node:crypto doing the
 * signing and verifying (synchronously, on the calling thread: no WebCrypto round trip).
 * ECDSA signatures are DER-encoded, as X.509 and PKCS#10 carry them.
 */
import { sign, verify, type KeyObject } from "node:crypto";
import { seq, tlv, TAG } from "./der.ts";
import type { KeyAlgorithmName } from "./keys.ts";

export interface SignatureAlgorithm {
  name: string;
  /** The AlgorithmIdentifier DER, parameters absent (RFC 8410, RFC 5758 §3.2). */
  id: Buffer;
  /** Which keys sign with it. */
  keys: "ed25519" | "ec";
  /** node:crypto's digest name; null for Ed25519 (no pre-hash). */
  digest: string | null;
}

const algorithm = (name: string, oidHex: string, keys: SignatureAlgorithm["keys"], digest: string | null): SignatureAlgorithm => ({
  name, id: seq(tlv(TAG.OID, Buffer.from(oidHex, "hex"))), keys, digest,
});

const ED25519 = algorithm("Ed25519", "2b6570", "ed25519", null);
const ECDSA_SHA256 = algorithm("ecdsa-with-SHA256", "2a8648ce3d040302", "ec", "sha256");
const ECDSA_SHA384 = algorithm("ecdsa-with-SHA384", "2a8648ce3d040303", "ec", "sha384");

/**
 * What a CSR may be signed with: any of these for its key type. ECDSA with SHA-1 and
 * SHA-512 are accepted, as they were when WebCrypto checked CSRs: the self-signature only
 * proves possession of the key, and nothing of the CSR but its key is used.
 */
const CSR_ALGORITHMS: readonly SignatureAlgorithm[] = [
  ED25519,
  algorithm("ecdsa-with-SHA1", "2a8648ce3d0401", "ec", "sha1"),
  ECDSA_SHA256,
  ECDSA_SHA384,
  algorithm("ecdsa-with-SHA512", "2a8648ce3d040304", "ec", "sha512"),
];

/** The CSR signature algorithm an AlgorithmIdentifier (its DER, tag included) names exactly, or undefined. */
export function csrSignatureAlgorithmOfId(der: Uint8Array): SignatureAlgorithm | undefined {
  return CSR_ALGORITHMS.find((a) => a.id.length === der.length && a.id.equals(der));
}

/**
 * The signature algorithm of a certificate presented to the controller: the same list
 * (a client certificate is only ever one the controller's CAs issued; the list is what
 * OpenSSL would verify for these key types).
 */
export const signatureAlgorithmOfId = csrSignatureAlgorithmOfId;

/** What a key of this type signs certificates with (as certs/keys.ts `signingParams` says for WebCrypto). */
export function signatureAlgorithmFor(alg: KeyAlgorithmName): SignatureAlgorithm {
  return alg === "Ed25519" ? ED25519 : alg === "P-384" ? ECDSA_SHA384 : ECDSA_SHA256;
}

export const keyKindOf = (alg: KeyAlgorithmName): SignatureAlgorithm["keys"] => (alg === "Ed25519" ? "ed25519" : "ec");

export function signWith(alg: SignatureAlgorithm, data: Uint8Array, privateKey: KeyObject): Buffer {
  return sign(alg.digest, data, alg.digest ? { key: privateKey, dsaEncoding: "der" } : privateKey);
}

/** False, never a throw, for a signature that does not verify or cannot be read. */
export function verifies(alg: SignatureAlgorithm, data: Uint8Array, publicKey: KeyObject, signature: Uint8Array): boolean {
  try {
    return verify(alg.digest, data, alg.digest ? { key: publicKey, dsaEncoding: "der" } : publicKey, signature);
  } catch {
    return false;
  }
}
