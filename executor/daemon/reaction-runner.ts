/**
 * Runs one controller request until it succeeds, applying the reaction table
 * (../reactions.ts) to each failure: renew, re-register, re-enroll, correct the
 * clock, retry with a new nonce, back off, or stop with an exit code. The
 * remedies that change credentials are the credential operations', passed in.
 *
 * Failover (several `--controller` URLs, ../endpoints.ts): a failure that another
 * replica may not have — no connection, reset, timeout, TLS failure, `503` — is
 * reported against the URL it was sent to, which moves the daemon to the next URL.
 * The retry then goes there after a full-jitter delay (spreading the reconnects of
 * every executor that was on a dead replica); a retry that goes to a URL that
 * failed too (all are failing) keeps the usual backoff. A Retry-After is honoured
 * only by a retry to the URL that sent it (always so with one URL). Nothing here
 * re-enrolls or re-registers because a replica is gone: those only follow a
 * controller's answer.
 */
import type { Logger } from "pino";
import { TetherError } from "../../shared/errors.ts";
import { rfc3339 } from "../../shared/time.ts";
import { Backoff, retryAfterDelay, type BackoffOptions, type Random } from "../backoff.ts";
import { DaemonExit, ExitCode } from "../exit-codes.ts";
import { requestUrl, TransportError } from "../client.ts";
import type { ControllerEndpoints, EndpointFailure } from "../endpoints.ts";
import { CERT_REFUSED_CODES, classify, type Reaction } from "../reactions.ts";
import { abortError, sleep } from "../timers.ts";
import type { ControllerClock } from "./clock.ts";
import type { Identity } from "./identity.ts";

/** The credential changes a reaction may call for (each runs as one credential operation). */
export interface Remedies {
  /** TOKEN_EXPIRED / TOKEN_INVALID; `seenJwt`: the JWT the failed attempt used (skip if already replaced). */
  renewJwt(seenJwt: string | undefined, reason: string): Promise<void>;
  /** EPOCH_MISMATCH; `seenEpoch`: the epoch the failed attempt used. */
  reregister(seenEpoch: number | undefined, reason: string): Promise<void>;
  /** CERT_REQUIRED / IDENTITY_MISMATCH with a token at hand. */
  reenroll(token: string, code: string): Promise<void>;
}

export interface ReactionOptions {
  /**
   * Inside a credential operation: reactions that need another credential
   * operation are passed up instead (no self-deadlock).
   */
  inCredOp?: boolean;
  /** Hand a non-transient TetherError (e.g. 409 STALE_LEASE) to the caller instead of retrying it. */
  passThrough?: boolean;
  /** Told of each failure that is retried after a delay (network errors, 5xx…), before the delay. */
  onRetry?: (e: unknown) => void;
  /** Told the code of every failed attempt, whatever the reaction (the metrics count them); not of an abort. */
  onFailure?: (code: string) => void;
}

/** What a failure says about the URL it was sent to, when another replica may answer instead. */
function endpointFailure(e: unknown, r: Reaction): EndpointFailure | undefined {
  if (r.kind === "aborted") return undefined;
  if (e instanceof TransportError) {
    return { code: r.code, message: e.message, untrusted: r.kind === "untrusted-controller", badCertificate: e.code !== undefined && CERT_REFUSED_CODES.has(e.code) };
  }
  if (e instanceof TetherError && e.status === 503) return { code: e.code, message: e.message, unavailable: true };
  return undefined;
}

/**
 * Chain-verification failures of the controller in a row (any request) that end the
 * daemon, and for how long at least they must have lasted: a server that briefly
 * presents a wrong certificate (a proxy being redeployed) must not stop a fleet.
 */
export const DEFAULT_UNTRUSTED = { attempts: 6, forMs: 60_000 } as const;

export class ReactionRunner {
  private reenrollments = 0;
  private failingSince?: number;

