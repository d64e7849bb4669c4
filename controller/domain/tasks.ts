/**
 * Work dispatch: tasks, epoch-fenced leases, long-poll leasing, heartbeat lease
 * extension and cancellation, and reclaim of work from silent executors. It is the
 * executor service's LeaseLedger (injected at composition, context.ts).
 * Knows nothing of HTTP.
 */
import { TetherError, ErrorCode } from "../../shared/errors.ts";
import type { Lease } from "../../shared/wire/executor.ts";
import type { SubmitTask, TaskStatus, TaskView } from "../../shared/wire/operator.ts";
import { COMMAND_KIND, parseCommandPayload } from "../../shared/task-kinds/command.ts";
import { randomB64u } from "../../shared/random.ts";
import { rfc3339 } from "../../shared/time.ts";
import type { TaskRecord, TaskStore } from "../store/task-types.ts";
import type { Audit, AuditFields } from "./audit.ts";
import type { LeaseLedger } from "./lease-ledger.ts";
import { OFFLINE_AFTER_INTERVALS, notSuspectSince, offlineBefore } from "./liveness.ts";
import { WorkSignal } from "./work-signal.ts";
import { noMetrics, type ControllerMetrics } from "../metrics/metrics.ts";
import type { TaskCounts } from "../store/task-types.ts";
import { noEvents, type EventSink } from "./events.ts";

/** Leases this process handed out whose task it remembers, for `task.updated` on completion (oldest forgotten first). */
const MAX_REMEMBERED_LEASES = 10_000;


export const DEFAULT_TASK_TIMEOUT_S = 600;
export const DEFAULT_MAX_ATTEMPTS = 3;
/** Lease polls of one executor that may wait at once (a daemon keeps one). */
export const MAX_WAITING_POLLS_PER_EXECUTOR = 4;

export function taskView(t: TaskRecord): TaskView {
  return {
    id: t.id, kind: t.kind, payload: t.payload, selector: t.selector, status: t.status, attempts: t.attempts,
    max_attempts: t.maxAttempts, timeout_s: t.timeoutS, created_at: rfc3339(t.createdAt), updated_at: rfc3339(t.updatedAt),
    finished_at: t.finishedAt === null ? null : rfc3339(t.finishedAt), executor_id: t.executorId,
    lease_expires_at: t.leaseExpiresAt === null ? null : rfc3339(t.leaseExpiresAt), result: t.result, error: t.error,
  };
}

export class TaskService implements LeaseLedger {
  private readonly work = new WorkSignal();
  /** Long polls waiting now, per executor. */
  private readonly waiting = new Map<string, number>();
  private closing = false;

  constructor(
    private readonly tasks: TaskStore,
    private readonly audit: Audit,
    private readonly heartbeatIntervalSeconds: number,
    private readonly metrics: ControllerMetrics = noMetrics,
    private readonly events: EventSink = noEvents,
  ) {}

  /** lease id → task id, for leases handed out here (the store's completion reports no task id). */
  private readonly leaseTasks = new Map<string, string>();

  private updated(t: TaskRecord): void {
    this.events.emit("task.updated", { task_id: t.id, kind: t.kind, status: t.status, attempts: t.attempts, executor_id: t.executorId });
  }

  /** After a completion or failure: the task as it is now, when this process handed out the lease. */
  private async leaseEnded(leaseId: string, executorId: string): Promise<void> {
    const taskId = this.leaseTasks.get(leaseId);
    this.leaseTasks.delete(leaseId);
    const t = taskId === undefined ? undefined : await this.tasks.getTask(taskId).catch(() => undefined);
    if (t) this.updated(t);
    else this.events.emit("task.updated", { task_id: null, count: 1, status: null, reason: "lease ended", executor_id: executorId });
  }

  private get intervalMs(): number {
    return this.heartbeatIntervalSeconds * 1000;
  }

  /** Ends every waiting long poll now (empty), so a shutdown does not wait for them. */
  shutdown(): void {
    this.closing = true;
    this.work.notify();
  }

  /** A lease lives this long unless a heartbeat that lists it extends it. */
  get leaseTtlMs(): number {
    return OFFLINE_AFTER_INTERVALS * this.intervalMs;
  }

