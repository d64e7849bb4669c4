/**
 * Tasks and leases on PostgreSQL. Every transition is one fenced statement (a lease is
 * acted on only by the (executor, epoch) holding it), except leasing, which is one
 * transaction: lock the executor, pick and lock candidates (SKIP LOCKED), lease them.
 * Submissions, cancellations and requeues notify `tasks` so long polls on every replica
 * look again.
 */
import type pg from "pg";
import { encodeChange } from "../changes.ts";
import type { LeaseOutcome, LeaseRequest, NewTask, TaskRecord, TaskStatus, TaskStore } from "../task-types.ts";
import { LEASE_CANDIDATES_SQL, LOCK_ELIGIBLE_EXECUTOR_SQL } from "./dispatch.ts";
import { inTransaction, notifyCall, run } from "./pool.ts";
import { requeueSet, TASK_COLUMNS, toTask, type TaskRow } from "./task-rows.ts";
import { taskCountsFrom, type TaskCounts } from "../counts.ts";

const RECLAIM_REASON = "lease lost: its executor went offline or the lease expired";
const TASKS = encodeChange({ kind: "tasks" });
const FENCED = `lease_id = $1 AND executor_id = $2 AND epoch = $3 AND status = 'leased'`;

/** Notifies `tasks` (parameter `$n`) when any row of CTE `u` went back to the queue; `rows` is what the statement returns. */
const notifyIfRequeued = (n: number, rows: string) => `,
  n AS (SELECT ${notifyCall(n)} FROM (SELECT 1 FROM u WHERE status = 'queued' LIMIT 1) q)
  SELECT ${rows}, (SELECT count(*) FROM n) AS notified FROM u`;

export class PostgresTaskStore implements TaskStore {
  constructor(private readonly pool: pg.Pool) {}

  /** selector_size is counted by PostgreSQL's own JSON reader, so it always agrees with the pairs the trigger writes. */
  async insertTask(t: NewTask): Promise<TaskRecord> {
    const r = await run<TaskRow>(this.pool,
      `WITH ins AS (
         INSERT INTO tasks (id, kind, payload, selector, selector_size, timeout_s, max_attempts, status, created_at, updated_at, submitted_by)
         VALUES ($1, $2, $3, $4, (SELECT count(*) FROM jsonb_object_keys($4::text::jsonb)), $5, $6, 'queued', $7, $7, $8)
         RETURNING ${TASK_COLUMNS}
       )
       SELECT ins.*, ${notifyCall(9)} FROM ins`,
      [t.id, t.kind, JSON.stringify(t.payload), JSON.stringify(t.selector), t.timeoutS, t.maxAttempts, t.now, t.submittedBy, TASKS]);
    const row = r.rows[0];
    if (!row) throw new Error(`task ${t.id} vanished after its insert`);
    return toTask(row);
  }

  async getTask(id: string): Promise<TaskRecord | undefined> {
    const r = await run<TaskRow>(this.pool, `SELECT ${TASK_COLUMNS} FROM tasks WHERE id = $1`, [id]);
    return r.rows[0] && toTask(r.rows[0]);
  }

  async listTasks(opts: { status?: TaskStatus; limit: number }): Promise<TaskRecord[]> {
    const r = opts.status
      ? await run<TaskRow>(this.pool, `SELECT ${TASK_COLUMNS} FROM tasks WHERE status = $1 ORDER BY seq DESC LIMIT $2`, [opts.status, opts.limit])
      : await run<TaskRow>(this.pool, `SELECT ${TASK_COLUMNS} FROM tasks ORDER BY seq DESC LIMIT $1`, [opts.limit]);
    return r.rows.map(toTask);
  }

  /** queued or leased → cancelled (a leased one keeps its lease so its holder hears of it). */
  async cancelTask(id: string, now: number): Promise<TaskRecord | undefined> {
    const r = await run<TaskRow>(this.pool,
      `WITH u AS (
         UPDATE tasks SET status = 'cancelled', cancel_requested = true, finished_at = $2, updated_at = $2
         WHERE id = $1 AND status IN ('queued', 'leased')
         RETURNING ${TASK_COLUMNS}
       )
       SELECT u.*, ${notifyCall(3)} FROM u`,
      [id, now, TASKS]);
    const row = r.rows[0];
    return row ? toTask(row) : this.getTask(id);
  }

