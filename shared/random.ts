import { createHash, randomBytes, timingSafeEqual } from "node:crypto";

/** base64url of `bytes` random bytes. */
export function randomB64u(bytes: number): string {
  return randomBytes(bytes).toString("base64url");
}

/** A fresh nonce for `X-Tether-Nonce` (22 chars of base64url = 128 bits). */
export function newNonce(): string {
  return randomB64u(16);
}

/** SHA-256 hex of a secret, for storing tokens only as hashes. */
export function sha256Hex(s: string | Uint8Array): string {
  return createHash("sha256").update(s).digest("hex");
}

/** Constant-time equality of two strings (length may leak; content does not). */
export function safeEqual(a: string, b: string): boolean {
  const ab = Buffer.from(a);
  const bb = Buffer.from(b);
  return ab.length === bb.length && timingSafeEqual(ab, bb);
}

