/**
 * The seam between the daemon and the work it runs. The daemon owns identity,
 * credentials and liveness; a WorkSource (the lease loop of a later issue) owns
 * leases and their handlers. The daemon tells it when it may take work, when to
 * cancel, when to drop everything (epoch change, revocation) and when to drain;
 * it tells the daemon what it is running so heartbeats report it.
 */
import type { Logger } from "pino";
import type { CallOptions } from "./client.ts";

/** A work request's options: the client's, and a hook told of each failure that is retried. */
export interface WorkCallOptions extends CallOptions {
  /**
   * Called before each retry after a network error or 5xx: the previous attempt may
   * have reached a controller replica that went away before it answered.
   */
  onRetry?: (e: unknown) => void;
}

export interface WorkContext {
  log: Logger;
  executorId(): string;
  capacity: number;
  /** Commands `--allow-command` permits as argv[0] of a `command` task. */
  allowedCommands: readonly string[];
  /**
   * An authenticated executor-plane request (mTLS + JWT + HMAC) with the daemon's
   * reactions applied: renew on TOKEN_EXPIRED, re-register on EPOCH_MISMATCH,
   * backoff on network errors, failing over to another controller replica on
   * network errors and 503. Rejects only when the daemon stops (AbortError),
   * on a terminal error, or with a TetherError the caller must handle itself
   * (e.g. 409 STALE_LEASE).
   */
  call<T>(method: "POST", path: string, body: unknown, opts?: WorkCallOptions): Promise<T>;
  /** Aborted when the daemon stops for good. */
  signal: AbortSignal;
}

export type DropReason = "epoch-changed" | "revoked" | "identity-lost" | "shutdown";

export interface WorkSource {
  /** Called once the executor has credentials. */
  start(ctx: WorkContext): void;
  /** false while draining (SIGTERM or `drain: true` from the controller): finish what runs, take nothing new. */
  setAccepting(accepting: boolean): void;
  /** Leases currently held, and how many are running (for the heartbeat). */
  leaseIds(): string[];
  running(): number;
  /** The controller asked for these leases to be cancelled (heartbeat `cancel_leases`). */
  cancel(leaseIds: string[]): void;
  /**
   * Everything held is void (its epoch is gone, or the executor is): stop the
   * handlers and forget the leases without reporting on them.
   */
  drop(reason: DropReason): void;
  /**
   * Finish the running work or, when `signal` aborts (the drain timeout), hand it
   * back (fail it as retryable). Resolves when nothing runs any more.
   */
  drain(signal: AbortSignal): Promise<void>;
}

/** Until leasing exists: an executor that holds no work. */
export class NoWork implements WorkSource {
  start(_ctx: WorkContext): void {}
  setAccepting(_accepting: boolean): void {}
  leaseIds(): string[] {
    return [];
  }
  running(): number {
    return 0;
  }
  cancel(_leaseIds: string[]): void {}
  drop(_reason: DropReason): void {}
  async drain(_signal: AbortSignal): Promise<void> {}
}
