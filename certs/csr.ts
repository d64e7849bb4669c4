/**
 * CSR validation (PROTOCOL §2): Ed25519, ECDSA P-256 and P-384 keys only, and the
 * self-signature must verify. Only the public key is used; what the CSR asks for
 * (subject, SANs, extensions) is ignored by the caller. Bad input only ever throws CsrError.
 */
import { createPublicKey } from "node:crypto";
import { x509, subtle } from "./x509.ts";
import { generationParams, keyAlgorithmOf, type KeyAlgorithmName } from "./keys.ts";

export class CsrError extends Error {}
export type CsrKeyAlg = KeyAlgorithmName;

export interface ParsedCsr {
  publicKey: CryptoKey;
  keyAlg: CsrKeyAlg;
  spki: ArrayBuffer;
}

const MAX_CSR_PEM = 16 * 1024;
const CSR_PEM_RE = /^\s*-----BEGIN (NEW )?CERTIFICATE REQUEST-----\r?\n([A-Za-z0-9+/=\r\n]+)-----END (NEW )?CERTIFICATE REQUEST-----\s*$/;

/** True when `der` is exactly one DER SEQUENCE, with nothing before or after it. */
function isSingleDerSequence(der: Buffer): boolean {
  if (der.length < 2 || der[0] !== 0x30) return false;
  const first = der[1]!;
  if (first < 0x80) return 2 + first === der.length;
  const n = first & 0x7f;
  if (n === 0 || n > 3 || der.length < 2 + n) return false;
  let len = 0;
  for (let i = 0; i < n; i++) len = len * 256 + der[2 + i]!;
  return 2 + n + len === der.length;
}

function keyAlgOf(spki: ArrayBuffer): CsrKeyAlg {
  const ko = createPublicKey({ key: Buffer.from(spki), format: "der", type: "spki" });
  const alg = keyAlgorithmOf(ko);
  if (alg) return alg;
  throw new CsrError(`unsupported CSR key type ${ko.asymmetricKeyType}${ko.asymmetricKeyDetails?.namedCurve ? ` (${ko.asymmetricKeyDetails.namedCurve})` : ""}`);
}

export async function parseAndVerifyCsr(pem: string): Promise<ParsedCsr> {
  if (typeof pem !== "string" || pem.length > MAX_CSR_PEM) throw new CsrError("CSR missing or too large");
  const m = CSR_PEM_RE.exec(pem);
  if (!m) throw new CsrError("not a PEM certificate request");
  const der = Buffer.from(m[2]!.replace(/\s+/g, ""), "base64");
  if (!isSingleDerSequence(der)) throw new CsrError("unparseable CSR");
  let csr: x509.Pkcs10CertificateRequest;
  let spki: ArrayBuffer;
  let keyAlg: CsrKeyAlg;
  try {
    csr = new x509.Pkcs10CertificateRequest(der);
    spki = csr.publicKey.rawData;
    keyAlg = keyAlgOf(spki);
  } catch (e) {
    if (e instanceof CsrError) throw e;
    throw new CsrError("unparseable CSR");
  }
  let ok = false;
  try {
    ok = await csr.verify();
  } catch {
    ok = false;
  }
  if (!ok) throw new CsrError("CSR self-signature does not verify");
  try {
    const publicKey = await subtle.importKey("spki", spki, generationParams(keyAlg) as EcKeyImportParams, true, ["verify"]);
    return { publicKey, keyAlg, spki };
  } catch {
    throw new CsrError("CSR public key cannot be imported");
  }
}
