/** Tasks and leases in the controller's SQLite database (same connection as the main store). */
import type Database from "better-sqlite3";
import type { Statement } from "better-sqlite3";
import type { LeaseOutcome, LeaseRequest, NewTask, TaskRecord, TaskStatus, TaskStore } from "./task-types.ts";

interface TaskRow {
  id: string; kind: string; payload: string; selector: string; timeout_s: number; max_attempts: number;
  attempts: number; status: string; created_at: number; updated_at: number; finished_at: number | null;
  lease_id: string | null; executor_id: string | null; epoch: number | null; lease_expires_at: number | null;
  cancel_requested: number; result: string | null; error: string | null; submitted_by: string | null;
}

function toTask(r: TaskRow): TaskRecord {
  return {
    id: r.id, kind: r.kind, payload: JSON.parse(r.payload), selector: JSON.parse(r.selector), timeoutS: r.timeout_s,
    maxAttempts: r.max_attempts, attempts: r.attempts, status: r.status as TaskStatus, createdAt: r.created_at,
    updatedAt: r.updated_at, finishedAt: r.finished_at, leaseId: r.lease_id, executorId: r.executor_id, epoch: r.epoch,
    leaseExpiresAt: r.lease_expires_at, cancelRequested: r.cancel_requested === 1,
    result: r.result === null ? null : JSON.parse(r.result), error: r.error, submittedBy: r.submitted_by,
  };
}

export function selectorMatches(selector: Record<string, string>, labels: Record<string, string>): boolean {
  for (const [k, v] of Object.entries(selector)) if (labels[k] !== v) return false;
  return true;
}

/** How many queued tasks one lease call looks through for a selector match. */
const MAX_SCAN = 10_000;

export class SqliteTaskStore implements TaskStore {
  private readonly s: Record<string, Statement>;

  constructor(private readonly db: Database.Database) {
    const p = (sql: string) => db.prepare(sql);
    // A lease that goes back: queued again, or failed once its attempts are used up.
    const requeueSet = `
      status = CASE WHEN attempts >= max_attempts THEN 'failed' ELSE 'queued' END,
      error = CASE WHEN attempts >= max_attempts THEN 'attempts exhausted; last error: ' || @reason ELSE @reason END,
      finished_at = CASE WHEN attempts >= max_attempts THEN @now ELSE NULL END,
      lease_id = NULL, executor_id = NULL, epoch = NULL, lease_expires_at = NULL, updated_at = @now`;
    this.s = {
      insert: p(`INSERT INTO tasks (id, kind, payload, selector, timeout_s, max_attempts, status, created_at, updated_at, submitted_by)
                 VALUES (@id, @kind, @payload, @selector, @timeoutS, @maxAttempts, 'queued', @now, @now, @submittedBy)`),
      get: p(`SELECT * FROM tasks WHERE id = ?`),
      list: p(`SELECT * FROM tasks ORDER BY rowid DESC LIMIT ?`),
      listByStatus: p(`SELECT * FROM tasks WHERE status = ? ORDER BY rowid DESC LIMIT ?`),
      cancelQueued: p(`UPDATE tasks SET status = 'cancelled', cancel_requested = 1, finished_at = @now, updated_at = @now
                       WHERE id = @id AND status = 'queued'`),
      cancelLeased: p(`UPDATE tasks SET status = 'cancelled', cancel_requested = 1, finished_at = @now, updated_at = @now
                       WHERE id = @id AND status = 'leased'`),
      queued: p(`SELECT id, selector FROM tasks WHERE status = 'queued' ORDER BY rowid`),
      lease: p(`UPDATE tasks SET status = 'leased', attempts = attempts + 1, lease_id = @leaseId, executor_id = @executorId,
                  epoch = @epoch, lease_expires_at = @leaseExpiresAt, updated_at = @now
                WHERE id = @id AND status = 'queued' RETURNING *`),
      countLeased: p(`SELECT COUNT(*) AS n FROM tasks WHERE executor_id = ? AND status = 'leased'`),
      complete: p(`UPDATE tasks SET status = 'succeeded', result = @result, finished_at = @now, updated_at = @now,
                     lease_expires_at = NULL
                   WHERE lease_id = @leaseId AND executor_id = @executorId AND epoch = @epoch AND status = 'leased'`),
      failFinal: p(`UPDATE tasks SET status = 'failed', error = @error, finished_at = @now, updated_at = @now, lease_expires_at = NULL
                    WHERE lease_id = @leaseId AND executor_id = @executorId AND epoch = @epoch AND status = 'leased'`),
      failRetry: p(`UPDATE tasks SET ${requeueSet}
                    WHERE lease_id = @leaseId AND executor_id = @executorId AND epoch = @epoch AND status = 'leased'`),
      byLease: p(`SELECT status, executor_id, epoch FROM tasks WHERE lease_id = ?`),
      extend: p(`UPDATE tasks SET lease_expires_at = ? WHERE lease_id = ?`),
      requeueExecutor: p(`UPDATE tasks SET ${requeueSet} WHERE status = 'leased' AND executor_id = @executorId AND epoch < @belowEpoch`),
      reclaimable: p(`SELECT t.id, t.executor_id FROM tasks t LEFT JOIN executors e ON e.id = t.executor_id
                      WHERE t.status = 'leased'
                        AND (t.lease_expires_at <= @now OR e.id IS NULL OR e.last_seen_at IS NULL OR e.last_seen_at < @silentSince)`),
      requeueOne: p(`UPDATE tasks SET ${requeueSet} WHERE id = @id AND status = 'leased' RETURNING status`),
    };
  }

