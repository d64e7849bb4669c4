/** Tasks and leases in the controller's SQLite database (same connection as the main store). */
import type Database from "better-sqlite3";
import type { LeaseOutcome, LeaseRequest, NewTask, TaskRecord, TaskStatus, TaskStore } from "../task-types.ts";
import { prepareTaskStatements, toTask, type TaskStatements } from "./task-statements.ts";
import { taskCountsFrom, type TaskCounts } from "../counts.ts";

const RECLAIM_REASON = "lease lost: its executor went offline or the lease expired";

export class SqliteTaskStore implements TaskStore {
  private readonly s: TaskStatements;

  constructor(private readonly db: Database.Database) {
    this.s = prepareTaskStatements(db);
  }

  async insertTask(t: NewTask): Promise<TaskRecord> {
    this.s.insert.run({
      id: t.id, kind: t.kind, payload: JSON.stringify(t.payload), selector: JSON.stringify(t.selector), timeoutS: t.timeoutS,
      maxAttempts: t.maxAttempts, submittedBy: t.submittedBy, now: t.now,
    });
    const row = this.s.get.get(t.id);
    if (!row) throw new Error(`task ${t.id} vanished after its insert`);
    return toTask(row);
  }

  async getTask(id: string): Promise<TaskRecord | undefined> {
    const r = this.s.get.get(id);
    return r && toTask(r);
  }

  async listTasks(opts: { status?: TaskStatus; limit: number }): Promise<TaskRecord[]> {
    const rows = opts.status ? this.s.listByStatus.all(opts.status, opts.limit) : this.s.list.all(opts.limit);
    return rows.map(toTask);
  }

  async cancelTask(id: string, now: number): Promise<TaskRecord | undefined> {
    this.db.transaction(() => {
      if (this.s.cancelQueued.run({ id, now }).changes === 0) this.s.cancelLeased.run({ id, now });
    }).immediate();
    return this.getTask(id);
  }

  async leaseTasks(req: LeaseRequest): Promise<TaskRecord[]> {
    return this.db.transaction(() => {
      const eligible = this.s.eligibleExecutor.get({ executorId: req.executorId, epoch: req.epoch, aliveSince: req.aliveSince });
      const limit = Math.min(req.max, eligible?.free ?? 0);
      if (limit <= 0) return [];
      const leased: TaskRecord[] = [];
      for (const id of this.s.leaseCandidates.all({ executorId: req.executorId, limit })) {
        const r = this.s.lease.get({
          id, leaseId: req.newLeaseId(), executorId: req.executorId, epoch: req.epoch, leaseExpiresAt: req.leaseExpiresAt, now: req.now,
        });
        if (r) leased.push(toTask(r));
      }
      return leased;
    }).immediate();
  }

  async completeLease(leaseId: string, executorId: string, epoch: number, result: Record<string, unknown>, now: number): Promise<LeaseOutcome> {
    return this.s.complete.run({ leaseId, executorId, epoch, result: JSON.stringify(result), now }).changes === 1 ? "ok" : "stale";
  }

  async failLease(leaseId: string, executorId: string, epoch: number, error: string, retryable: boolean, now: number): Promise<LeaseOutcome> {
    const changes = retryable
      ? this.s.failRetry.run({ leaseId, executorId, epoch, reason: error, now }).changes
      : this.s.failFinal.run({ leaseId, executorId, epoch, error, now }).changes;
    return changes === 1 ? "ok" : "stale";
  }

  async heartbeatLeases(executorId: string, epoch: number, leaseIds: string[], leaseExpiresAt: number, _now: number): Promise<{ cancel: string[] }> {
    if (leaseIds.length === 0) return { cancel: [] };
    return this.db.transaction(() => {
      const cancel: string[] = [];
      for (const id of leaseIds) {
        const r = this.s.byLease.get(id);
        if (r && r.status === "leased" && r.executor_id === executorId && r.epoch === epoch) this.s.extend.run(leaseExpiresAt, id);
        else cancel.push(id);
      }
      return { cancel };
    }).immediate();
  }

  async requeueExecutorLeases(executorId: string, reason: string, now: number, belowEpoch = Number.MAX_SAFE_INTEGER): Promise<number> {
    return this.s.requeueExecutor.run({ executorId, belowEpoch, reason, now }).changes;
  }

  async reclaim(now: number, silentSince: number): Promise<{ requeued: number; failed: number; executors: string[] }> {
    return this.db.transaction(() => {
      const rows = this.s.reclaimable.all({ now, silentSince });
      let requeued = 0;
      let failed = 0;
      for (const r of rows) {
        const out = this.s.requeueOne.get({ id: r.id, now, reason: RECLAIM_REASON });
        if (out?.status === "queued") requeued++;
        else if (out?.status === "failed") failed++;
      }
      return { requeued, failed, executors: [...new Set(rows.map((r) => r.executor_id))] };
    }).immediate();
  }

  async taskCounts(): Promise<TaskCounts> {
    return taskCountsFrom(this.s.counts.all());
  }
}
