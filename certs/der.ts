/**
 * Just enough DER for the request path: a strict reader (CSRs, certificates the PKI made)
 * and a writer (the executor certificate, SPKIs). Strict means DER, not BER: one-byte tags,
 * definite lengths in their shortest form, children that exactly fill their parent.
 * Anything else throws DerError; nothing here throws anything else on bad input.
 */

export class DerError extends Error {}

export const TAG = {
  BOOLEAN: 0x01,
  INTEGER: 0x02,
  BIT_STRING: 0x03,
  OCTET_STRING: 0x04,
  NULL: 0x05,
  OID: 0x06,
  UTF8_STRING: 0x0c,
  PRINTABLE_STRING: 0x13,
  IA5_STRING: 0x16,
  UTC_TIME: 0x17,
  GENERALIZED_TIME: 0x18,
  SEQUENCE: 0x30,
  SET: 0x31,
} as const;

/** A context-specific tag: `[n]`, constructed (EXPLICIT, or IMPLICIT of a constructed type) or primitive. */
export const contextTag = (n: number, constructed: boolean): number => 0x80 | (constructed ? 0x20 : 0) | n;

/** One element: where its tag, its content and its end are in the buffer it was read from. */
export interface Tlv {
  tag: number;
  start: number;
  content: number;
  end: number;
}

/** Deeper than any certificate or CSR: a bound on the recursion hostile input can ask for. */
const MAX_DEPTH = 32;

/** The element at `at`, which must end by `limit`. */
export function readTlv(der: Uint8Array, at: number, limit = der.length): Tlv {
  if (at + 2 > limit) throw new DerError("truncated element");
  const tag = der[at]!;
  if ((tag & 0x1f) === 0x1f) throw new DerError("multi-byte tag");
  const first = der[at + 1]!;
  let len: number;
  let content: number;
  if (first < 0x80) {
    len = first;
    content = at + 2;
  } else {
    const n = first & 0x7f;
    if (n === 0) throw new DerError("indefinite length");
    if (n > 3) throw new DerError("length too large");
    if (at + 2 + n > limit) throw new DerError("truncated length");
    if (der[at + 2] === 0) throw new DerError("non-minimal length");
    len = 0;
    for (let i = 0; i < n; i++) len = len * 256 + der[at + 2 + i]!;
    if (len < 0x80) throw new DerError("non-minimal length");
    content = at + 2 + n;
  }
  const end = content + len;
  if (end > limit) throw new DerError("element runs past its parent");
  return { tag, start: at, content, end };
}

/** The one element `der` consists of, with nothing before or after it. */
export function readSingle(der: Uint8Array): Tlv {
  const t = readTlv(der, 0);
  if (t.end !== der.length) throw new DerError("trailing bytes");
  return t;
}

/** The children of a constructed element, which must fill it exactly. */
export function childrenOf(der: Uint8Array, parent: Tlv): Tlv[] {
  const out: Tlv[] = [];
  for (let at = parent.content; at < parent.end; ) {
    const t = readTlv(der, at, parent.end);
    out.push(t);
    at = t.end;
  }
  return out;
}

/** `parent`'s children, which must be exactly `tags` (in order). */
export function expectChildren(der: Uint8Array, parent: Tlv, tags: readonly number[]): Tlv[] {
  const kids = childrenOf(der, parent);
  if (kids.length !== tags.length || kids.some((k, i) => k.tag !== tags[i])) throw new DerError("unexpected structure");
  return kids;
}

/** Every constructed element inside `t` (itself included) consists of well-formed elements that exactly fill it. */
export function assertWellFormed(der: Uint8Array, t: Tlv, depth = 0): void {
  if (depth > MAX_DEPTH) throw new DerError("nested too deeply");
  if ((t.tag & 0x20) === 0) return;
  for (const c of childrenOf(der, t)) assertWellFormed(der, c, depth + 1);
}

export const contentOf = (der: Uint8Array, t: Tlv): Uint8Array => der.subarray(t.content, t.end);
export const elementOf = (der: Uint8Array, t: Tlv): Uint8Array => der.subarray(t.start, t.end);

/** The bits of a BIT STRING that has no unused bits (keys, signatures). */
export function bitStringBytes(der: Uint8Array, t: Tlv): Uint8Array {
  if (t.tag !== TAG.BIT_STRING || t.end - t.content < 2 || der[t.content] !== 0) throw new DerError("not a whole-byte BIT STRING");
  return der.subarray(t.content + 1, t.end);
}

export function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && Buffer.compare(a, b) === 0;
}

// ── writer ─────────────────────────────────────────────────────────────────────────────

function lengthBytes(n: number): number[] {
  if (n < 0x80) return [n];
  const bytes: number[] = [];
  for (let v = n; v > 0; v = Math.floor(v / 256)) bytes.unshift(v & 0xff);
  return [0x80 | bytes.length, ...bytes];
}

/** One element: `tag`, its length, then the parts of its content. */
export function tlv(tag: number, ...content: Uint8Array[]): Buffer {
  let len = 0;
  for (const c of content) len += c.length;
  return Buffer.concat([Buffer.from([tag, ...lengthBytes(len)]), ...content]);
}

export const seq = (...content: Uint8Array[]): Buffer => tlv(TAG.SEQUENCE, ...content);

/** A BIT STRING of whole bytes. */
export const bitString = (bytes: Uint8Array): Buffer => tlv(TAG.BIT_STRING, Buffer.from([0]), bytes);

/** A non-negative INTEGER from big-endian magnitude bytes: leading zeros dropped, a zero byte added before a set top bit. */
export function unsignedInteger(magnitude: Uint8Array): Buffer {
  let i = 0;
  while (i < magnitude.length - 1 && magnitude[i] === 0) i++;
  const m = magnitude.length === 0 ? Buffer.from([0]) : Buffer.from(magnitude.subarray(i));
  return tlv(TAG.INTEGER, m[0]! > 0x7f ? Buffer.concat([Buffer.from([0]), m]) : m);
}

const two = (n: number) => String(n).padStart(2, "0");

/** A certificate time (RFC 5280 §4.1.2.5): UTCTime through 2049, GeneralizedTime from 2050, whole seconds, Z. */
export function certTime(d: Date): Buffer {
  const y = d.getUTCFullYear();
  const rest = `${two(d.getUTCMonth() + 1)}${two(d.getUTCDate())}${two(d.getUTCHours())}${two(d.getUTCMinutes())}${two(d.getUTCSeconds())}Z`;
  if (y < 1950) throw new Error(`no certificate time before 1950 (${d.toISOString()})`);
  return y <= 2049 ? tlv(TAG.UTC_TIME, Buffer.from(two(y % 100) + rest, "latin1")) : tlv(TAG.GENERALIZED_TIME, Buffer.from(String(y).padStart(4, "0") + rest, "latin1"));
}

/** An OBJECT IDENTIFIER's content in dotted form (for messages). */
export function oidToString(content: Uint8Array): string {
  if (content.length === 0) return "(empty)";
  const parts: number[] = [];
  let v = 0;
  for (const b of content) {
    v = v * 128 + (b & 0x7f);
    if ((b & 0x80) === 0) {
      parts.push(v);
      v = 0;
    }
  }
  const first = parts.shift() ?? 0;
  const head = first < 80 ? [Math.floor(first / 40), first % 40] : [2, first - 80];
  return [...head, ...parts].join(".");
}
