/**
 * What every certificate a CA issues takes from the CA, read once per CA: its subject (the
 * issuer name, byte for byte), the key identifier for the AuthorityKeyIdentifier, and the
 * node:crypto private key and signature algorithm it signs with.
 */
import { createHash, KeyObject, type webcrypto } from "node:crypto";
import { bitStringBytes, childrenOf, contentOf, elementOf, readSingle, TAG, contextTag, type Tlv } from "./der.ts";
import { caKeyAlg, type Ca } from "./ca.ts";
import { signatureAlgorithmFor, type SignatureAlgorithm } from "./signature-algorithms.ts";

export interface IssuerParts {
  /** The CA certificate's subject Name DER: the issuer of what it signs. */
  name: Buffer;
  /** The CA's SubjectKeyIdentifier, or (a CA without one) the SHA-1 of its public key bits, RFC 5280 §4.2.1.2 method 1. */
  keyId: Buffer;
  signatureAlgorithm: SignatureAlgorithm;
  signingKey: KeyObject;
}

const SKI_OID = Buffer.from("551d0e", "hex");
const cache = new WeakMap<Ca, IssuerParts>();

/** The TBSCertificate fields of a certificate: subject, subjectPublicKeyInfo and the [3] extensions. */
function tbsFields(der: Uint8Array): { subject: Tlv; spki: Tlv; extensions: Tlv | undefined } {
  const cert = readSingle(der);
  const tbs = childrenOf(der, cert)[0];
  if (!tbs || tbs.tag !== TAG.SEQUENCE) throw new Error("not a certificate");
  const f = childrenOf(der, tbs);
  const at = f[0]?.tag === contextTag(0, true) ? 1 : 0; // version [0], absent for v1
  const subject = f[at + 4];
  const spki = f[at + 5];
  if (subject?.tag !== TAG.SEQUENCE || spki?.tag !== TAG.SEQUENCE) throw new Error("not a certificate");
  return { subject, spki, extensions: f.slice(at + 6).find((t) => t.tag === contextTag(3, true)) };
}

function subjectKeyId(der: Uint8Array, extensions: Tlv | undefined): Buffer | undefined {
  if (!extensions) return undefined;
  const list = childrenOf(der, extensions)[0];
  if (!list) return undefined;
  for (const ext of childrenOf(der, list)) {
    const [id, ...rest] = childrenOf(der, ext);
    if (!id || !Buffer.from(contentOf(der, id)).equals(SKI_OID)) continue;
    const value = rest[rest.length - 1]!;
    const inner = contentOf(der, value);
    const keyId = readSingle(inner);
    if (keyId.tag !== TAG.OCTET_STRING) throw new Error("bad SubjectKeyIdentifier");
    return Buffer.from(contentOf(inner, keyId));
  }
  return undefined;
}

function readIssuer(ca: Ca): IssuerParts {
  const der = new Uint8Array(ca.cert.rawData);
  const { subject, spki, extensions } = tbsFields(der);
  const keyBitString = childrenOf(der, spki)[1];
  if (!keyBitString) throw new Error("a CA certificate without a public key");
  const keyBits = bitStringBytes(der, keyBitString);
  return {
    name: Buffer.from(elementOf(der, subject)),
    keyId: subjectKeyId(der, extensions) ?? createHash("sha1").update(keyBits).digest(),
    signatureAlgorithm: signatureAlgorithmFor(caKeyAlg(ca)),
    signingKey: KeyObject.from(ca.privateKey as webcrypto.CryptoKey),
  };
}

export function issuerOf(ca: Ca): IssuerParts {
  let p = cache.get(ca);
  if (!p) {
    p = readIssuer(ca);
    cache.set(ca, p);
  }
  return p;
}