  async submit(req: SubmitTask, who: AuditFields): Promise<TaskView> {
    if (req.kind === COMMAND_KIND) {
      // Built-in kinds are checked at submission with the executor's own rules, so a malformed task fails now.
      const parsed = parseCommandPayload(req.payload);
      if (typeof parsed === "string") throw new TetherError(400, ErrorCode.INVALID_REQUEST, `invalid "command" payload: ${parsed}`);
    }
    const t = await this.tasks.insertTask({
      id: "task_" + randomB64u(12), kind: req.kind, payload: req.payload ?? null, selector: req.selector ?? {},
      timeoutS: req.timeout_s ?? DEFAULT_TASK_TIMEOUT_S, maxAttempts: req.max_attempts ?? DEFAULT_MAX_ATTEMPTS,
      submittedBy: submitter(who), now: Date.now(),
    });
    this.audit.event("task.submitted", { task_id: t.id, kind: t.kind, ...who });
    this.updated(t);
    this.work.notify();
    return taskView(t);
  }

  /** Tasks by status, counted by the store in one query (metrics, PROTOCOL §9.1). */
  counts(): Promise<TaskCounts> {
    return this.tasks.taskCounts();
  }

  async list(status?: TaskStatus, limit = 100): Promise<TaskView[]> {
    return (await this.tasks.listTasks({ status, limit })).map(taskView);
  }

  async show(id: string): Promise<TaskView> {
    const t = await this.tasks.getTask(id);
    if (!t) throw new TetherError(404, ErrorCode.NOT_FOUND, `no task ${id}`);
    return taskView(t);
  }

  async cancel(id: string, who: AuditFields): Promise<TaskView> {
    const before = await this.tasks.getTask(id);
    if (!before) throw new TetherError(404, ErrorCode.NOT_FOUND, `no task ${id}`);
    if (before.status !== "queued" && before.status !== "leased") {
      throw new TetherError(409, ErrorCode.CONFLICT, `task ${id} is already ${before.status}`);
    }
    const t = await this.tasks.cancelTask(id, Date.now());
    if (!t) throw new TetherError(404, ErrorCode.NOT_FOUND, `no task ${id}`);
    this.audit.event("task.cancelled", { task_id: id, was: before.status, executor_id: before.executorId, ...who });
    this.updated(t);
    return taskView(t);
  }

  /**
   * Leases up to `max` matching tasks to the executor, waiting up to `waitS` for
   * work. Suspect, draining, revoked and full executors get none. At most
   * MAX_WAITING_POLLS_PER_EXECUTOR polls of one executor wait at once.
   */
  async lease(executorId: string, epoch: number, max: number, waitS: number, signal?: AbortSignal): Promise<Lease[]> {
    const waiting = this.waiting.get(executorId) ?? 0;
    if (waitS > 0 && waiting >= MAX_WAITING_POLLS_PER_EXECUTOR) {
      throw new TetherError(429, ErrorCode.RATE_LIMITED, `${waiting} lease polls of this executor are already waiting`, {
        headers: { "retry-after": "1" },
      });
    }
    this.waiting.set(executorId, waiting + 1);
    try {
      return await this.poll(executorId, epoch, max, Date.now() + waitS * 1000, signal);
    } finally {
      const left = (this.waiting.get(executorId) ?? 1) - 1;
      if (left > 0) this.waiting.set(executorId, left);
      else this.waiting.delete(executorId);
    }
  }

  private async poll(executorId: string, epoch: number, max: number, deadline: number, signal?: AbortSignal): Promise<Lease[]> {
    for (;;) {
      // Never hand work to an executor that has gone away, or while shutting down.
      if (signal?.aborted || this.closing) return [];
      const got = await this.tryLease(executorId, epoch, max);
      const remaining = deadline - Date.now();
      if (got.length > 0 || remaining <= 0) return got;
      // Re-check every second too: work submitted by another process (the CLI on the data dir) sends no signal here.
      await this.work.wait(Math.min(remaining, 1_000), signal);
    }
  }

