/**
 * What one process tells the others about a change of shared state, so caches and long
 * polls react at once (PROTOCOL §8). On PostgreSQL every write that changes one of these
 * sends `pg_notify(CHANGE_CHANNEL, encodeChange(c))` in its own transaction (delivered on
 * commit); the embedded SQLite store has one controller process and no feed of its own.
 *
 * A cache may only answer from memory while `live()` holds (ARCHITECTURE: caches never
 * weaken a guarantee): after a lost listening connection it reads the store per request
 * until the feed is back, and drops everything it held when `onResync` fires.
 */
export type Change =
  /** Revoked, epoch bumped, drain set, HMAC key or certificate changed. */
  | { kind: "executor"; id: string }
  /** The CA set (bundle) or the JWT key ring changed. */
  | { kind: "trust" }
  /** A task was submitted, cancelled or requeued: long polls should look again. */
  | { kind: "tasks" }
  /** The published controller settings changed. */
  | { kind: "settings" };

export const CHANGE_CHANNEL = "tether_changes";

export function encodeChange(c: Change): string {
  return c.kind === "executor" ? `executor:${c.id}` : c.kind;
}

export function decodeChange(payload: string): Change | undefined {
  if (payload.startsWith("executor:")) return { kind: "executor", id: payload.slice("executor:".length) };
  if (payload === "trust" || payload === "tasks" || payload === "settings") return { kind: payload };
  return undefined;
}

export interface ChangeFeed {
  /** True while every change committed by any process is known to reach `subscribe`. */
  live(): boolean;
  subscribe(fn: (c: Change) => void): () => void;
  /** The feed is live again after an interruption: whatever was cached may be stale. */
  onResync(fn: () => void): () => void;
  close(): Promise<void>;
}

/** One process, one store: nothing else changes shared state behind our back, so nothing arrives. */
export class LocalChangeFeed implements ChangeFeed {
  live(): boolean {
    return true;
  }
  subscribe(): () => void {
    return () => undefined;
  }
  onResync(): () => void {
    return () => undefined;
  }
  async close(): Promise<void> {}
}

/**
 * Duties that must run on exactly one live replica (PROTOCOL §8). `holds(duty)` is asked
 * on every tick of the duty's timer; a replica that dies releases its duties with its
 * connection. `reclaim` also audits executors going offline (leases.reclaimed). CRLs
 * need no duty: every replica builds them on request from the store (trust/crls.ts),
 * with CRL numbers the store hands out.
 */
export type Duty = "reclaim" | "prune-nonces" | "ca-schedule" | "jwt-schedule";
export const DUTIES: readonly Duty[] = ["reclaim", "prune-nonces", "ca-schedule", "jwt-schedule"];

export interface DutyLocks {
  holds(duty: Duty): boolean;
  /** Which duties this process holds now (for logs and tests). */
  held(): Duty[];
  close(): Promise<void>;
}

/** The embedded store runs one controller: it holds every duty. */
export class SoleProcessDuties implements DutyLocks {
  holds(): boolean {
    return true;
  }
  held(): Duty[] {
    return [...DUTIES];
  }
  async close(): Promise<void> {}
}