  constructor(
    private readonly d: {
      log: Logger;
      now: () => number;
      random: Random;
      backoff: BackoffOptions;
      /** The daemon's stop signal. */
      signal: AbortSignal;
      identity: Identity;
      clock: ControllerClock;
      /** The controller URLs; chain-verification failures are counted there, per URL. */
      endpoints: ControllerEndpoints;
      readToken: () => string | undefined;
      tokenSource?: string;
      remedies: Remedies;
      /**
       * After this many chain failures in a row, lasting at least this long, at every
       * controller URL: `lostTrust` says why and how to recover.
       */
      untrusted: { attempts: number; forMs: number };
      lostTrust(code: string, attempts: number): DaemonExit;
    },
  ) {}

  /** Runs `op` until it succeeds, applying the reaction table to each failure. */
  async run<T>(what: string, op: () => Promise<T>, o: ReactionOptions = {}): Promise<T> {
    const { log, identity, signal } = this.d;
    const backoff = new Backoff(this.d.backoff, this.d.random);
    let action: (() => Promise<void>) | undefined;
    let actions = 0;
    let replays = 0;
    for (;;) {
      if (signal.aborted) throw abortError();
      // The credentials the attempt is made with: a reaction must not redo what another caller already did.
      let seen = { jwt: identity.session?.jwt, epoch: identity.session?.epoch };
      try {
        if (action) {
          const a = action;
          action = undefined;
          await a();
        }
        seen = { jwt: identity.session?.jwt, epoch: identity.session?.epoch };
        const result = await op();
        if (this.failingSince !== undefined && !o.inCredOp) {
          const controller = this.d.endpoints.current;
          log.info({ event: "contact.restored", after_ms: this.d.now() - this.failingSince, controller }, `the controller answers again (${controller})`);
          this.failingSince = undefined;
        }
        return result;
      } catch (e) {
        if (e instanceof DaemonExit) throw e;
        const r = classify(e, this.d.now());
        if (r.kind !== "aborted") o.onFailure?.(r.code);
        const { endpoints } = this.d;
        // (Every answer, over a verified connection, already cleared its URL's marks in the client.)
        const failedUrl = requestUrl(e);
        const failure = failedUrl === undefined ? undefined : endpointFailure(e, r);
        if (failure) endpoints.failed(failedUrl!, failure, this.d.now());
        // The next attempt goes to another URL: the failed one's Retry-After is not for it. One that has not
        // failed gets a full-jitter delay (spreading the reconnects of every executor that was on a dead
        // replica); cycling back to URLs that failed too keeps the usual backoff.
        const moved = failure !== undefined && endpoints.current !== failedUrl;
        const fresh = moved && !endpoints.isFailing(endpoints.current);
        const retryLater = async (code: string, message: string, retryAfter?: string, level: "warn" | "error" = "warn") => {
          // Nothing listening (a controller restarting) is retried at a short flat pace for a while (backoff.ts reconnectDelay).
          const refused = { refused: r.code === "ECONNREFUSED", lostForMs: this.d.now() - (this.failingSince ?? this.d.now()) };
          const d = fresh ? backoff.nextFull() : retryAfter !== undefined && !moved ? retryAfterDelay(retryAfter, backoff.next()) : backoff.nextReconnect(refused);
          this.failingSince ??= this.d.now();
          o.onRetry?.(e);
          const at = endpoints.several ? { controller: endpoints.current } : {};
          log[level]({ event: "retrying", what, code, attempt: backoff.attempts, delay_ms: d, ...at }, `${what} failed (${code}: ${message}); retrying in ${d} ms${endpoints.several ? ` at ${endpoints.current}` : ""}`);
          await sleep(d, signal);
        };
        switch (r.kind) {
          case "aborted":
            throw e;
          case "renew-jwt":
          case "reregister":
            if (o.inCredOp) {
              await retryLater(r.code, (e as Error).message, undefined, "error");
              continue;
            }
            if (++actions > 3) await retryLater(r.code, "still failing after renewing", undefined, "error");
            if (r.kind === "renew-jwt") {
              log.info({ event: r.code === "TOKEN_EXPIRED" ? "token_expired" : "token_invalid", what, code: r.code }, `${what}: ${r.code}, renewing the JWT`);
              const jwt = seen.jwt;
              action = () => this.d.remedies.renewJwt(jwt, r.code);
            } else {
              log.warn({ event: "epoch_mismatch", what, epoch: seen.epoch }, `${what}: EPOCH_MISMATCH, dropping work and re-registering`);
              const epoch = seen.epoch;
              action = () => this.d.remedies.reregister(epoch, r.code);
            }
            continue;
          case "revoked":
            throw new DaemonExit(
              ExitCode.REVOKED,
              `executor ${identity.executorId} has been revoked by the controller (CERT_REVOKED); it stops and will not be accepted again — enroll a new executor with a new token if this host should keep working`,
              "revoked",
            );
          case "identity-rejected": {
            if (o.inCredOp) throw e; // handled by the caller outside the credential lock
            const token = this.d.readToken();
            action = this.reenrollOrExit(token, r.code, r.message);
            continue;
          }
          case "clock-skew":
            if (r.offsetMs !== undefined) this.d.clock.note(r.offsetMs, true);
            else log.warn({ event: "clock_skew", what }, `${what}: CLOCK_SKEW without server_time`);
            await retryLater(r.code, (e as Error).message);
            continue;
          case "retry-now":
            if (++replays <= 3) {
              log.warn({ event: "nonce_replay", what, attempt: replays }, `${what}: NONCE_REPLAY, retrying with a new nonce`);
              continue;
            }
            await retryLater(r.code, (e as Error).message);
            continue;
          case "enrollment-denied":
            throw new DaemonExit(
              ExitCode.ENROLLMENT_FAILED,
              `the enrollment token${this.d.tokenSource ? ` from ${this.d.tokenSource}` : ""} was denied (ENROLLMENT_DENIED: unknown, expired, used up or revoked); create a new one with "tether token create"`,
              "enrollment.denied",
            );
          case "fatal":
            throw new DaemonExit(ExitCode.ERROR, `${what}: ${r.code}: ${r.message}`, "error");
          case "untrusted-controller": {
            // One replica with a certificate we cannot verify is failed over (loudly, above); only when
            // every URL keeps failing verification is the trust lost.
            const all = endpoints.untrustedEverywhere();
            if (all && all.attempts >= this.d.untrusted.attempts && this.d.now() - all.sinceMs >= this.d.untrusted.forMs) {
              throw this.d.lostTrust(r.code, all.attempts);
            }
            await retryLater(r.code, r.message, undefined, "error");
            continue;
          }
          case "backoff":
            if (o.passThrough && !r.transient && e instanceof TetherError) throw e;
            await retryLater(r.code, r.message, r.retryAfter, r.transient ? "warn" : "error");
            continue;
        }
      }
    }
  }

