/**
 * HTTP/1.1 on the byte level: the request is serialized here exactly as the
 * fuzzer decided (header order, duplicates, any content-length), and responses are
 * parsed from the raw bytes the controller wrote. No HTTP library sits in between,
 * so nothing "fixes" a mutated request before it reaches the server, and nothing
 * hides a malformed answer.
 */

export type Header = readonly [name: string, value: string];

export interface WireRequest {
  method: string;
  /** The request target exactly as sent (path plus ?query). */
  target: string;
  headers: Header[];
  body?: Buffer;
}

export interface HttpResponse {
  status: number;
  reason: string;
  /** Header names lower-cased, in order, duplicates kept. */
  headers: Header[];
  body: Buffer;
}

export function headerValue(res: Pick<HttpResponse, "headers">, name: string): string | undefined {
  const n = name.toLowerCase();
  return res.headers.find(([k]) => k === n)?.[1];
}

/** `Host` first, then the given headers, then `content-length` when `withLength` and none was given. */
export function serialize(req: WireRequest, host: string, opts: { withHost?: boolean; withLength?: boolean } = {}): Buffer {
  const lines = [`${req.method} ${req.target} HTTP/1.1`];
  const has = (n: string) => req.headers.some(([k]) => k.toLowerCase() === n);
  if (opts.withHost !== false && !has("host")) lines.push(`host: ${host}`);
  for (const [k, v] of req.headers) lines.push(`${k}: ${v}`);
  if (opts.withLength !== false && !has("content-length") && !has("transfer-encoding") && req.body !== undefined) {
    lines.push(`content-length: ${req.body.length}`);
  }
  return Buffer.concat([Buffer.from(lines.join("\r\n") + "\r\n\r\n", "latin1"), req.body ?? Buffer.alloc(0)]);
}

export type Parsed = { ok: true; response: HttpResponse; used: number } | { ok: false; incomplete: true } | { ok: false; incomplete: false; error: string };

const HEAD_END = Buffer.from("\r\n\r\n");

/**
 * Parses one response from the start of `buf`. `eof`: the connection is closed, so a
 * body without a length ends here. `head`: the request was HEAD (no body follows).
 */
export function parseResponse(buf: Buffer, opts: { eof: boolean; head: boolean }): Parsed {
  const end = buf.indexOf(HEAD_END);
  if (end < 0) return buf.length > 256 * 1024 ? { ok: false, incomplete: false, error: "response head over 256 KiB" } : incomplete(opts.eof, "truncated head");
  const lines = buf.subarray(0, end).toString("latin1").split("\r\n");
  const m = /^HTTP\/1\.[01] (\d{3})(?: (.*))?$/.exec(lines[0]!);
  if (!m) return { ok: false, incomplete: false, error: `bad status line ${JSON.stringify(lines[0]!.slice(0, 80))}` };
  const status = Number(m[1]);
  const headers: Header[] = [];
  for (const line of lines.slice(1)) {
    const i = line.indexOf(":");
    if (i <= 0) return { ok: false, incomplete: false, error: `bad header line ${JSON.stringify(line.slice(0, 80))}` };
    headers.push([line.slice(0, i).trim().toLowerCase(), line.slice(i + 1).trim()]);
  }
  const start = end + 4;
  const base = { status, reason: m[2] ?? "", headers };
  if (opts.head || (status >= 100 && status < 200) || status === 204 || status === 304) {
    return { ok: true, response: { ...base, body: Buffer.alloc(0) }, used: start };
  }
  const te = headerValue(base, "transfer-encoding");
  if (te !== undefined && /chunked/i.test(te)) return parseChunked(buf, start, base, opts.eof);
  const cl = headerValue(base, "content-length");
  if (cl !== undefined) {
    if (!/^\d+$/.test(cl)) return { ok: false, incomplete: false, error: `bad content-length ${cl}` };
    const n = Number(cl);
    if (buf.length - start < n) return incomplete(opts.eof, "truncated body");
    return { ok: true, response: { ...base, body: buf.subarray(start, start + n) }, used: start + n };
  }
  // No length: the body runs to the end of the connection.
  if (!opts.eof) return { ok: false, incomplete: true };
  return { ok: true, response: { ...base, body: buf.subarray(start) }, used: buf.length };
}

function incomplete(eof: boolean, what: string): Parsed {
  return eof ? { ok: false, incomplete: false, error: `connection closed mid-response (${what})` } : { ok: false, incomplete: true };
}

function parseChunked(buf: Buffer, start: number, base: Omit<HttpResponse, "body">, eof: boolean): Parsed {
  const parts: Buffer[] = [];
  let at = start;
  for (;;) {
    const nl = buf.indexOf("\r\n", at);
    if (nl < 0) return incomplete(eof, "truncated chunk size");
    const size = parseInt(buf.subarray(at, nl).toString("latin1").split(";")[0]!, 16);
    if (!Number.isFinite(size) || size < 0) return { ok: false, incomplete: false, error: "bad chunk size" };
    at = nl + 2;
    if (size === 0) {
      const trailerEnd = buf.indexOf("\r\n", at);
      if (trailerEnd < 0) return incomplete(eof, "truncated trailer");
      // Trailers are not expected; skip to the empty line.
      const blank = buf.indexOf(HEAD_END, at - 2);
      const used = trailerEnd === at ? at + 2 : blank < 0 ? -1 : blank + 4;
      if (used < 0) return incomplete(eof, "truncated trailer");
      return { ok: true, response: { ...base, body: Buffer.concat(parts) }, used };
    }
    if (buf.length < at + size + 2) return incomplete(eof, "truncated chunk");
    parts.push(buf.subarray(at, at + size));
    at += size + 2;
  }
}

/** Every complete response in `buf` (pipelined answers), and what could not be parsed. */
export function parseAll(buf: Buffer, opts: { eof: boolean; head: boolean }): { responses: HttpResponse[]; rest: Buffer; error?: string } {
  const responses: HttpResponse[] = [];
  let rest = buf;
  while (rest.length > 0) {
    const p = parseResponse(rest, { ...opts, head: opts.head && responses.length === 0 });
    if (!p.ok) return { responses, rest, ...(p.incomplete ? {} : { error: p.error }) };
    if (p.response.status >= 100 && p.response.status < 200 && p.response.status !== 101) {
      rest = rest.subarray(p.used);
      continue;
    }
    responses.push(p.response);
    rest = rest.subarray(p.used);
  }
  return { responses, rest };
}
