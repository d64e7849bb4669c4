/**
 * The rules of the executor guard chain (PROTOCOL §3.2) as pure functions: each takes
 * what it judges and the time, and returns a verdict with the wire code of the
 * rejection. No I/O, no HTTP: the authenticator (executor-authenticator.ts) fetches
 * what they need, the HTTP guards map the codes to responses. Unit-tested on every
 * rejection path (test/unit/executor-auth.test.ts), the way jose tests its claims set.
 */
import type { ClientCertIdentity } from "../../certs/client-cert.ts";
import { TetherError } from "../../shared/errors.ts";
import { MAX_SKEW_MS, isValidNonce, isValidTimestamp } from "../../shared/hmac.ts";
import type { CertThumbprint } from "../../shared/fingerprint.ts";
import type { ExecutorAuthState, HmacKeys } from "../store/types.ts";

export type AuthCode =
  | "CERT_REQUIRED"
  | "IDENTITY_MISMATCH"
  | "CERT_REVOKED"
  | "TOKEN_INVALID"
  | "TOKEN_EXPIRED"
  | "EPOCH_MISMATCH"
  | "CLOCK_SKEW"
  | "SIGNATURE_INVALID"
  | "NONCE_REPLAY";

/** Why a check failed: the wire code, and a reason for the audit log (never sent). */
export interface Rejection {
  ok: false;
  code: AuthCode;
  reason: string;
}
export type Verdict = { ok: true } | Rejection;

export const ACCEPT: Verdict = Object.freeze({ ok: true });
export const reject = (code: AuthCode, reason: string): Rejection => ({ ok: false, code, reason });

/** What each code answers (PROTOCOL §3.2): the one table, used by the guards and by the services. */
const RESPONSES: Readonly<Record<AuthCode, { status: number; message: string }>> = {
  CERT_REQUIRED: { status: 401, message: "a valid client certificate issued by this controller is required" },
  IDENTITY_MISMATCH: { status: 403, message: "the client certificate names another executor" },
  CERT_REVOKED: { status: 401, message: "this executor has been revoked" },
  TOKEN_INVALID: { status: 401, message: "missing or invalid executor token" },
  TOKEN_EXPIRED: { status: 401, message: "the executor token has expired; renew it" },
  EPOCH_MISMATCH: { status: 401, message: "the token is from an older epoch; re-register" },
  CLOCK_SKEW: { status: 401, message: "the request timestamp is too far from the server's clock" },
  SIGNATURE_INVALID: { status: 401, message: "missing or invalid request signature" },
  NONCE_REPLAY: { status: 409, message: "this nonce was already used" },
};

/** The wire error of a rejection (the reason stays out of it: it is for the audit log). */
export function rejectionError(r: Rejection, details?: Record<string, unknown>): TetherError {
  const { status, message } = RESPONSES[r.code];
  return new TetherError(status, r.code, message, { details });
}

/** The claims of an executor JWT (PROTOCOL §3.2 step 2). */
export interface ExecutorClaims {
  iss: string;
  aud: string;
  sub: string;
  epoch: number;
  iat: number;
  exp: number;
  jti: string;
  cnf: { "x5t#S256": CertThumbprint };
}

// ─── 1. mTLS ────────────────────────────────────────────────────────────

/**
 * The certificate on the connection (already chain-checked once per connection) against
 * the request: still valid now, and naming the executor of the path.
 */
export function checkPresentedCertificate(identity: ClientCertIdentity, pathExecutorId: string, nowMs: number): Verdict {
  if (identity.notAfter <= nowMs) return reject("CERT_REQUIRED", "expired");
  if (identity.executorId !== pathExecutorId) return reject("IDENTITY_MISMATCH", `certificate of ${identity.executorId}`);
  return ACCEPT;
}

/**
 * The executor as the store has it now: known, not revoked, and the presented
 * certificate is its current one — or its previous one, inside the grace window after
 * a renewal (so requests in flight during a rotation still pass).
 */
export function checkExecutorCertificate(
  auth: ExecutorAuthState | undefined,
  presented: CertThumbprint,
  nowMs: number,
): { ok: true; auth: ExecutorAuthState; previous: boolean } | Rejection {
  if (!auth) return reject("CERT_REQUIRED", "unknown executor");
  if (auth.revoked) return reject("CERT_REVOKED", "executor revoked");
  if (auth.certFingerprint === presented) return { ok: true, auth, previous: false };
  const inGrace = auth.prevCertFingerprint === presented && auth.prevCertGraceUntil !== null && nowMs < auth.prevCertGraceUntil;
  return inGrace ? { ok: true, auth, previous: true } : reject("CERT_REQUIRED", "not the executor's current certificate");
}

