/** The task store's SQL, prepared once per connection, typed by parameters and row. */
import type Database from "better-sqlite3";
import type { TaskRecord, TaskStatus } from "../task-types.ts";
import { ELIGIBLE_EXECUTOR_SQL, LEASE_CANDIDATES_SQL } from "./dispatch.ts";

export interface TaskRow {
  id: string; kind: string; payload: string; selector: string; timeout_s: number; max_attempts: number;
  attempts: number; status: TaskStatus; created_at: number; updated_at: number; finished_at: number | null;
  lease_id: string | null; executor_id: string | null; epoch: number | null; lease_expires_at: number | null;
  cancel_requested: number; result: string | null; error: string | null; submitted_by: string | null;
  selector_size: number;
}

export function toTask(r: TaskRow): TaskRecord {
  return {
    id: r.id, kind: r.kind, payload: JSON.parse(r.payload), selector: JSON.parse(r.selector), timeoutS: r.timeout_s,
    maxAttempts: r.max_attempts, attempts: r.attempts, status: r.status, createdAt: r.created_at,
    updatedAt: r.updated_at, finishedAt: r.finished_at, leaseId: r.lease_id, executorId: r.executor_id, epoch: r.epoch,
    leaseExpiresAt: r.lease_expires_at, cancelRequested: r.cancel_requested === 1,
    result: r.result === null ? null : JSON.parse(r.result), error: r.error, submittedBy: r.submitted_by,
  };
}

interface InsertParams {
  id: string; kind: string; payload: string; selector: string; timeoutS: number; maxAttempts: number;
  submittedBy: string | null; now: number;
}
interface LeaseParams { id: string; leaseId: string; executorId: string; epoch: number; leaseExpiresAt: number; now: number }
interface FenceParams { leaseId: string; executorId: string; epoch: number; now: number }

export type TaskStatements = ReturnType<typeof prepareTaskStatements>;

export function prepareTaskStatements(db: Database.Database) {
  // A lease that goes back: queued again, or failed once its attempts are used up.
  const requeueSet = `
    status = CASE WHEN attempts >= max_attempts THEN 'failed' ELSE 'queued' END,
    error = CASE WHEN attempts >= max_attempts THEN 'attempts exhausted; last error: ' || @reason ELSE @reason END,
    finished_at = CASE WHEN attempts >= max_attempts THEN @now ELSE NULL END,
    lease_id = NULL, executor_id = NULL, epoch = NULL, lease_expires_at = NULL, updated_at = @now`;
  const fenced = `lease_id = @leaseId AND executor_id = @executorId AND epoch = @epoch AND status = 'leased'`;
  return {
    // selector_size is counted by SQLite's own JSON reader, so it always agrees with the pairs the triggers write.
    insert: db.prepare<InsertParams>(
      `INSERT INTO tasks (id, kind, payload, selector, selector_size, timeout_s, max_attempts, status, created_at, updated_at, submitted_by)
       VALUES (@id, @kind, @payload, @selector, (SELECT COUNT(*) FROM json_each(@selector)), @timeoutS, @maxAttempts, 'queued',
         @now, @now, @submittedBy)`,
    ),
    get: db.prepare<[id: string], TaskRow>(`SELECT * FROM tasks WHERE id = ?`),
    list: db.prepare<[limit: number], TaskRow>(`SELECT * FROM tasks ORDER BY rowid DESC LIMIT ?`),
    listByStatus: db.prepare<[status: TaskStatus, limit: number], TaskRow>(`SELECT * FROM tasks WHERE status = ? ORDER BY rowid DESC LIMIT ?`),
    cancelQueued: db.prepare<{ id: string; now: number }>(
      `UPDATE tasks SET status = 'cancelled', cancel_requested = 1, finished_at = @now, updated_at = @now
       WHERE id = @id AND status = 'queued'`,
    ),
    cancelLeased: db.prepare<{ id: string; now: number }>(
      `UPDATE tasks SET status = 'cancelled', cancel_requested = 1, finished_at = @now, updated_at = @now
       WHERE id = @id AND status = 'leased'`,
    ),
    eligibleExecutor: db.prepare<{ executorId: string; epoch: number; aliveSince: number }, { free: number }>(ELIGIBLE_EXECUTOR_SQL),
    leaseCandidates: db.prepare<{ executorId: string; limit: number }, string>(LEASE_CANDIDATES_SQL).pluck(),
    lease: db.prepare<LeaseParams, TaskRow>(
      `UPDATE tasks SET status = 'leased', attempts = attempts + 1, lease_id = @leaseId, executor_id = @executorId,
         epoch = @epoch, lease_expires_at = @leaseExpiresAt, updated_at = @now
       WHERE id = @id AND status = 'queued' RETURNING *`,
    ),
    complete: db.prepare<FenceParams & { result: string }>(
      `UPDATE tasks SET status = 'succeeded', result = @result, finished_at = @now, updated_at = @now, lease_expires_at = NULL
       WHERE ${fenced}`,
    ),
    failFinal: db.prepare<FenceParams & { error: string }>(
      `UPDATE tasks SET status = 'failed', error = @error, finished_at = @now, updated_at = @now, lease_expires_at = NULL
       WHERE ${fenced}`,
    ),
    failRetry: db.prepare<FenceParams & { reason: string }>(`UPDATE tasks SET ${requeueSet} WHERE ${fenced}`),
    byLease: db.prepare<[leaseId: string], { status: TaskStatus; executor_id: string | null; epoch: number | null }>(
      `SELECT status, executor_id, epoch FROM tasks WHERE lease_id = ?`,
    ),
    extend: db.prepare<[leaseExpiresAt: number, leaseId: string]>(`UPDATE tasks SET lease_expires_at = ? WHERE lease_id = ?`),
    requeueExecutor: db.prepare<{ executorId: string; belowEpoch: number; reason: string; now: number }>(
      `UPDATE tasks SET ${requeueSet} WHERE status = 'leased' AND executor_id = @executorId AND epoch < @belowEpoch`,
    ),
    reclaimable: db.prepare<{ now: number; silentSince: number }, { id: string; executor_id: string }>(
      `SELECT t.id, t.executor_id FROM tasks t LEFT JOIN executors e ON e.id = t.executor_id
       WHERE t.status = 'leased'
         AND (t.lease_expires_at <= @now OR e.id IS NULL OR e.last_seen_at IS NULL OR e.last_seen_at < @silentSince)`,
    ),
    requeueOne: db.prepare<{ id: string; now: number; reason: string }, { status: TaskStatus }>(
      `UPDATE tasks SET ${requeueSet} WHERE id = @id AND status = 'leased' RETURNING status`,
    ),
    // Metrics, at scrape time: one scan for every status.
    counts: db.prepare<[], { status: string; n: number }>(`SELECT status, count(*) AS n FROM tasks GROUP BY status`),
  };
}