  async insertTask(t: NewTask): Promise<TaskRecord> {
    this.s.insert!.run({ ...t, payload: JSON.stringify(t.payload), selector: JSON.stringify(t.selector) });
    return toTask(this.s.get!.get(t.id) as TaskRow);
  }

  async getTask(id: string): Promise<TaskRecord | undefined> {
    const r = this.s.get!.get(id) as TaskRow | undefined;
    return r && toTask(r);
  }

  async listTasks(opts: { status?: TaskStatus; limit: number }): Promise<TaskRecord[]> {
    const rows = (opts.status ? this.s.listByStatus!.all(opts.status, opts.limit) : this.s.list!.all(opts.limit)) as TaskRow[];
    return rows.map(toTask);
  }

  async cancelTask(id: string, now: number): Promise<TaskRecord | undefined> {
    this.db.transaction(() => {
      if (this.s.cancelQueued!.run({ id, now }).changes === 0) this.s.cancelLeased!.run({ id, now });
    }).immediate();
    return this.getTask(id);
  }

  async leaseTasks(req: LeaseRequest): Promise<TaskRecord[]> {
    return this.db.transaction(() => {
      const picked: string[] = [];
      let scanned = 0;
      for (const row of this.s.queued!.iterate() as IterableIterator<{ id: string; selector: string }>) {
        if (picked.length >= req.max || ++scanned > MAX_SCAN) break;
        if (selectorMatches(JSON.parse(row.selector), req.labels)) picked.push(row.id);
      }
      const leased: TaskRecord[] = [];
      for (const id of picked) {
        const r = this.s.lease!.get({
          id, leaseId: req.newLeaseId(), executorId: req.executorId, epoch: req.epoch, leaseExpiresAt: req.leaseExpiresAt, now: req.now,
        }) as TaskRow | undefined;
        if (r) leased.push(toTask(r));
      }
      return leased;
    }).immediate();
  }

  async countLeased(executorId: string): Promise<number> {
    return (this.s.countLeased!.get(executorId) as { n: number }).n;
  }

  async completeLease(leaseId: string, executorId: string, epoch: number, result: Record<string, unknown>, now: number): Promise<LeaseOutcome> {
    return this.s.complete!.run({ leaseId, executorId, epoch, result: JSON.stringify(result), now }).changes === 1 ? "ok" : "stale";
  }

  async failLease(leaseId: string, executorId: string, epoch: number, error: string, retryable: boolean, now: number): Promise<LeaseOutcome> {
    const changes = retryable
      ? this.s.failRetry!.run({ leaseId, executorId, epoch, reason: error, now }).changes
      : this.s.failFinal!.run({ leaseId, executorId, epoch, error, now }).changes;
    return changes === 1 ? "ok" : "stale";
  }

  async heartbeatLeases(executorId: string, epoch: number, leaseIds: string[], leaseExpiresAt: number, _now: number): Promise<{ cancel: string[] }> {
    if (leaseIds.length === 0) return { cancel: [] };
    return this.db.transaction(() => {
      const cancel: string[] = [];
      for (const id of leaseIds) {
        const r = this.s.byLease!.get(id) as { status: string; executor_id: string | null; epoch: number | null } | undefined;
        if (r && r.status === "leased" && r.executor_id === executorId && r.epoch === epoch) this.s.extend!.run(leaseExpiresAt, id);
        else cancel.push(id);
      }
      return { cancel };
    }).immediate();
  }

  async requeueExecutorLeases(executorId: string, reason: string, now: number, belowEpoch = Number.MAX_SAFE_INTEGER): Promise<number> {
    return this.s.requeueExecutor!.run({ executorId, belowEpoch, reason, now }).changes;
  }

  async reclaim(now: number, silentSince: number): Promise<{ requeued: number; failed: number; executors: string[] }> {
    return this.db.transaction(() => {
      const rows = this.s.reclaimable!.all({ now, silentSince }) as { id: string; executor_id: string }[];
      let requeued = 0;
      let failed = 0;
      for (const r of rows) {
        const out = this.s.requeueOne!.get({ id: r.id, now, reason: "lease lost: its executor went offline or the lease expired" }) as { status: string } | undefined;
        if (out?.status === "queued") requeued++;
        else if (out?.status === "failed") failed++;
      }
      return { requeued, failed, executors: [...new Set(rows.map((r) => r.executor_id))] };
    }).immediate();
  }
}
