/**
 * CSR validation (PROTOCOL §2): Ed25519, ECDSA P-256 and P-384 keys only, and the
 * self-signature must verify. Only the public key is used; what the CSR asks for
 * (subject, SANs, extensions) is ignored by the caller. Bad input only ever throws CsrError.
 *
 * A strict DER reader (certs/der.ts) and node:crypto: one synchronous pass, no ASN.1
 * library and no WebCrypto round trip. The structure checked (RFC 2986):
 *
 *   CertificationRequest ::= SEQUENCE { certificationRequestInfo, signatureAlgorithm, signature BIT STRING }
 *   CertificationRequestInfo ::= SEQUENCE { version INTEGER (0), subject Name, subjectPKInfo, attributes [0] }
 *
 * The key's AlgorithmIdentifier must be exactly Ed25519's (no parameters) or id-ecPublicKey
 * with the named curve P-256 or P-384; the signature algorithm must be one for that key
 * type, parameters absent (certs/signature-algorithms.ts). Every element is DER.
 */
import type { KeyObject } from "node:crypto";
import {
  assertWellFormed, bitStringBytes, childrenOf, contentOf, DerError, elementOf, expectChildren, readSingle, TAG, contextTag,
  type Tlv,
} from "./der.ts";
import type { KeyAlgorithmName } from "./keys.ts";
import { describeKeyAlgorithm, keyAlgorithmOfId, publicKeyFromSpki } from "./spki.ts";
import { csrSignatureAlgorithmOfId, keyKindOf, verifies } from "./signature-algorithms.ts";

export class CsrError extends Error {}
export type CsrKeyAlg = KeyAlgorithmName;

export interface ParsedCsr {
  /** The CSR's key: it signed the CSR. Issue with it (certs/profiles.ts). */
  publicKey: KeyObject;
  keyAlg: CsrKeyAlg;
  /** The SubjectPublicKeyInfo DER exactly as the CSR carries it (an EC point may be compressed). */
  spki: Buffer;
}

const MAX_CSR_PEM = 16 * 1024;
const CSR_PEM_RE = /^\s*-----BEGIN (NEW )?CERTIFICATE REQUEST-----\r?\n([A-Za-z0-9+/=\r\n]+)-----END (NEW )?CERTIFICATE REQUEST-----\s*$/;
const VERSION_1 = Buffer.from([TAG.INTEGER, 1, 0]);

interface CsrParts {
  info: Uint8Array;
  spki: Uint8Array;
  spkiAlgorithm: Uint8Array;
  /** The OIDs of the key's AlgorithmIdentifier (algorithm, then the curve when there is one), for messages. */
  spkiOids: Uint8Array[];
  publicKeyBits: Uint8Array;
  signatureAlgorithm: Uint8Array;
  signature: Uint8Array;
}

/** A Name: SEQUENCE OF RelativeDistinguishedName (SET OF SEQUENCE { type OID, value }). */
function checkName(der: Buffer, name: Tlv): void {
  for (const rdn of childrenOf(der, name)) {
    if (rdn.tag !== TAG.SET) throw new DerError("bad name");
    for (const atv of childrenOf(der, rdn)) {
      if (atv.tag !== TAG.SEQUENCE) throw new DerError("bad name");
      const kids = childrenOf(der, atv);
      if (kids.length !== 2 || kids[0]!.tag !== TAG.OID) throw new DerError("bad name");
    }
  }
}

/** attributes [0] IMPLICIT SET OF Attribute, Attribute ::= SEQUENCE { type OID, values SET }. */
function checkAttributes(der: Buffer, attributes: Tlv): void {
  for (const a of childrenOf(der, attributes)) {
    if (a.tag !== TAG.SEQUENCE) throw new DerError("bad attribute");
    expectChildren(der, a, [TAG.OID, TAG.SET]);
  }
}

function csrParts(der: Buffer): CsrParts {
  const outer = readSingle(der);
  if (outer.tag !== TAG.SEQUENCE) throw new DerError("not a SEQUENCE");
  assertWellFormed(der, outer);
  const [info, sigAlg, signature] = expectChildren(der, outer, [TAG.SEQUENCE, TAG.SEQUENCE, TAG.BIT_STRING]) as [Tlv, Tlv, Tlv];
  const [version, subject, spki, attributes] = expectChildren(der, info, [TAG.INTEGER, TAG.SEQUENCE, TAG.SEQUENCE, contextTag(0, true)]) as [Tlv, Tlv, Tlv, Tlv];
  if (!VERSION_1.equals(elementOf(der, version))) throw new DerError("not a version 1 request");
  checkName(der, subject);
  checkAttributes(der, attributes);
  const [spkiAlg, keyBits] = expectChildren(der, spki, [TAG.SEQUENCE, TAG.BIT_STRING]) as [Tlv, Tlv];
  const algKids = childrenOf(der, spkiAlg);
  if (algKids.length < 1 || algKids[0]!.tag !== TAG.OID) throw new DerError("bad key algorithm");
  return {
    info: elementOf(der, info),
    spki: elementOf(der, spki),
    spkiAlgorithm: elementOf(der, spkiAlg),
    spkiOids: algKids.filter((k) => k.tag === TAG.OID).map((k) => contentOf(der, k)),
    publicKeyBits: bitStringBytes(der, keyBits),
    signatureAlgorithm: elementOf(der, sigAlg),
    signature: bitStringBytes(der, signature),
  };
}

export function parseAndVerifyCsr(pem: string): ParsedCsr {
  if (typeof pem !== "string" || pem.length > MAX_CSR_PEM) throw new CsrError("CSR missing or too large");
  const m = CSR_PEM_RE.exec(pem);
  if (!m) throw new CsrError("not a PEM certificate request");
  const der = Buffer.from(m[2]!.replace(/\s+/g, ""), "base64");
  let parts: CsrParts;
  try {
    parts = csrParts(der);
  } catch {
    throw new CsrError("unparseable CSR");
  }
  const keyAlg = keyAlgorithmOfId(parts.spkiAlgorithm);
  if (!keyAlg) throw new CsrError(`unsupported CSR key type ${describeKeyAlgorithm(parts.spkiOids)}`);
  let publicKey: KeyObject;
  try {
    publicKey = publicKeyFromSpki(keyAlg, parts.publicKeyBits, parts.spki);
  } catch {
    throw new CsrError("CSR public key cannot be imported");
  }
  const sigAlg = csrSignatureAlgorithmOfId(parts.signatureAlgorithm);
  if (!sigAlg || sigAlg.keys !== keyKindOf(keyAlg)) throw new CsrError(`unsupported CSR signature algorithm for its ${keyAlg} key`);
  if (!verifies(sigAlg, parts.info, publicKey, parts.signature)) throw new CsrError("CSR self-signature does not verify");
  return { publicKey, keyAlg, spki: Buffer.from(parts.spki) };
}