  async leaseTasks(req: LeaseRequest): Promise<TaskRecord[]> {
    const leased = await inTransaction(this.pool, async (tx) => {
      const executor = await tx.query<{ capacity: number }>(LOCK_ELIGIBLE_EXECUTOR_SQL, [req.executorId, req.epoch, req.aliveSince]);
      const capacity = executor.rows[0]?.capacity;
      if (capacity === undefined || req.max <= 0) return [];
      const ids = (await tx.query<{ id: string }>(LEASE_CANDIDATES_SQL, [req.executorId, req.max, capacity])).rows.map((row) => row.id);
      if (ids.length === 0) return [];
      const r = await tx.query<TaskRow>(
        `UPDATE tasks SET status = 'leased', attempts = attempts + 1, lease_id = v.lease_id, executor_id = $3, epoch = $4,
           lease_expires_at = $5, updated_at = $6
         FROM unnest($1::text[], $2::text[]) AS v(id, lease_id)
         WHERE tasks.id = v.id AND tasks.status = 'queued'
         RETURNING ${TASK_COLUMNS.split(",").map((c) => `tasks.${c.trim()}`).join(", ")}`,
        [ids, ids.map(() => req.newLeaseId()), req.executorId, req.epoch, req.leaseExpiresAt, req.now]);
      return r.rows;
    });
    return leased.sort((x, y) => x.seq - y.seq).map(toTask);
  }

  async completeLease(leaseId: string, executorId: string, epoch: number, result: Record<string, unknown>, now: number): Promise<LeaseOutcome> {
    const r = await run(this.pool,
      `UPDATE tasks SET status = 'succeeded', result = $4, finished_at = $5, updated_at = $5, lease_expires_at = NULL WHERE ${FENCED}`,
      [leaseId, executorId, epoch, JSON.stringify(result), now]);
    return r.rowCount === 1 ? "ok" : "stale";
  }

  async failLease(leaseId: string, executorId: string, epoch: number, errorText: string, retryable: boolean, now: number): Promise<LeaseOutcome> {
    // The wire lets an executor's error text hold NUL, which a PostgreSQL text value cannot.
    const error = errorText.replaceAll("\0", "\uFFFD");
    const r = retryable
      ? await run(this.pool,
        `WITH u AS (UPDATE tasks SET ${requeueSet("$4", "$5")} WHERE ${FENCED} RETURNING status)${notifyIfRequeued(6, "status")}`,
        [leaseId, executorId, epoch, error, now, TASKS])
      : await run(this.pool,
        `UPDATE tasks SET status = 'failed', error = $4, finished_at = $5, updated_at = $5, lease_expires_at = NULL WHERE ${FENCED}`,
        [leaseId, executorId, epoch, error, now]);
    return r.rowCount === 1 ? "ok" : "stale";
  }

  async heartbeatLeases(executorId: string, epoch: number, leaseIds: string[], leaseExpiresAt: number, _now: number): Promise<{ cancel: string[] }> {
    if (leaseIds.length === 0) return { cancel: [] };
    const r = await run<{ lease_id: string }>(this.pool,
      `UPDATE tasks SET lease_expires_at = $4
       WHERE lease_id = ANY($1::text[]) AND executor_id = $2 AND epoch = $3 AND status = 'leased'
       RETURNING lease_id`,
      [leaseIds, executorId, epoch, leaseExpiresAt]);
    const held = new Set(r.rows.map((row) => row.lease_id));
    return { cancel: leaseIds.filter((id) => !held.has(id)) };
  }

  async requeueExecutorLeases(executorId: string, reason: string, now: number, belowEpoch = Number.MAX_SAFE_INTEGER): Promise<number> {
    const r = await run(this.pool,
      `WITH u AS (
         UPDATE tasks SET ${requeueSet("$3", "$4")}
         WHERE status = 'leased' AND executor_id = $1 AND epoch < $2::bigint RETURNING status
       )${notifyIfRequeued(5, "status")}`,
      [executorId, belowEpoch, reason, now, TASKS]);
    return r.rowCount ?? 0;
  }

  /** One statement: the leases to put back are locked (SKIP LOCKED: one a lease call holds is not expired for it anyway), then put back. */
  async reclaim(now: number, silentSince: number): Promise<{ requeued: number; failed: number; executors: string[] }> {
    const r = await run<{ status: TaskStatus; executor_id: string }>(this.pool,
      `WITH r AS (
         SELECT t.id, t.executor_id FROM tasks t LEFT JOIN executors e ON e.id = t.executor_id
         WHERE t.status = 'leased'
           AND (t.lease_expires_at <= $1 OR e.id IS NULL OR e.last_seen_at IS NULL OR e.last_seen_at < $2)
         FOR UPDATE OF t SKIP LOCKED
       ), u AS (
         UPDATE tasks SET ${requeueSet("$3", "$1")} FROM r WHERE tasks.id = r.id AND tasks.status = 'leased'
         RETURNING tasks.status, r.executor_id
       )${notifyIfRequeued(4, "status, executor_id")}`,
      [now, silentSince, RECLAIM_REASON, TASKS]);
    let requeued = 0;
    let failed = 0;
    for (const row of r.rows) {
      if (row.status === "queued") requeued++;
      else if (row.status === "failed") failed++;
    }
    return { requeued, failed, executors: [...new Set(r.rows.map((row) => row.executor_id))] };
  }

  /** Metrics, at scrape time: one scan for every status. */
  async taskCounts(): Promise<TaskCounts> {
    return taskCountsFrom((await run<{ status: string; n: number }>(this.pool, `SELECT status, count(*) AS n FROM tasks GROUP BY status`)).rows);
  }
}
