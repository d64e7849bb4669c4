/**
 * Errors are data: one error type carrying the HTTP status and the wire code.
 * The controller maps it to `{"error": {"code", "message"}}` in one place; the
 * executor client turns wire errors back into it so both sides speak one vocabulary.
 */
export const ErrorCode = {
  INVALID_REQUEST: "INVALID_REQUEST",
  PAYLOAD_TOO_LARGE: "PAYLOAD_TOO_LARGE",
  /** HTTP-level refusals answered before a route runs (docs/protocol.md "Transport"): 408, 414, 417, 431. */
  REQUEST_TIMEOUT: "REQUEST_TIMEOUT",
  URI_TOO_LONG: "URI_TOO_LONG",
  EXPECTATION_FAILED: "EXPECTATION_FAILED",
  HEADERS_TOO_LARGE: "HEADERS_TOO_LARGE",
  INVALID_CSR: "INVALID_CSR",
  ENROLLMENT_DENIED: "ENROLLMENT_DENIED",
  RATE_LIMITED: "RATE_LIMITED",
  CERT_REQUIRED: "CERT_REQUIRED",
  IDENTITY_MISMATCH: "IDENTITY_MISMATCH",
  CERT_REVOKED: "CERT_REVOKED",
  TOKEN_INVALID: "TOKEN_INVALID",
  TOKEN_EXPIRED: "TOKEN_EXPIRED",
  EPOCH_MISMATCH: "EPOCH_MISMATCH",
  CLOCK_SKEW: "CLOCK_SKEW",
  SIGNATURE_INVALID: "SIGNATURE_INVALID",
  NONCE_REPLAY: "NONCE_REPLAY",
  STALE_LEASE: "STALE_LEASE",
  NOT_FOUND: "NOT_FOUND",
  UNAUTHENTICATED: "UNAUTHENTICATED",
  FORBIDDEN: "FORBIDDEN",
  CONFLICT: "CONFLICT",
  ADOPTION_INCOMPLETE: "ADOPTION_INCOMPLETE",
  INTERNAL: "INTERNAL",
  /** 503: the store cannot be reached (PROTOCOL §5); a transient condition, with Retry-After. */
  UNAVAILABLE: "UNAVAILABLE",
} as const;
export type ErrorCode = (typeof ErrorCode)[keyof typeof ErrorCode];

export class TetherError extends Error {
  readonly status: number;
  readonly code: ErrorCode | string;
  /** Extra top-level fields of the error object (e.g. `server_time` for CLOCK_SKEW). */
  readonly details?: Record<string, unknown>;
  /** Extra HTTP headers for the response (e.g. `retry-after`). */
  readonly headers?: Record<string, string>;

  constructor(
    status: number,
    code: ErrorCode | string,
    message: string,
    opts: { details?: Record<string, unknown>; headers?: Record<string, string> } = {},
  ) {
    super(message);
    this.name = "TetherError";
    this.status = status;
    this.code = code;
    this.details = opts.details;
    this.headers = opts.headers;
  }

  toWire(): { error: { code: string; message: string } & Record<string, unknown> } {
    return { error: { code: this.code, message: this.message, ...(this.details ?? {}) } };
  }
}

export function isTetherError(e: unknown): e is TetherError {
  return e instanceof TetherError;
}
