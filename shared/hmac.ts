/**
 * The one implementation of the request signature (PROTOCOL §3.2 step 3).
 * The executor signs with it and the controller verifies with it.
 */
import { createHash, createHmac, timingSafeEqual } from "node:crypto";

export const HMAC_ALGORITHM = "TETHER-HMAC-SHA256";
export const SIGNATURE_PREFIX = "v1=";
export const HEADER_TIMESTAMP = "x-tether-timestamp";
export const HEADER_NONCE = "x-tether-nonce";
export const HEADER_SIGNATURE = "x-tether-signature";
/** Allowed clock difference between executor and controller. */
export const MAX_SKEW_MS = 300_000;
/** How long a used nonce is remembered; must be ≥ 2 × MAX_SKEW_MS so a replay can never outlive it. */
export const NONCE_RETENTION_MS = 600_000;
const NONCE_RE = /^[A-Za-z0-9_-]{16,64}$/;
const SIGNATURE_RE = /^v1=[0-9a-f]{64}$/;
const EMPTY_SHA256 = createHash("sha256").update("").digest("hex");

export interface SignedRequest {
  method: string;
  /** The request target exactly as sent: path plus `?query` if any. */
  target: string;
  executorId: string;
  timestamp: string;
  nonce: string;
  body?: Uint8Array | string;
}

export function bodySha256Hex(body?: Uint8Array | string): string {
  if (body === undefined || body.length === 0) return EMPTY_SHA256;
  return createHash("sha256").update(body).digest("hex");
}

export function stringToSign(r: SignedRequest): string {
  return [
    HMAC_ALGORITHM,
    r.method.toUpperCase(),
    r.target,
    r.executorId,
    r.timestamp,
    r.nonce,
    bodySha256Hex(r.body),
  ].join("\n");
}

export function signatureFor(key: Uint8Array, r: SignedRequest): string {
  return SIGNATURE_PREFIX + createHmac("sha256", key).update(stringToSign(r)).digest("hex");
}

export function isValidNonce(nonce: string): boolean {
  return NONCE_RE.test(nonce);
}

export function isValidTimestamp(ts: string): boolean {
  return /^[0-9]{1,16}$/.test(ts);
}

/** Constant-time check of a presented `X-Tether-Signature` value. */
export function verifySignature(key: Uint8Array, r: SignedRequest, presented: string): boolean {
  if (!SIGNATURE_RE.test(presented)) return false;
  const expected = Buffer.from(signatureFor(key, r), "latin1");
  const got = Buffer.from(presented, "latin1");
  return expected.length === got.length && timingSafeEqual(expected, got);
}

/** The three headers an executor adds to a request. */
export function signRequestHeaders(
  key: Uint8Array,
  r: Omit<SignedRequest, "timestamp" | "nonce"> & { timestamp?: string; nonce?: string },
  newNonce: () => string,
  nowMs: number = Date.now(),
): Record<string, string> {
  const timestamp = r.timestamp ?? String(nowMs);
  const nonce = r.nonce ?? newNonce();
  const signature = signatureFor(key, { ...r, timestamp, nonce });
  return { [HEADER_TIMESTAMP]: timestamp, [HEADER_NONCE]: nonce, [HEADER_SIGNATURE]: signature };
}
