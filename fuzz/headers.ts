/** Header noise that changes nothing a guard judges, and percent-encoding of path segments. */
import type { Header } from "./http1.ts";
import type { Rng } from "./rng.ts";

export const CONTENT_TYPES = [
  "application/json", "application/json; charset=utf-8", "text/plain", "application/x-www-form-urlencoded",
  "multipart/form-data; boundary=x", "application/json; charset=utf-16", "application/octet-stream", "*/*", "application/jsonx",
  "APPLICATION/JSON", "application/json;;;", "x".repeat(2_000),
];

const NOISE: readonly Header[] = [
  ["x-forwarded-for", "10.0.0.1, 127.0.0.1"], ["forwarded", "for=1.2.3.4;proto=http"], ["x-real-ip", "1.2.3.4"],
  ["user-agent", "fuzz/" + "u".repeat(300)], ["accept", "*/*"], ["accept", "text/html"], ["accept-encoding", "gzip, br"],
  ["cookie", "a=b; session=tet_pat_x"], ["origin", "https://evil.example"], ["x-http-method-override", "DELETE"],
  ["te", "trailers"], ["range", "bytes=0-1"], ["if-none-match", "*"], ["x-tether-executor", "ex_other"], ["x-tether-bundle-version", "999"],
  ["x-original-url", "/api/v1/tokens"], ["x-rewrite-url", "/v1/dev/enrollment-tokens"], ["connection", "keep-alive"], ["accept-language", "ü"],
  ["x-tether-extra", "\u00ff\u00fe"], ["authorization-extra", "Bearer x"],
];

/** The JSON content type, or (sometimes) another one, and some harmless extra headers. */
export function noiseHeaders(rng: Rng, hasBody: boolean): { headers: Header[]; what: string[] } {
  const headers: Header[] = [];
  const what: string[] = [];
  if (hasBody) {
    if (rng.chance(0.85)) headers.push(["content-type", "application/json"]);
    else if (rng.chance(0.15)) what.push("no content-type");
    else {
      const ct = rng.pick(CONTENT_TYPES);
      headers.push(["content-type", ct]);
      what.push(`content-type ${JSON.stringify(ct.slice(0, 40))}`);
    }
  } else if (rng.chance(0.05)) {
    headers.push(["content-type", "application/json"]);
    what.push("content-type without a body");
  }
  if (rng.chance(0.12)) {
    for (let i = rng.int(1, 3); i > 0; i--) {
      const h = rng.pick(NOISE);
      headers.push(h);
      what.push(`header ${h[0]}`);
    }
  }
  return { headers, what };
}

/** `s` with some (or all) characters percent-encoded, in upper or lower case hex. */
export function percentEncode(s: string, rng: Rng): string {
  const all = rng.chance(0.3);
  const lower = rng.chance(0.3);
  let out = "";
  for (const ch of s) {
    if (all || rng.chance(0.3)) {
      for (const b of Buffer.from(ch, "utf8")) {
        const hex = b.toString(16).padStart(2, "0");
        out += "%" + (lower ? hex : hex.toUpperCase());
      }
    } else out += ch;
  }
  return out;
}

/** Percent-decoding the way a router does (undefined when malformed). */
export function percentDecode(s: string): string | undefined {
  try {
    return decodeURIComponent(s);
  } catch {
    return undefined;
  }
}
