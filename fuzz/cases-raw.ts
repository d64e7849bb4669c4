/**
 * Raw HTTP/1.1 framing over a TLS socket of its own: a correct request (of any plane)
 * serialized by hand, then either broken as bytes (bits flipped, bytes inserted,
 * deleted, duplicated, truncated) or reframed with intent (chunked bodies, CL/TE
 * conflicts, bare LF, obs-fold, huge or many headers, long targets, other versions,
 * pipelining, HTTP/2 preface…).
 *
 * Guard oracle for byte mutations: the fuzzer knows where the signed parts of an
 * executor request lie (request target, body, the three X-Tether-* values) and where an
 * operator's API token lies; a change inside them (not just whitespace around a header
 * value) must not be answered 2xx.
 */
import { HEADER_NONCE, HEADER_SIGNATURE, HEADER_TIMESTAMP } from "../shared/hmac.ts";
import type { Case, Expectation } from "./case.ts";
import { publicCase } from "./cases-public.ts";
import { executorCase } from "./cases-executor.ts";
import { operatorCase } from "./cases-operator.ts";
import { registerCase } from "./cases-register.ts";
import type { FuzzContext } from "./context.ts";
import type { Header } from "./http1.ts";
import type { Rng } from "./rng.ts";

type Region = { start: number; end: number; kind: "body" | "value" };
interface Base {
  method: string;
  target: string;
  headers: Header[];
  body?: Buffer;
}

/** The request as serialize() writes it, with the regions a guard covers. */
function render(base: Base, authority: string, plane: Case["plane"], opts: { eol?: string; version?: string; headers?: Header[]; body?: Buffer; noLength?: boolean } = {}): { bytes: Buffer; regions: Region[] } {
  const eol = opts.eol ?? "\r\n";
  const regions: Region[] = [];
  let text = `${base.method} `;
  if (plane === "executor") regions.push({ start: text.length, end: text.length + base.target.length, kind: "value" });
  text += `${base.target} ${opts.version ?? "HTTP/1.1"}${eol}`;
  const headers = opts.headers ?? base.headers;
  const has = (n: string) => headers.some(([k]) => k.toLowerCase() === n);
  const all: Header[] = [...(has("host") ? [] : [["host", authority] as Header]), ...headers];
  const body = opts.body ?? base.body;
  if (!opts.noLength && body !== undefined && !has("content-length") && !has("transfer-encoding")) all.push(["content-length", String(body.length)]);
  for (const [k, v] of all) {
    const start = Buffer.byteLength(text, "latin1") + k.length + 2;
    text += `${k}: ${v}${eol}`;
    const name = k.toLowerCase();
    if (plane === "executor" && SIGNED_HEADERS.has(name)) regions.push({ start, end: start + v.length, kind: "value" });
    if (plane === "operator" && name === "authorization") {
      const m = /^(\S+ +)(\S+)/.exec(v);
      if (m) regions.push({ start: start + m[1]!.length, end: start + m[1]!.length + m[2]!.length, kind: "value" });
    }
  }
  text += eol;
  const head = Buffer.from(text, "latin1");
  if (plane === "executor" && body?.length) regions.push({ start: head.length, end: head.length + body.length, kind: "body" });
  return { bytes: Buffer.concat([head, body ?? Buffer.alloc(0)]), regions };
}

/** The headers whose values the signature covers (other X-Tether-* headers are noise). */
const SIGNED_HEADERS = new Set([HEADER_TIMESTAMP, HEADER_NONCE, HEADER_SIGNATURE]);
const WS = new Set([0x20, 0x09, 0x0d, 0x0a]);
const INSERTS = ["\r", "\n", "\r\n", "\0", " ", "\t", ":", "\x7f", "\xff", "%", "\r\n\r\n", "x", "0", ";", ","];