/**
 * Only the current certificate may rotate credentials (renew with a CSR, re-register):
 * a previous one in its grace window serves requests in flight, not a second owner.
 * The one exception is a current certificate nobody has used yet — the daemon that
 * asked for it may have crashed before it arrived, and recovers with the previous one
 * (PROTOCOL §7.4); the first request made with the new certificate ends that.
 */
export function checkMayRotate(who: { auth: Pick<ExecutorAuthState, "certConfirmed">; viaPrevious: boolean }): Verdict {
  if (!who.viaPrevious || !who.auth.certConfirmed) return ACCEPT;
  return reject("CERT_REQUIRED", "the previous certificate may not rotate credentials once the new one is in use");
}

// ─── 2. JWT ─────────────────────────────────────────────────────────────

export interface ExpectedClaims {
  issuer: string;
  audience: string;
  /** The executor of the path. */
  sub: string;
  /** The certificate on the connection (RFC 8705 binding). */
  thumbprint: CertThumbprint;
}

/**
 * The claims of a token whose signature verified: issuer, audience, subject, binding
 * to the connection's certificate, expiry. Expiry is checked last, so a token that is
 * both foreign and expired is called invalid, not expired (expired means "renew").
 */
export function validateExecutorClaims(claims: ExecutorClaims, expected: ExpectedClaims, nowMs: number): Verdict {
  if (claims.iss !== expected.issuer) return reject("TOKEN_INVALID", "wrong iss");
  if (claims.aud !== expected.audience) return reject("TOKEN_INVALID", "wrong aud");
  if (claims.sub !== expected.sub) return reject("TOKEN_INVALID", "wrong sub");
  if (claims.cnf?.["x5t#S256"] !== expected.thumbprint) return reject("TOKEN_INVALID", "cnf does not match the client certificate");
  if (claims.exp * 1000 <= nowMs) return reject("TOKEN_EXPIRED", "expired");
  return ACCEPT;
}

/** A token from another epoch than the executor's current one is refused (the executor re-registers). */
export function checkEpoch(claims: Pick<ExecutorClaims, "epoch">, auth: Pick<ExecutorAuthState, "epoch">): Verdict {
  return claims.epoch === auth.epoch ? ACCEPT : reject("EPOCH_MISMATCH", `token epoch ${claims.epoch}, current ${auth.epoch}`);
}

/** The bearer value of an executor route: a JWT, never an operator or enrollment token. */
export function checkBearerShape(token: string | undefined): { ok: true; token: string } | Rejection {
  if (!token) return reject("TOKEN_INVALID", "no bearer token");
  if (token.startsWith("tet_")) return reject("TOKEN_INVALID", "API or enrollment token on an executor route");
  return { ok: true, token };
}

// ─── 3. HMAC ────────────────────────────────────────────────────────────

export interface SignatureHeaders {
  timestamp?: string;
  nonce?: string;
  signature?: string;
}

/** The three headers are present and well formed (the signature itself is checked with the key). */
export function checkSignatureHeaders(h: SignatureHeaders): { ok: true; headers: Required<SignatureHeaders> } | Rejection {
  const { timestamp, nonce, signature } = h;
  if (!timestamp || !nonce || !signature) return reject("SIGNATURE_INVALID", "missing signature headers");
  if (!isValidTimestamp(timestamp)) return reject("SIGNATURE_INVALID", "malformed timestamp");
  if (!isValidNonce(nonce)) return reject("SIGNATURE_INVALID", "malformed nonce");
  return { ok: true, headers: { timestamp, nonce, signature } };
}

/**
 * The keys a signature may be made with: the current one, and the previous one until its
 * grace ends (PROTOCOL §7.4: requests in flight, and a daemon that crashed before it
 * saved the new key, still pass for 5 minutes).
 */
export function acceptedHmacKeys(keys: HmacKeys, nowMs: number): Buffer[] {
  const previousValid = keys.previous !== null && keys.previousUntil !== null && nowMs < keys.previousUntil;
  return previousValid && keys.previous ? [keys.current, keys.previous] : [keys.current];
}

/** `|server time − timestamp| ≤ 300 s`. */
export function checkTimestamp(timestampMs: number, nowMs: number, maxSkewMs = MAX_SKEW_MS): Verdict {
  const skew = nowMs - timestampMs;
  return Math.abs(skew) > maxSkewMs ? reject("CLOCK_SKEW", `skew ${skew} ms`) : ACCEPT;
}
