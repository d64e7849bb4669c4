/**
 * When to renew a credential (the JWT or the certificate). The controller
 * suggests a time in heartbeat responses (`jwt_renew_after`, `cert_renew_after`);
 * without one we compute 2/3 of the lifetime locally (shared `renewAt`). Either
 * way a per-credential jitter spreads a fleet's renewals, and the result is kept
 * between half-life and 90 % of the life so jitter or a bad hint can neither
 * renew absurdly early nor let the credential lapse — except that a certificate
 * plan honors an early hint (`honorEarlyHint`): after a CA activation the
 * controller asks for a renewal within a heartbeat interval (PROTOCOL §7.2).
 */
import { renewAt } from "../shared/protocol.ts";

/** Jitter of the renewal time, as a fraction of the credential's lifetime (±). */
export const RENEW_JITTER_FRACTION = 0.05;

export interface RenewPlan {
  /** When the credential was issued (local clock, ms). */
  issuedAtMs: number;
  /** When it expires (local clock, ms). */
  expiresAtMs: number;
  /** The controller's suggestion converted to the local clock, if it sent one for this credential. */
  suggestedMs?: number;
  /** A uniform number in [0, 1) drawn once per credential, so re-planning does not re-roll the dice. */
  r: number;
  jitterFraction?: number;
  /** A suggestion before half-life is taken as it is (not before issue): the controller wants this credential replaced now. */
  honorEarlyHint?: boolean;
}

/** Absolute local time (ms) at which to renew. */
export function renewDeadline(p: RenewPlan): number {
  const life = Math.max(0, p.expiresAtMs - p.issuedAtMs);
  const base =
    p.suggestedMs !== undefined && Number.isFinite(p.suggestedMs) ? p.suggestedMs : renewAt(p.issuedAtMs, p.expiresAtMs);
  const spread = (2 * p.r - 1) * (p.jitterFraction ?? RENEW_JITTER_FRACTION) * life;
  const earliest = p.issuedAtMs + life / 2;
  const latest = p.expiresAtMs - life / 10;
  if (p.honorEarlyHint && p.suggestedMs !== undefined && p.suggestedMs < earliest) return Math.floor(Math.max(p.issuedAtMs, p.suggestedMs));
  return Math.floor(Math.min(latest, Math.max(earliest, base + spread)));
}

/** Milliseconds from `nowMs` until `deadlineMs`, never negative. */
export function delayUntil(deadlineMs: number, nowMs: number): number {
  return Math.max(0, Math.floor(deadlineMs - nowMs));
}

/**
 * Server timestamps (RFC 3339) are on the controller's clock; `offsetMs` is
 * server − local as last measured. Returns local ms, or undefined when unparseable.
 */
export function serverTimeToLocal(rfc3339: string | undefined, offsetMs: number): number | undefined {
  if (!rfc3339) return undefined;
  const t = Date.parse(rfc3339);
  return Number.isFinite(t) ? t - offsetMs : undefined;
}

/**
 * The clock offset (server − local, ms) measured from a response's `server_time`
 * (second precision) and the request's send/receive times: the server stamped it
 * somewhere between the two, so the midpoint is the best estimate.
 */
export function measureClockOffset(serverTime: string, sentAtMs: number, receivedAtMs: number): number | undefined {
  const t = Date.parse(serverTime);
  if (!Number.isFinite(t)) return undefined;
  return Math.round(t - (sentAtMs + receivedAtMs) / 2);
}
