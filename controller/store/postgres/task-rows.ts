/** Task rows as PostgreSQL returns them, and their mapping to records. */
import type { TaskRecord, TaskStatus } from "../task-types.ts";

export interface TaskRow {
  id: string; kind: string; payload: string; selector: string; timeout_s: number; max_attempts: number;
  attempts: number; status: TaskStatus; created_at: number; updated_at: number; finished_at: number | null;
  lease_id: string | null; executor_id: string | null; epoch: number | null; lease_expires_at: number | null;
  cancel_requested: boolean; result: string | null; error: string | null; submitted_by: string | null; seq: number;
}

export const TASK_COLUMNS = `id, kind, payload, selector, timeout_s, max_attempts, attempts, status, created_at, updated_at,
  finished_at, lease_id, executor_id, epoch, lease_expires_at, cancel_requested, result, error, submitted_by, seq`;

export function toTask(r: TaskRow): TaskRecord {
  return {
    id: r.id, kind: r.kind, payload: JSON.parse(r.payload), selector: JSON.parse(r.selector), timeoutS: r.timeout_s,
    maxAttempts: r.max_attempts, attempts: r.attempts, status: r.status, createdAt: r.created_at,
    updatedAt: r.updated_at, finishedAt: r.finished_at, leaseId: r.lease_id, executorId: r.executor_id, epoch: r.epoch,
    leaseExpiresAt: r.lease_expires_at, cancelRequested: r.cancel_requested,
    result: r.result === null ? null : JSON.parse(r.result), error: r.error, submittedBy: r.submitted_by,
  };
}

/**
 * A lease that goes back: queued again, or failed once its attempts are used up.
 * `$reason` and `$now` name the parameters that hold the reason and the time.
 */
export function requeueSet(reason: string, now: string): string {
  return `
    status = CASE WHEN attempts >= max_attempts THEN 'failed' ELSE 'queued' END,
    error = CASE WHEN attempts >= max_attempts THEN 'attempts exhausted; last error: ' || ${reason}::text ELSE ${reason}::text END,
    finished_at = CASE WHEN attempts >= max_attempts THEN ${now}::bigint ELSE NULL END,
    lease_id = NULL, executor_id = NULL, epoch = NULL, lease_expires_at = NULL, updated_at = ${now}::bigint`;
}