  /** The controller refuses this identity: re-enroll once with a token, else exit naming the way out. */
  private reenrollOrExit(token: string | undefined, code: string, message: string): () => Promise<void> {
    const { identity } = this.d;
    const id = identity.executorId;
    const cert = identity.cert;
    const expiredAt = cert && cert.notAfterMs <= this.d.now() ? cert.notAfterMs : undefined;
    if (identity.enrolledHere && !identity.acceptedSinceEnroll && expiredAt === undefined) {
      // Re-enrolling cannot help when the controller refuses what it has just issued.
      throw new DaemonExit(
        ExitCode.ERROR,
        `the controller refused the certificate it has just issued to executor ${id} (${code}: ${message}); this is a controller-side problem — see its audit log (guard.rejected)`,
        "identity.rejected",
      );
    }
    if (token && this.reenrollments < 1) {
      this.reenrollments++;
      return () => this.d.remedies.reenroll(token, code);
    }
    throw new DaemonExit(
      ExitCode.REENROLL_REQUIRED,
      expiredAt !== undefined
        ? `the certificate of executor ${id} expired at ${rfc3339(expiredAt)} and the controller refuses it (${code}); re-enroll: create a token with "tether token create" and start again with --token-file FILE`
        : `the controller no longer accepts the identity of executor ${id} (${code}: ${message}); re-enroll: create a token with "tether token create" and start again with --token-file FILE`,
      "identity.rejected",
    );
  }
}