  /**
   * One lease call. The store decides eligibility (epoch, revoked, drain, reported
   * status, not suspect) and free capacity in the same transaction that leases.
   */
  private async tryLease(executorId: string, epoch: number, max: number): Promise<Lease[]> {
    const now = Date.now();
    const leaseExpiresAt = now + this.leaseTtlMs;
    const leased = await this.tasks.leaseTasks({
      executorId, epoch, max, leaseExpiresAt, now, newLeaseId: () => "lease_" + randomB64u(12),
      // PROTOCOL §3.3: a suspect executor gets no new leases.
      aliveSince: notSuspectSince(this.intervalMs, now),
    });
    for (const t of leased) {
      if (t.leaseId === null) continue;
      this.leaseTasks.set(t.leaseId, t.id);
      if (this.leaseTasks.size > MAX_REMEMBERED_LEASES) this.leaseTasks.delete(this.leaseTasks.keys().next().value as string);
      this.updated(t);
    }
    return leased.flatMap((t) => (t.leaseId === null ? [] : [{
      lease_id: t.leaseId,
      task_id: t.id,
      kind: t.kind,
      payload: t.payload !== null && typeof t.payload === "object" && !Array.isArray(t.payload) ? { ...(t.payload as object), timeout_s: t.timeoutS } : t.payload,
      expires_at: rfc3339(leaseExpiresAt),
    }]));
  }

  async complete(executorId: string, epoch: number, leaseId: string, result: Record<string, unknown>): Promise<void> {
    if ((await this.tasks.completeLease(leaseId, executorId, epoch, result, Date.now())) !== "ok") throw staleLease(leaseId);
    await this.leaseEnded(leaseId, executorId);
  }

  async fail(executorId: string, epoch: number, leaseId: string, error: string, retryable: boolean): Promise<void> {
    if ((await this.tasks.failLease(leaseId, executorId, epoch, error, retryable, Date.now())) !== "ok") throw staleLease(leaseId);
    await this.leaseEnded(leaseId, executorId);
    if (retryable) this.work.notify();
  }

  // ─── LeaseLedger: what the executor lifecycle tells dispatch ──────────────

  async heartbeat(executorId: string, epoch: number, leaseIds: string[], nowMs: number): Promise<string[]> {
    // Most heartbeats hold no lease: nothing to extend, no store call.
    if (leaseIds.length === 0) return [];
    return (await this.tasks.heartbeatLeases(executorId, epoch, leaseIds, nowMs + this.leaseTtlMs, nowMs)).cancel;
  }

  async epochChanged(executorId: string, newEpoch: number): Promise<void> {
    const n = await this.tasks.requeueExecutorLeases(executorId, `lease lost: executor re-registered (epoch ${newEpoch})`, Date.now(), newEpoch);
    if (n) this.requeued(executorId, n, "reregistered");
  }

  async revoked(executorId: string): Promise<void> {
    const n = await this.tasks.requeueExecutorLeases(executorId, "lease lost: executor revoked", Date.now());
    if (n) this.requeued(executorId, n, "revoked");
  }

  /** Work may have appeared elsewhere (another replica's submission): waiting polls look again. */
  wake(): void {
    this.work.notify();
  }

  /** Offline executors (6 missed intervals) and expired leases give their work back. */
  async reclaim(now = Date.now()): Promise<{ requeued: number; failed: number }> {
    const r = await this.tasks.reclaim(now, offlineBefore(this.intervalMs, now));
    if (r.requeued + r.failed > 0) {
      this.metrics.leasesReclaimed(r.requeued + r.failed);
      this.audit.event("leases.reclaimed", { requeued: r.requeued, failed: r.failed, executors: r.executors });
      this.events.emit("task.updated", { task_id: null, count: r.requeued + r.failed, status: r.failed ? null : "queued", reason: "reclaimed", executor_id: null });
      this.work.notify();
    }
    return r;
  }

  private requeued(executorId: string, n: number, why: string): void {
    this.audit.event("leases.requeued", { executor_id: executorId, count: n, reason: why });
    this.events.emit("task.updated", { task_id: null, count: n, status: "queued", reason: why, executor_id: executorId });
    this.work.notify();
  }
}

function submitter(who: AuditFields): string | null {
  const a = who.actor as { type?: string; name?: string } | string | undefined;
  if (typeof a === "string") return a;
  if (a && typeof a === "object") return `${a.type ?? "token"}:${a.name ?? "?"}`;
  return typeof who.user === "string" ? `cli:${who.user}` : typeof who.via === "string" ? who.via : null;
}

function staleLease(leaseId: string): TetherError {
  return new TetherError(409, ErrorCode.STALE_LEASE, `lease ${leaseId} is not held by this executor and epoch`);
}
