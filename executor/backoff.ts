/**
 * Retry and scheduling arithmetic, kept pure (a random source is injected) so the
 * unit tests can pin every bound: capped exponential backoff with jitter that can
 * never collapse into a tight loop, and symmetric jitter for periodic work.
 */

/** A source of uniform numbers in [0, 1). */
export type Random = () => number;

export interface BackoffOptions {
  /** First delay before jitter (ms). */
  baseMs: number;
  /** Upper bound of any delay (ms). */
  capMs: number;
  /** Exponential growth per attempt. */
  factor: number;
}

export const DEFAULT_BACKOFF: BackoffOptions = { baseMs: 500, capMs: 30_000, factor: 2 };

/**
 * Delay before retry number `attempt` (0-based): "equal jitter" — half of the
 * exponential step is fixed and half is random, so the delay is always at least
 * half the step (never ~0, never a tight loop) and never above the cap.
 *   step  = min(cap, base · factor^attempt)
 *   delay = step/2 + random · step/2           ∈ [step/2, step)
 */
export function backoffDelay(attempt: number, opts: BackoffOptions = DEFAULT_BACKOFF, random: Random = Math.random): number {
  const n = Math.max(0, Math.floor(attempt));
  // factor^n overflows to Infinity for large n; min() with the cap keeps it finite.
  const step = Math.min(opts.capMs, opts.baseMs * Math.pow(opts.factor, n));
  const r = clampUnit(random());
  return Math.floor(step / 2 + (r * step) / 2);
}

/**
 * "Full jitter" for moving to another controller replica: anywhere in [0, step).
 * Used only when the next attempt goes to a URL that has not failed (a replica
 * just died and its executors spread their reconnects to the others); retrying
 * the same URL keeps the equal jitter above, which can never become a tight loop.
 */
export function fullJitterDelay(attempt: number, opts: BackoffOptions = DEFAULT_BACKOFF, random: Random = Math.random): number {
  const n = Math.max(0, Math.floor(attempt));
  const step = Math.min(opts.capMs, opts.baseMs * Math.pow(opts.factor, n));
  return Math.floor(clampUnit(random()) * step);
}

/**
 * Reconnecting while nothing listens (`ECONNREFUSED`: a controller restarting). A refused
 * connection costs the controller nothing — the kernel answers it — so for the first
 * `windowMs` after the connection was lost the retries stay short and flat, uniform in
 * [minMs, maxMs), instead of growing: the executor is back within about a second of the
 * new process listening, instead of sleeping through seconds of an idle controller
 * (after a restart the fleet's recovery is bounded by its last executor's return as much
 * as by the controller's work; docs/performance.md, the restart storm). The controller
 * serves the wave as fast as its CPU allows. A controller that stays down
 * longer is backed off from as usual.
 */
export interface RefusedRetryOptions {
  minMs: number;
  maxMs: number;
  /** How long after the connection was lost the flat retries last. */
  windowMs: number;
}

export const DEFAULT_REFUSED_RETRY: RefusedRetryOptions = { minMs: 500, maxMs: 1_500, windowMs: 30_000 };

/**
 * The delay before retry number `attempt` after a failure: the flat refused-connection
 * retry above while it applies (`refused`, lost for less than its window), otherwise
 * `backoffDelay(attempt)`. The daemon (executor/daemon/reaction-runner.ts) and the
 * benchmark's restart storm (bench/worker.ts) both reconnect with this.
 */
export function reconnectDelay(
  attempt: number,
  failure: { refused: boolean; lostForMs: number },
  opts: BackoffOptions = DEFAULT_BACKOFF,
  random: Random = Math.random,
  refusedOpts: RefusedRetryOptions = DEFAULT_REFUSED_RETRY,
): number {
  if (failure.refused && failure.lostForMs >= 0 && failure.lostForMs < refusedOpts.windowMs) {
    return Math.floor(refusedOpts.minMs + clampUnit(random()) * (refusedOpts.maxMs - refusedOpts.minMs));
  }
  return backoffDelay(attempt, opts, random);
}

/** A retry counter: `next()` gives the delay for the next attempt; `reset()` after a success. */
export class Backoff {
  private attempt = 0;
  constructor(
    private readonly opts: BackoffOptions = DEFAULT_BACKOFF,
    private readonly random: Random = Math.random,
  ) {}

  next(): number {
    return backoffDelay(this.attempt++, this.opts, this.random);
  }

  /** The next attempt's delay after a failed (re)connection (see `reconnectDelay`); counts as an attempt like `next()`. */
  nextReconnect(failure: { refused: boolean; lostForMs: number }): number {
    return reconnectDelay(this.attempt++, failure, this.opts, this.random);
  }

  /** The next attempt's delay with full jitter (see `fullJitterDelay`); counts as an attempt like `next()`. */
  nextFull(): number {
    return fullJitterDelay(this.attempt++, this.opts, this.random);
  }

  /** How many retries have been handed out since the last reset. */
  get attempts(): number {
    return this.attempt;
  }

  reset(): void {
    this.attempt = 0;
  }
}

/** `ms` spread uniformly over ±`fraction` of itself: jitter(10_000, 0.1) ∈ [9_000, 11_000). */
export function jitter(ms: number, fraction: number, random: Random = Math.random): number {
  const r = clampUnit(random());
  return Math.floor(ms * (1 + fraction * (2 * r - 1)));
}

/** Heartbeat delay: the controller's interval with ±10 % jitter, never below `minMs`. */
export function heartbeatDelay(intervalS: number, random: Random = Math.random, minMs = 500): number {
  const base = Number.isFinite(intervalS) && intervalS > 0 ? intervalS * 1000 : 10_000;
  return Math.max(minMs, jitter(base, 0.1, random));
}

/** Honors a `Retry-After` header (seconds), bounded to [fallback/2, cap]; falls back to `fallbackMs`. */
export function retryAfterDelay(retryAfter: string | undefined, fallbackMs: number, capMs = 300_000): number {
  const s = retryAfter === undefined ? NaN : Number(retryAfter);
  if (!Number.isFinite(s) || s < 0) return fallbackMs;
  return Math.min(capMs, Math.max(Math.floor(fallbackMs / 2), Math.ceil(s * 1000)));
}

function clampUnit(r: number): number {
  if (!Number.isFinite(r) || r < 0) return 0;
  return r >= 1 ? 1 - Number.EPSILON : r;
}
