/**
 * Certificate revocation lists (PROTOCOL §7.5): one X.509 v2 CRL per CA, signed by it,
 * with a CRL number (RFC 5280 §5.2.3), the authority key identifier, thisUpdate and
 * nextUpdate, and one entry per revoked serial. Built with @peculiar/x509 (already the
 * PKI's library; node-forge cannot sign with Ed25519 keys).
 */
import { x509, toPem } from "./x509.ts";
import { caKeyAlg, type Ca } from "./ca.ts";
import { signingParams } from "./keys.ts";

const CRL_NUMBER_OID = "2.5.29.20";
/** RFC 5280 §5.2.3: a CRL number fits in 20 octets; ours are JavaScript safe integers. */
const MAX_CRL_NUMBER = Number.MAX_SAFE_INTEGER;

/** DER INTEGER of a non-negative safe integer. */
function derInteger(n: number): Uint8Array<ArrayBuffer> {
  if (!Number.isSafeInteger(n) || n < 0 || n > MAX_CRL_NUMBER) throw new Error(`invalid CRL number ${n}`);
  const bytes: number[] = [];
  let v = BigInt(n);
  do {
    bytes.unshift(Number(v & 0xffn));
    v >>= 8n;
  } while (v > 0n);
  if (bytes[0]! & 0x80) bytes.unshift(0);
  return new Uint8Array([0x02, bytes.length, ...bytes]);
}

export interface CrlEntry {
  /** Lowercase or uppercase hex, as stored. */
  serialHex: string;
  revokedAt: Date;
}

export async function buildCrl(ca: Ca, opts: { entries: CrlEntry[]; crlNumber: number; thisUpdate: Date; nextUpdate: Date }): Promise<string> {
  if (opts.nextUpdate.getTime() <= opts.thisUpdate.getTime()) throw new Error("a CRL's nextUpdate must follow its thisUpdate");
  const ski = ca.cert.getExtension(x509.SubjectKeyIdentifierExtension);
  const crl = await x509.X509CrlGenerator.create({
    issuer: ca.cert.subjectName,
    thisUpdate: opts.thisUpdate,
    nextUpdate: opts.nextUpdate,
    signingKey: ca.privateKey,
    signingAlgorithm: signingParams(caKeyAlg(ca)),
    extensions: [
      new x509.Extension(CRL_NUMBER_OID, false, derInteger(opts.crlNumber)),
      ...(ski ? [new x509.AuthorityKeyIdentifierExtension(ski.keyId)] : []),
    ],
    entries: opts.entries.map((e) => ({ serialNumber: e.serialHex.toLowerCase(), revocationDate: e.revokedAt })),
  });
  // OpenSSL reads only the RFC 7468 label "X509 CRL" (the library writes "CRL").
  return toPem("X509 CRL", crl.rawData);
}
