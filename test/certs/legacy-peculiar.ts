/**
 * The CSR parser and executor-certificate issuance as they were before the DER template
 * (certs/csr.ts, certs/profiles.ts up to issue 15): @peculiar/x509 + asn1js + WebCrypto.
 * Kept only here, as the reference the new code is compared with byte for byte
 * (test/certs/executor-cert.test.ts, test/certs/csr-differential.test.ts). Not for production.
 */
import { createPublicKey, KeyObject, type webcrypto } from "node:crypto";
import { executorSpiffeId } from "../../shared/protocol.ts";
import { x509, subtle } from "../../certs/x509.ts";
import { generationParams, keyAlgorithmOf, signingParams, type KeyAlgorithmName } from "../../certs/keys.ts";
import { caKeyAlg, type Ca } from "../../certs/ca.ts";
import { BACKDATE_MS } from "../../certs/profiles.ts";

export class LegacyCsrError extends Error {}

const MAX_CSR_PEM = 16 * 1024;
const CSR_PEM_RE = /^\s*-----BEGIN (NEW )?CERTIFICATE REQUEST-----\r?\n([A-Za-z0-9+/=\r\n]+)-----END (NEW )?CERTIFICATE REQUEST-----\s*$/;

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

function keyAlgOf(spki: ArrayBuffer): KeyAlgorithmName {
  const ko = createPublicKey({ key: Buffer.from(spki), format: "der", type: "spki" });
  const alg = keyAlgorithmOf(ko);
  if (alg) return alg;
  throw new LegacyCsrError(`unsupported CSR key type ${ko.asymmetricKeyType}`);
}

/** The former certs/csr.ts `parseAndVerifyCsr`. */
export async function legacyParseAndVerifyCsr(pem: string): Promise<{ publicKey: CryptoKey; keyAlg: KeyAlgorithmName; spki: ArrayBuffer }> {
  if (typeof pem !== "string" || pem.length > MAX_CSR_PEM) throw new LegacyCsrError("CSR missing or too large");
  const m = CSR_PEM_RE.exec(pem);
  if (!m) throw new LegacyCsrError("not a PEM certificate request");
  const der = Buffer.from(m[2]!.replace(/\s+/g, ""), "base64");
  if (!isSingleDerSequence(der)) throw new LegacyCsrError("unparseable CSR");
  let csr: x509.Pkcs10CertificateRequest;
  let spki: ArrayBuffer;
  let keyAlg: KeyAlgorithmName;
  try {
    csr = new x509.Pkcs10CertificateRequest(der);
    spki = csr.publicKey.rawData;
    keyAlg = keyAlgOf(spki);
  } catch (e) {
    if (e instanceof LegacyCsrError) throw e;
    throw new LegacyCsrError("unparseable CSR");
  }
  let ok = false;
  try {
    ok = await csr.verify();
  } catch {
    ok = false;
  }
  if (!ok) throw new LegacyCsrError("CSR self-signature does not verify");
  try {
    const publicKey = await subtle.importKey("spki", spki, generationParams(keyAlg) as EcKeyImportParams, true, ["verify"]);
    return { publicKey, keyAlg, spki };
  } catch {
    throw new LegacyCsrError("CSR public key cannot be imported");
  }
}

/** The former `spkiOf`: the key's SPKI, an EC point re-read from JWK coordinates so OpenSSL writes it uncompressed. */
function legacySpki(publicKey: KeyObject | CryptoKey): Uint8Array<ArrayBuffer> {
  let key = publicKey instanceof KeyObject ? publicKey : KeyObject.from(publicKey as webcrypto.CryptoKey);
  if (key.asymmetricKeyType === "ec") key = createPublicKey({ key: key.export({ format: "jwk" }), format: "jwk" });
  const der = key.export({ type: "spki", format: "der" });
  return new Uint8Array(der.buffer.slice(der.byteOffset, der.byteOffset + der.byteLength) as ArrayBuffer);
}

/**
 * The certificate the former `issueExecutorCert` made for this serial and time (WebCrypto
 * signs here: an ECDSA signature differs from run to run, an Ed25519 one does not).
 */
export async function legacyExecutorCert(
  ca: Ca,
  opts: { executorId: string; trustDomain: string; publicKey: KeyObject | CryptoKey; ttlSeconds: number; now: Date; serialHex: string },
): Promise<x509.X509Certificate> {
  const notBefore = new Date(opts.now.getTime() - BACKDATE_MS);
  const notAfter = new Date(Math.min(opts.now.getTime() + opts.ttlSeconds * 1000, ca.notAfter.getTime()));
  const ski = ca.cert.getExtension(x509.SubjectKeyIdentifierExtension);
  const aki = ski ? new x509.AuthorityKeyIdentifierExtension(ski.keyId) : await x509.AuthorityKeyIdentifierExtension.create(ca.cert.publicKey);
  return x509.X509CertificateGenerator.create({
    serialNumber: opts.serialHex,
    subject: `CN=${opts.executorId}`,
    issuer: ca.cert.subjectName,
    notBefore,
    notAfter,
    signingKey: ca.privateKey,
    signingAlgorithm: signingParams(caKeyAlg(ca)),
    publicKey: legacySpki(opts.publicKey),
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
      new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.clientAuth], false),
      new x509.SubjectAlternativeNameExtension([{ type: "url", value: executorSpiffeId(opts.trustDomain, opts.executorId) }], false),
      aki,
    ],
  });
}

/** The TBSCertificate bytes of a certificate. */
export function tbsOf(der: Uint8Array): Buffer {
  const b = Buffer.from(der);
  // Certificate ::= SEQUENCE { tbsCertificate, … }: skip the outer header, read the first element's length.
  const outerHeader = b[1]! < 0x80 ? 2 : 2 + (b[1]! & 0x7f);
  const at = outerHeader;
  const first = b[at + 1]!;
  const n = first < 0x80 ? 0 : first & 0x7f;
  let len = first < 0x80 ? first : 0;
  for (let i = 0; i < n; i++) len = len * 256 + b[at + 2 + i]!;
  return b.subarray(at, at + 2 + n + len);
}