/** One byte-level change; returns whether it touched a guarded region in a way that changes its value. */
function blind(bytes: Buffer, regions: Region[], rng: Rng): { bytes: Buffer; what: string; touched: boolean } {
  const op = rng.int(0, 5);
  const within = (k: number, inclusiveEnd: boolean) => regions.filter((r) => k >= r.start && (inclusiveEnd && r.kind === "value" ? k <= r.end : k < r.end));
  if (op <= 1) {
    const n = rng.int(1, 4);
    const at = new Set<number>();
    while (at.size < Math.min(n, bytes.length)) at.add(rng.int(0, bytes.length - 1));
    const b = Buffer.from(bytes);
    let touched = false;
    for (const k of at) {
      b[k]! ^= 1 << rng.int(0, 7);
      if (within(k, false).some((r) => r.kind === "body" || !WS.has(b[k]!))) touched = true;
    }
    return { bytes: b, what: `bits flipped at ${[...at].join(",")}`, touched };
  }
  const k = rng.int(0, bytes.length);
  if (op === 2) {
    const ins = Buffer.from(rng.chance(0.7) ? rng.pick(INSERTS) : rng.bytes(rng.int(1, 8)).toString("latin1"), "latin1");
    const visible = ins.some((c) => !WS.has(c)) && !ins.includes(0x0d) && !ins.includes(0x0a);
    const touched = within(k, true).some((r) => r.kind === "body" || visible);
    return { bytes: Buffer.concat([bytes.subarray(0, k), ins, bytes.subarray(k)]), what: `inserted ${JSON.stringify(ins.toString("latin1"))} at ${k}`, touched };
  }
  if (op === 3) {
    const len = rng.int(1, 16);
    const touched = regions.some((r) => k < r.end && k + len > r.start);
    return { bytes: Buffer.concat([bytes.subarray(0, k), bytes.subarray(k + len)]), what: `deleted ${len} bytes at ${k}`, touched };
  }
  if (op === 4) {
    const from = rng.int(0, bytes.length - 1);
    const chunk = bytes.subarray(from, from + rng.int(1, 32));
    const touched = within(k, true).some((r) => r.kind === "body" || chunk.some((c) => !WS.has(c)));
    return { bytes: Buffer.concat([bytes.subarray(0, k), chunk, bytes.subarray(k)]), what: `duplicated ${chunk.length} bytes from ${from} at ${k}`, touched };
  }
  const touched = regions.some((r) => r.end > k);
  return { bytes: bytes.subarray(0, k), what: `truncated to ${k} bytes`, touched };
}

function chunked(body: Buffer, rng: Rng, bad: boolean): Buffer {
  const parts: Buffer[] = [];
  for (let at = 0; at < body.length; ) {
    const n = Math.min(body.length - at, rng.int(1, 40));
    const size = bad ? rng.pick([n.toString(16).toUpperCase(), `0${n.toString(16)}`, `${n.toString(16)};ext=1`, `-${n}`, "ffffffffffffffff", `${n.toString(16)} `, "x"]) : n.toString(16);
    parts.push(Buffer.from(`${size}\r\n`), body.subarray(at, at + n), Buffer.from("\r\n"));
    at += n;
  }
  parts.push(Buffer.from(bad && rng.chance(0.3) ? "" : "0\r\n\r\n"));
  return Buffer.concat(parts);
}

