/**
 * Request bodies: kept raw (the HMAC signs the exact bytes) and parsed as JSON whatever
 * the content type says (docs/protocol.md "Transport"). A parse failure is only marked
 * here and reported after the guards (server.ts), so unauthenticated callers learn
 * nothing from it.
 */
import type { FastifyRequest } from "fastify";

/**
 * Deeper JSON is refused before it is parsed: JSON.parse copes, but recursive code after it
 * (the store's JSON.stringify, serializers) overflows the stack a few thousand levels down.
 * No task payload or result needs more.
 */
export const MAX_JSON_DEPTH = 64;

/** Whether `raw` opens more than `max` arrays/objects at once; brackets inside strings do not count. */
export function nestsDeeperThan(raw: Buffer, max: number): boolean {
  let depth = 0;
  let inString = false;
  for (let i = 0; i < raw.length; i++) {
    const c = raw[i];
    if (inString) {
      if (c === 0x5c) i++; // a backslash escapes the next byte
      else if (c === 0x22) inString = false;
    } else if (c === 0x22) {
      inString = true;
    } else if (c === 0x5b || c === 0x7b) {
      if (++depth > max) return true;
    } else if (c === 0x5d || c === 0x7d) {
      depth--;
    }
  }
  return false;
}

export const INVALID_JSON_MESSAGE = `the request body is not valid JSON, or nests deeper than ${MAX_JSON_DEPTH} levels`;

/** The content-type parser for every type (`parseAs: "buffer"`). */
export function parseJsonBody(request: FastifyRequest, body: Buffer | string, done: (err: Error | null, body?: unknown) => void): void {
  const raw = typeof body === "string" ? Buffer.from(body) : body;
  request.rawBody = raw;
  if (raw.length === 0) return done(null, undefined);
  let parsed: unknown;
  try {
    if (nestsDeeperThan(raw, MAX_JSON_DEPTH)) throw new RangeError("too deep");
    parsed = JSON.parse(raw.toString("utf8"));
  } catch {
    request.jsonInvalid = true;
    return done(null, undefined);
  }
  done(null, parsed);
}
