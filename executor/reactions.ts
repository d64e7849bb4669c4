/**
 * How the daemon reacts to each answer of the controller (PROTOCOL §3.2). One
 * pure table, so every code has exactly one documented reaction and the unit
 * tests can check all of them.
 */
import { TetherError, ErrorCode } from "../shared/errors.ts";
import { TransportError } from "./client.ts";
import { isAbortError } from "./timers.ts";

export type Reaction =
  /** TOKEN_EXPIRED / TOKEN_INVALID: get a new JWT (renew), then retry. */
  | { kind: "renew-jwt"; code: string }
  /** EPOCH_MISMATCH: drop the work held under the old epoch, re-register (epoch + 1), retry. */
  | { kind: "reregister"; code: string }
  /** CERT_REVOKED: terminal; stop and exit non-zero naming the revocation. */
  | { kind: "revoked"; code: string }
  /** CERT_REQUIRED / IDENTITY_MISMATCH: the controller does not accept this identity any more; re-enroll. */
  | { kind: "identity-rejected"; code: string; message: string }
  /** CLOCK_SKEW: warn with the measured offset, correct the signing clock, retry. */
  | { kind: "clock-skew"; code: string; offsetMs?: number }
  /** NONCE_REPLAY: retry at once (every attempt signs with a fresh nonce). */
  | { kind: "retry-now"; code: string }
  /** ENROLLMENT_DENIED: the token is unknown, expired, used up or revoked; terminal. */
  | { kind: "enrollment-denied"; code: string }
  /** Errors retrying cannot fix (INVALID_CSR): terminal. */
  | { kind: "fatal"; code: string; message: string }
  /**
   * TLS could not verify the controller's certificate chain: no CA the executor
   * trusts signed it. Backoff; a few of these in a row end the daemon (every CA it
   * trusted has left the bundle, PROTOCOL §7.2).
   */
  | { kind: "untrusted-controller"; code: string; message: string }
  /** Network errors, 5xx, 429, anything unexpected: capped exponential backoff with jitter. */
  | { kind: "backoff"; code: string; message: string; retryAfter?: string; transient: boolean }
  /** The daemon is stopping. */
  | { kind: "aborted"; code: string };

/**
 * OpenSSL's verdicts (as Node names them) that mean "this chain does not lead to a
 * CA we trust" — not a name mismatch, not an expired server certificate.
 */
export const CHAIN_ERROR_CODES: ReadonlySet<string> = new Set([
  "UNABLE_TO_GET_ISSUER_CERT",
  "UNABLE_TO_GET_ISSUER_CERT_LOCALLY",
  "UNABLE_TO_VERIFY_LEAF_SIGNATURE",
  "SELF_SIGNED_CERT_IN_CHAIN",
  "DEPTH_ZERO_SELF_SIGNED_CERT",
  "CERT_UNTRUSTED",
  "CERT_SIGNATURE_FAILURE",
  "PATH_LENGTH_EXCEEDED",
  "INVALID_CA",
]);

/**
 * Other verdicts on the controller's certificate (expired, not yet valid, another
 * host name): not "an unknown CA", so they never count towards lost trust, but a
 * replica presenting such a certificate is failed over loudly (../endpoints.ts).
 */
export const CERT_REFUSED_CODES: ReadonlySet<string> = new Set([
  "CERT_HAS_EXPIRED",
  "CERT_NOT_YET_VALID",
  "ERR_TLS_CERT_ALTNAME_INVALID",
  "HOSTNAME_MISMATCH",
  "CERT_REJECTED",
]);

export function classify(e: unknown, nowMs: number = Date.now()): Reaction {
  if (isAbortError(e)) return { kind: "aborted", code: "ABORTED" };
  if (e instanceof TransportError) {
    if (e.code !== undefined && CHAIN_ERROR_CODES.has(e.code)) return { kind: "untrusted-controller", code: e.code, message: e.message };
    return { kind: "backoff", code: e.code ?? "NETWORK", message: e.message, transient: true };
  }
  if (!(e instanceof TetherError)) {
    return { kind: "backoff", code: "UNEXPECTED", message: (e as Error)?.message ?? String(e), transient: false };
  }
  switch (e.code) {
    case ErrorCode.TOKEN_EXPIRED:
    case ErrorCode.TOKEN_INVALID:
      return { kind: "renew-jwt", code: e.code };
    case ErrorCode.EPOCH_MISMATCH:
      return { kind: "reregister", code: e.code };
    case ErrorCode.CERT_REVOKED:
      return { kind: "revoked", code: e.code };
    case ErrorCode.CERT_REQUIRED:
    case ErrorCode.IDENTITY_MISMATCH:
      return { kind: "identity-rejected", code: e.code, message: e.message };
    case ErrorCode.CLOCK_SKEW: {
      const st = e.details?.server_time;
      const t = typeof st === "string" ? Date.parse(st) : NaN;
      return { kind: "clock-skew", code: e.code, offsetMs: Number.isFinite(t) ? t - nowMs : undefined };
    }
    case ErrorCode.NONCE_REPLAY:
      return { kind: "retry-now", code: e.code };
    case ErrorCode.ENROLLMENT_DENIED:
      return { kind: "enrollment-denied", code: e.code };
    case ErrorCode.INVALID_CSR:
      return { kind: "fatal", code: e.code, message: e.message };
    case ErrorCode.RATE_LIMITED:
      return { kind: "backoff", code: e.code, message: e.message, retryAfter: e.headers?.["retry-after"], transient: true };
    default:
      // 5xx and 503 while the controller shuts down are expected to pass; other 4xx point at a bug.
      return { kind: "backoff", code: String(e.code), message: e.message, retryAfter: e.headers?.["retry-after"], transient: e.status >= 500 };
  }
}
