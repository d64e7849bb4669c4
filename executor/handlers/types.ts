/**
 * The handler seam: one handler per task `kind`. The lease loop (executor/leases.ts)
 * owns the lease — polling, reporting, cancellation, hand-back — and a handler only
 * runs the work. See docs/handlers.md.
 */
import type { Logger } from "pino";

/** What a handler gets for one leased task. */
export interface TaskInput {
  taskId: string;
  leaseId: string;
  kind: string;
  /** The task payload exactly as the controller sent it (validate it: it is untrusted input). */
  payload: unknown;
  /** The lease expiry the controller announced (heartbeats extend it; informational). */
  expiresAt: string;
  log: Logger;
}

/** `result` → `POST …/complete {"result"}`; `error` → `POST …/fail {"error", "retryable"}`. */
export type TaskOutcome = { result: Record<string, unknown> } | { error: string; retryable: boolean };

export interface TaskHandler {
  /** The task kind this handler runs (exact match). */
  readonly kind: string;
  /**
   * Runs the task to its end. When `signal` aborts (cancelled, lease dropped, hand-back)
   * the handler must stop the work it started — all of it — and then resolve; what it
   * resolves with after an abort is ignored. It should not throw: a throw is reported as
   * a non-retryable failure naming the error.
   */
  run(task: TaskInput, signal: AbortSignal): Promise<TaskOutcome>;
}

export function isFailure(o: TaskOutcome): o is { error: string; retryable: boolean } {
  return "error" in o;
}
