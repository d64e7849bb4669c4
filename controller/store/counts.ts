/**
 * The counts the metrics report at scrape time (PROTOCOL §9.1), the same on every
 * backend: one `COUNT … GROUP BY` per family, whatever the number of executors or
 * tasks, and every key present (zero when none) so a series never vanishes.
 */
import type { ExecutorLiveness, TaskStatus } from "../../shared/wire/operator.ts";

/** Executors by liveness, as `GET /api/v1/executors` reports each (domain/liveness.ts). */
export type ExecutorCounts = Record<ExecutorLiveness, number>;
export type TaskCounts = Record<TaskStatus, number>;

/** The liveness boundaries (domain/liveness.ts: `notSuspectSince`, `offlineBefore`). */
export interface LivenessBounds {
  /** Seen before this (unix ms): suspect. */
  suspectBefore: number;
  /** Seen before this, or never: offline. */
  offlineBefore: number;
}

/**
 * executorLiveness() in SQL, given the placeholders of the two bounds: revoked first,
 * then offline (silent since before `offlineBefore`, or never seen), then suspect, else
 * the status the executor reported.
 */
export function livenessSql(suspectBefore: string, offlineBefore: string): string {
  return `CASE WHEN revoked_at IS NOT NULL THEN 'revoked'
    WHEN last_seen_at IS NULL OR last_seen_at < ${offlineBefore} THEN 'offline'
    WHEN last_seen_at < ${suspectBefore} THEN 'suspect'
    ELSE status END`;
}

export function executorCountsFrom(rows: { liveness: string; n: number }[]): ExecutorCounts {
  const counts: ExecutorCounts = { ready: 0, draining: 0, suspect: 0, offline: 0, revoked: 0 };
  for (const r of rows) if (r.liveness in counts) counts[r.liveness as ExecutorLiveness] += Number(r.n);
  return counts;
}

export function taskCountsFrom(rows: { status: string; n: number }[]): TaskCounts {
  const counts: TaskCounts = { queued: 0, leased: 0, succeeded: 0, failed: 0, cancelled: 0 };
  for (const r of rows) if (r.status in counts) counts[r.status as TaskStatus] += Number(r.n);
  return counts;
}
