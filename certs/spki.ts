/**
 * SubjectPublicKeyInfo DER for the key types the PKI uses (Ed25519, P-256, P-384): the
 * algorithm identifiers a CSR's key must carry byte for byte, the key object made from
 * one, and the SPKI written into a certificate (an EC point always uncompressed).
 */
import { createPublicKey, type KeyObject } from "node:crypto";
import { bitString, oidToString, seq, tlv, TAG } from "./der.ts";
import { keyAlgorithmOf, type KeyAlgorithmName } from "./keys.ts";

const oid = (hex: string) => tlv(TAG.OID, Buffer.from(hex, "hex"));
const ID_ED25519 = "2b6570";
const ID_EC_PUBLIC_KEY = "2a8648ce3d0201";
const CURVE_OIDS: Readonly<Record<"P-256" | "P-384", string>> = { "P-256": "2a8648ce3d030107", "P-384": "2b81040022" };

/** The AlgorithmIdentifier of each key type: Ed25519 without parameters (RFC 8410), EC with its named curve (RFC 5480). */
const ALGORITHM_IDS: ReadonlyArray<[KeyAlgorithmName, Buffer]> = [
  ["Ed25519", seq(oid(ID_ED25519))],
  ["P-256", seq(oid(ID_EC_PUBLIC_KEY), oid(CURVE_OIDS["P-256"]))],
  ["P-384", seq(oid(ID_EC_PUBLIC_KEY), oid(CURVE_OIDS["P-384"]))],
];
const algorithmId = new Map(ALGORITHM_IDS);

/** Bytes of a field element (an EC coordinate). */
const COORDINATE_BYTES: Readonly<Record<"P-256" | "P-384", number>> = { "P-256": 32, "P-384": 48 };

/** The key type an SPKI's AlgorithmIdentifier (its DER, tag included) names exactly, or undefined. */
export function keyAlgorithmOfId(algorithmIdDer: Uint8Array): KeyAlgorithmName | undefined {
  for (const [alg, der] of ALGORITHM_IDS) if (der.length === algorithmIdDer.length && der.equals(algorithmIdDer)) return alg;
  return undefined;
}

/** Names of key algorithms and curves, for messages. */
const NAMES = new Map([
  ["1.3.101.112", "ed25519"],
  ["1.2.840.10045.2.1", "ec"],
  ["1.2.840.10045.3.1.7", "prime256v1"],
  ["1.3.132.0.34", "secp384r1"],
  ["1.2.840.113549.1.1.1", "rsa"],
  ["1.2.840.113549.1.1.10", "rsa-pss"],
  ["1.2.840.10040.4.1", "dsa"],
  ["1.3.101.110", "x25519"],
  ["1.3.101.111", "x448"],
  ["1.3.101.113", "ed448"],
  ["1.3.132.0.35", "secp521r1"],
  ["1.3.132.0.10", "secp256k1"],
  ["1.3.132.0.33", "secp224r1"],
  ["1.2.840.10045.3.1.1", "prime192v1"],
]);
const SUPPORTED = new Set(["ed25519", "ec (prime256v1)", "ec (secp384r1)"]);

/**
 * How a refused AlgorithmIdentifier reads in a message, from its OIDs (the algorithm, then
 * the curve when there is one): `rsa`, `ec (secp521r1)`, an unknown OID dotted, or
 * `ed25519 with non-standard parameters` for a supported key type encoded otherwise.
 */
export function describeKeyAlgorithm(oids: readonly Uint8Array[]): string {
  const [alg, curve] = oids.map((o) => {
    const dotted = oidToString(o);
    return NAMES.get(dotted) ?? dotted;
  });
  const text = alg === "ec" ? `ec (${curve ?? "explicit parameters"})` : (alg ?? "(none)");
  return SUPPORTED.has(text) ? `${text} with non-standard parameters` : text;
}

/** An SPKI of a key type the PKI uses. */
export function spkiDer(alg: KeyAlgorithmName, publicKeyBits: Uint8Array): Buffer {
  return seq(algorithmId.get(alg)!, bitString(publicKeyBits));
}

/**
 * The key object of an SPKI whose AlgorithmIdentifier is `alg`'s. Ed25519 goes through
 * JWK (the raw key: no OpenSSL decoder, ~10× quicker); EC through the DER, which also reads
 * a compressed point. Throws on a key OpenSSL refuses (wrong length, point off the curve).
 */
export function publicKeyFromSpki(alg: KeyAlgorithmName, publicKeyBits: Uint8Array, spki: Uint8Array): KeyObject {
  if (alg === "Ed25519") {
    if (publicKeyBits.length !== 32) throw new Error("an Ed25519 key is 32 bytes");
    return createPublicKey({ key: { kty: "OKP", crv: "Ed25519", x: Buffer.from(publicKeyBits).toString("base64url") }, format: "jwk" });
  }
  const key = createPublicKey({ key: Buffer.from(spki), format: "der", type: "spki" });
  if (keyAlgorithmOf(key) !== alg) throw new Error(`the key is not ${alg}`);
  return key;
}

function coordinate(b64u: string | undefined, bytes: number): Buffer {
  const b = Buffer.from(b64u ?? "", "base64url");
  if (b.length > bytes || b.length === 0) throw new Error("bad EC coordinate");
  return b.length === bytes ? b : Buffer.concat([Buffer.alloc(bytes - b.length), b]);
}

/**
 * The SPKI a certificate carries for `key`: an EC point is always written uncompressed,
 * whatever form the CSR used — RFC 5480 lets a CSR carry a compressed point, but many TLS
 * stacks and verifiers accept only the uncompressed one. Built from the key's JWK
 * coordinates: a microsecond, where OpenSSL's SPKI encoder takes ~100 µs.
 */
export function certificateSpki(key: KeyObject): Buffer {
  const alg = keyAlgorithmOf(key);
  if (!alg || key.type !== "public") throw new Error(`unsupported certificate key type ${key.asymmetricKeyType ?? key.type}`);
  const jwk = key.export({ format: "jwk" });
  if (alg === "Ed25519") return spkiDer(alg, coordinate(jwk.x, 32));
  const n = COORDINATE_BYTES[alg];
  return spkiDer(alg, Buffer.concat([Buffer.from([0x04]), coordinate(jwk.x, n), coordinate(jwk.y, n)]));
}