/** A request re-framed with intent. `same`: the server must see the same method, target and body. */
function framing(base: Base, authority: string, plane: Case["plane"], rng: Rng): { bytes: Buffer; what: string; extra?: Expectation[] } {
  const body = base.body ?? Buffer.alloc(0);
  const hs = base.headers;
  const r = (o: Parameters<typeof render>[3] = {}) => render(base, authority, plane, o).bytes;
  switch (rng.int(0, 21)) {
    case 0: return { bytes: r({ headers: [...hs, ["transfer-encoding", "chunked"]], body: chunked(body, rng, false), noLength: true }), what: "body sent chunked" };
    case 1: return { bytes: r({ headers: [...hs, ["transfer-encoding", "chunked"]], body: chunked(body, rng, true), noLength: true }), what: "chunked body with odd chunk sizes" };
    case 2: return { bytes: r({ headers: [...hs, ["content-length", String(body.length)], ["transfer-encoding", "chunked"]], body: chunked(body, rng, false) }), what: "both Content-Length and Transfer-Encoding" };
    case 3: return { bytes: r({ headers: [...hs, ["content-length", String(body.length)], ["content-length", String(body.length + rng.pick([1, -1, 10]))]] }), what: "two different Content-Lengths" };
    case 4: return { bytes: r({ headers: [...hs, ["content-length", rng.pick([`0${body.length}`, `+${body.length}`, `${body.length} `, `${body.length}, ${body.length}`, "-1", "0x10", "99999999999999999999", "1e3"])]] }), what: "odd Content-Length" };
    case 5: return { bytes: r({ eol: "\n" }), what: "bare LF line ends" };
    case 6: return { bytes: r({ headers: [...hs.slice(0, 1), ["x-fold", "a\r\n  folded"], ...hs.slice(1)] }), what: "obs-fold header line" };
    case 7: return { bytes: r({ headers: [...hs, [rng.pick(["x-bad header", "x-bad\0", "x-bad ", ":", "x\u00e9"]), "v"]] }), what: "header name with bad characters" };
    case 8: return { bytes: r({ headers: [...hs, ["x-v", rng.pick(["a\0b", "\x7f", "\xff\xfe", "a\rb"])]] }), what: "header value with control bytes" };
    case 9: {
      const size = rng.pick([8 * 1024, 16 * 1024, 17 * 1024, 64 * 1024, 1024 * 1024]);
      return { bytes: r({ headers: [...hs, ["x-big", "h".repeat(size)]] }), what: `one ${size}-byte header` };
    }
    case 10: {
      const count = rng.pick([100, 1_000, 3_000]);
      return { bytes: r({ headers: [...hs, ...Array.from({ length: count }, (_, i) => [`x-h${i}`, "v"] as Header)] }), what: `${count} extra headers` };
    }
    case 11: {
      const len = rng.pick([4 * 1024, 16 * 1024, 64 * 1024, 200 * 1024]);
      return { bytes: render({ ...base, target: `${base.target}${base.target.includes("?") ? "&" : "?"}q=${"q".repeat(len)}` }, authority, plane).bytes, what: `target ${len} bytes longer` };
    }
    case 12: {
      const version = rng.pick(["HTTP/1.0", "HTTP/2.0", "HTTP/9.9", "http/1.1", "HTTP/1.1 ", "HTTP/1", "HTTP/1.10", ""]);
      return { bytes: r({ version }), what: `version ${JSON.stringify(version)}` };
    }
    case 13: return { bytes: Buffer.from(rng.pick(["PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", `GET ${base.target}\r\n`, "\r\n\r\n", "\r\n\r\nGET /healthz HTTP/1.1\r\nhost: x\r\n\r\n", "GET / HTTP/1.1\r\n", "\u0016\u0003\u0001\u0000", " ", "GET /healthz HTTP/1.1\r\nhost: x\r\ncontent-length: 5\r\n\r\nabc"]), "latin1"), what: "not an HTTP/1.1 request" };
    case 14: {
      const method = rng.pick(["get", "CONNECT", "FUZZ", "G\0T", "M".repeat(300), "POST\t", "PRI"]);
      return { bytes: render({ ...base, method }, authority, plane).bytes, what: `method ${JSON.stringify(method.slice(0, 20))}` };
    }
    case 15: {
      const target = rng.pick([`https://${authority}${base.target}`, "*", base.target.slice(1), `${base.target}#frag`, `${base.target} x`, `${base.target}\xff`, "//" + base.target, `http://evil.example${base.target}`]);
      return { bytes: render({ ...base, target }, authority, plane).bytes, what: `target form ${JSON.stringify(target.slice(0, 40))}` };
    }
    case 16: return { bytes: r({ headers: rng.chance(0.5) ? [["host", ""], ...hs] : [["host", authority], ["host", "evil.example"], ...hs] }), what: "empty or duplicate Host" };
    case 17: {
      const second = `GET /healthz HTTP/1.1\r\nhost: ${authority}\r\n\r\n`;
      return { bytes: Buffer.concat([r(), Buffer.from(second)]), what: "pipelined with a second request" };
    }
    case 18: {
      const once = r();
      return { bytes: Buffer.concat([once, once]), what: "the same request twice on one connection", extra: plane === "executor" ? [{ mustNotPass: "the pipelined second copy reuses the nonce" }] : undefined };
    }
    case 19: return { bytes: r({ headers: [...hs, ["expect", rng.pick(["100-continue", "200-ok", "x"])]] }), what: "Expect header" };
    case 20: return { bytes: r({ headers: [...hs, ["connection", "Upgrade, HTTP2-Settings"], ["upgrade", rng.pick(["h2c", "websocket", "TLS/1.3"])], ["http2-settings", "AAMAAABkAAQAAP__"]] }), what: "Upgrade request" };
    default: return { bytes: Buffer.concat([r(), Buffer.from(rng.pick(["x", "\r\n", "GARBAGE\r\n\r\n", "\0\0\0"]), "latin1")]), what: "bytes after the request" };
  }
}

export async function rawCase(n: number, rng: Rng, ctx: FuzzContext): Promise<Case | undefined> {
  let base: (Case & { request?: Base }) | undefined;
  for (let i = 0; i < 6 && !base; i++) {
    const kind = rng.weighted([[4, "executor"], [3, "operator"], [1, "register"], [2, "public"]] as const);
    const c: (Case & { request?: Base }) | undefined =
      kind === "executor" ? await executorCase(n, rng, ctx) : kind === "operator" ? operatorCase(n, rng, ctx) : kind === "register" ? registerCase(n, rng, ctx) : publicCase(n, rng, ctx);
    if (c?.request && c.expect[0]?.mustNotPass === undefined && c.dynamic?.(Date.now()) === undefined && !c.lock) base = c;
  }
  if (!base?.request) return undefined;
  const req = base.request;
  let bytes: Buffer;
  let what: string;
  const expect: Expectation[] = [{}];
  if (rng.chance(0.5)) {
    const { bytes: original, regions } = render(req, ctx.authority, base.plane);
    const m = blind(original, regions, rng);
    bytes = m.bytes;
    what = m.what;
    if (m.touched) expect[0] = { mustNotPass: base.plane === "executor" ? "a byte changed inside the signed request" : "a byte changed inside the API token" };
  } else {
    const m = framing(req, ctx.authority, base.plane, rng);
    bytes = m.bytes;
    what = m.what;
    if (m.extra) expect.push(...m.extra);
  }
  return {
    // A long poll's wait (base timeout beyond the default 30 s) is waited out before the half-close.
    ...base, label: base.label, what: [...base.what, `raw: ${what}`], bytes, raw: true, head: req.method === "HEAD",
    nudgeMs: 1_500 + Math.max(0, base.timeoutMs - 30_000), timeoutMs: 5_000 + Math.max(0, base.timeoutMs - 30_000), expect,
    lock: undefined, onSuccess: undefined, onAnswer: undefined, authenticated: false,
  };
}
