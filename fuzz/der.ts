/**
 * Just enough DER to mutate a PKCS#10 request with intent: where its parts are (so a
 * flipped bit is known to land in the signed part or in the signature), and how to
 * splice one part (the public key) and re-encode the lengths around it.
 */

export interface Tlv {
  tag: number;
  /** Offset of the tag byte. */
  start: number;
  /** Offset of the first content byte. */
  content: number;
  /** Offset just past the content. */
  end: number;
}

export function readTlv(der: Buffer, at: number): Tlv {
  const tag = der[at]!;
  let len = der[at + 1]!;
  let content = at + 2;
  if (len & 0x80) {
    const n = len & 0x7f;
    len = 0;
    for (let i = 0; i < n; i++) len = len * 256 + der[at + 2 + i]!;
    content += n;
  }
  return { tag, start: at, content, end: content + len };
}

/** The children of a constructed TLV. */
export function children(der: Buffer, parent: Tlv): Tlv[] {
  const out: Tlv[] = [];
  for (let at = parent.content; at < parent.end; ) {
    const t = readTlv(der, at);
    out.push(t);
    at = t.end;
  }
  return out;
}

export function encodeLength(n: number): Buffer {
  if (n < 0x80) return Buffer.from([n]);
  const bytes: number[] = [];
  for (let v = n; v > 0; v = Math.floor(v / 256)) bytes.unshift(v & 0xff);
  return Buffer.from([0x80 | bytes.length, ...bytes]);
}

export function tlv(tag: number, content: Buffer): Buffer {
  return Buffer.concat([Buffer.from([tag]), encodeLength(content.length), content]);
}

/** The parts of a CSR: CertificationRequest ::= SEQUENCE { info, signatureAlgorithm, signature BIT STRING }. */
export interface CsrParts {
  outer: Tlv;
  info: Tlv;
  sigAlg: Tlv;
  signature: Tlv;
  /** info ::= SEQUENCE { version, subject, subjectPKInfo, attributes [0] } */
  spki: Tlv;
}

export function csrParts(der: Buffer): CsrParts {
  const outer = readTlv(der, 0);
  const [info, sigAlg, signature] = children(der, outer);
  if (!info || !sigAlg || !signature) throw new Error("not a CSR");
  const spki = children(der, info)[2];
  if (!spki) throw new Error("CSR without a public key");
  return { outer, info, sigAlg, signature, spki };
}

/** The CSR `der` with its public key replaced by `spki` (the signature left as it was). */
export function withPublicKey(der: Buffer, spki: Buffer): Buffer {
  const p = csrParts(der);
  const info = Buffer.concat([der.subarray(p.info.content, p.spki.start), spki, der.subarray(p.spki.end, p.info.end)]);
  return tlv(0x30, Buffer.concat([tlv(0x30, info), der.subarray(p.sigAlg.start, p.signature.end)]));
}

export function pemToDer(pem: string): Buffer {
  return Buffer.from(pem.replace(/-----(BEGIN|END) [A-Z0-9 ]+-----/g, "").replace(/\s+/g, ""), "base64");
}

export function derToPem(der: Buffer, label = "CERTIFICATE REQUEST", width = 64): string {
  const b64 = der.toString("base64");
  const lines = width > 0 ? (b64.match(new RegExp(`.{1,${width}}`, "g")) ?? []) : [b64];
  return `-----BEGIN ${label}-----\n${lines.join("\n")}\n-----END ${label}-----\n`;
}
