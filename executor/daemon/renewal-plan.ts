/**
 * When to renew the JWT and the certificate: one plan per credential (issued,
 * expires, the controller's suggestion, a jitter drawn once), converted to the
 * local clock with the controller clock's offset. The renewal loop asks `next()`.
 */
import type { HeartbeatResponse } from "../../shared/wire/executor.ts";
import type { Random } from "../backoff.ts";
import type { CertInfo } from "../certificate.ts";
import type { CallResult } from "../client.ts";
import type { SessionRecord } from "../identity-store.ts";
import { renewDeadline, serverTimeToLocal, type RenewPlan } from "../renew-timing.ts";
import type { Trigger } from "../timers.ts";

interface Plan extends RenewPlan {
  /** The JWT or certificate fingerprint this plan is for. */
  subject: string;
}

/** The `iat` of a JWT (ms), read without verifying it: only for scheduling. */
export function jwtIssuedAtMs(jwt: string): number | undefined {
  try {
    const payload = JSON.parse(Buffer.from(jwt.split(".")[1] ?? "", "base64url").toString("utf8")) as { iat?: unknown };
    return typeof payload.iat === "number" ? payload.iat * 1000 : undefined;
  } catch {
    return undefined;
  }
}

export class RenewalPlanner {
  private jwtPlan?: Plan;
  private certPlan?: Plan;

  constructor(
    private readonly d: {
      now: () => number;
      random: Random;
      /** server − local (ms) as currently corrected. */
      clock: { readonly offsetMs: number };
      /** Fired when a plan moved (the renewal loop re-plans). */
      wake: Trigger;
    },
  ) {}

  /** Plans for a newly adopted identity: the session's JWT (if any) and the certificate. */
  reset(cert: CertInfo, session: SessionRecord): void {
    this.jwtPlan = undefined;
    this.certPlan = undefined;
    if (session.jwt && session.jwt_expires_at) this.planJwt(session.jwt, session.jwt_expires_at, session.jwt_issued_at);
    this.planCert(cert, session);
  }

  planJwt(jwt: string, expiresAt: string, issuedAt?: string): void {
    const offset = this.d.clock.offsetMs;
    const expiresAtMs = serverTimeToLocal(expiresAt, offset);
    if (expiresAtMs === undefined) return;
    const iat = jwtIssuedAtMs(jwt);
    const issuedAtMs = iat !== undefined ? iat - offset : (serverTimeToLocal(issuedAt, 0) ?? this.d.now());
    this.jwtPlan = { subject: jwt, issuedAtMs, expiresAtMs, r: this.d.random() };
  }

  planCert(c: CertInfo, s: SessionRecord | undefined): void {
    const offset = this.d.clock.offsetMs;
    const received = s?.cert_fingerprint === c.fingerprint ? serverTimeToLocal(s.cert_received_at, 0) : undefined;
    // notBefore is back-dated for skew, so the local receipt time is the better start.
    const issuedAtMs = received ?? c.notBeforeMs - offset;
    // The controller may ask for an early renewal (after a CA activation, PROTOCOL §7.2).
    this.certPlan = { subject: c.fingerprint, issuedAtMs, expiresAtMs: c.notAfterMs - offset, r: this.d.random(), honorEarlyHint: true };
  }

  /** The controller's hints apply only to the credentials the heartbeat was made with, if they are still ours. */
  applyHints(hb: HeartbeatResponse, used: CallResult<unknown>, currentJwt: string | undefined): void {
    const offset = this.d.clock.offsetMs;
    let changed = false;
    if (this.jwtPlan && used.jwt === this.jwtPlan.subject && used.jwt === currentJwt) {
      const t = serverTimeToLocal(hb.jwt_renew_after, offset);
      if (t !== undefined && t !== this.jwtPlan.suggestedMs) {
        this.jwtPlan.suggestedMs = t;
        changed = true;
      }
    }
    if (this.certPlan && used.certFingerprint === this.certPlan.subject) {
      const t = serverTimeToLocal(hb.cert_renew_after, offset);
      if (t !== undefined && t !== this.certPlan.suggestedMs) {
        this.certPlan.suggestedMs = t;
        changed = true;
      }
    }
    if (changed) this.d.wake.fire();
  }

  /** When the next renewal is due, and whether it is the certificate's. */
  next(): { atMs: number; cert: boolean } | undefined {
    const j = this.jwtPlan ? renewDeadline(this.jwtPlan) : Infinity;
    const c = this.certPlan ? renewDeadline(this.certPlan) : Infinity;
    if (!Number.isFinite(j) && !Number.isFinite(c)) return undefined;
    return c <= j ? { atMs: c, cert: true } : { atMs: j, cert: false };
  }

  /** Whether the certificate's (or the JWT's) renewal is due at `nowMs`: right after a renewal, a sign of a clock far off. */
  dueAt(cert: boolean, nowMs: number): boolean {
    const plan = cert ? this.certPlan : this.jwtPlan;
    return plan !== undefined && renewDeadline(plan) <= nowMs;
  }
}
