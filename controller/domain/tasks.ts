/**
 * Work dispatch: tasks, epoch-fenced leases, long-poll leasing, heartbeat lease
 * extension and cancellation, and reclaim of work from silent executors.
 * Knows nothing of HTTP.
 */
import { TetherError, ErrorCode } from "../../shared/errors.ts";
import type { Lease } from "../../shared/protocol.ts";
import { randomB64u } from "../../shared/random.ts";
import { rfc3339 } from "../../shared/time.ts";
import type { Store } from "../store/types.ts";
import type { TaskRecord, TaskStatus, TaskStore } from "../store/task-types.ts";
import type { Audit, AuditFields } from "./audit.ts";
import type { ExecutorService } from "./executors.ts";

export interface SubmitTask {
  kind: string;
  payload: unknown;
  selector?: Record<string, string>;
  timeout_s?: number;
  max_attempts?: number;
}

export interface TaskView {
  id: string;
  kind: string;
  payload: unknown;
  selector: Record<string, string>;
  status: TaskStatus;
  attempts: number;
  max_attempts: number;
  timeout_s: number;
  created_at: string;
  updated_at: string;
  finished_at: string | null;
  executor_id: string | null;
  lease_expires_at: string | null;
  result: Record<string, unknown> | null;
  error: string | null;
}

export const DEFAULT_TASK_TIMEOUT_S = 600;
export const DEFAULT_MAX_ATTEMPTS = 3;

/** Wakes long-polling lease requests when work may have become available. */
class WorkSignal {
  private waiters = new Set<() => void>();

  wait(ms: number, signal?: AbortSignal): Promise<void> {
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        this.waiters.delete(done);
        signal?.removeEventListener("abort", done);
        resolve();
      };
      const timer = setTimeout(done, ms);
      this.waiters.add(done);
      signal?.addEventListener("abort", done, { once: true });
    });
  }

  notify(): void {
    const all = [...this.waiters];
    this.waiters.clear();
    for (const w of all) w();
  }
}

export function taskView(t: TaskRecord): TaskView {
  return {
    id: t.id, kind: t.kind, payload: t.payload, selector: t.selector, status: t.status, attempts: t.attempts,
    max_attempts: t.maxAttempts, timeout_s: t.timeoutS, created_at: rfc3339(t.createdAt), updated_at: rfc3339(t.updatedAt),
    finished_at: t.finishedAt === null ? null : rfc3339(t.finishedAt), executor_id: t.executorId,
    lease_expires_at: t.leaseExpiresAt === null ? null : rfc3339(t.leaseExpiresAt), result: t.result, error: t.error,
  };
}

export class TaskService {
  private readonly work = new WorkSignal();
  private closing = false;

  constructor(
    private readonly tasks: TaskStore,
    private readonly store: Store,
    private readonly executors: ExecutorService,
    private readonly audit: Audit,
    private readonly heartbeatIntervalSeconds: number,
  ) {
    executors.hooks = {
      onEpochBumped: async (id, _old, newEpoch) => {
        const n = await this.tasks.requeueExecutorLeases(id, `lease lost: executor re-registered (epoch ${newEpoch})`, Date.now(), newEpoch);
        if (n) this.requeued(id, n, "reregistered");
      },
      onRevoked: async (id) => {
        const n = await this.tasks.requeueExecutorLeases(id, "lease lost: executor revoked", Date.now());
        if (n) this.requeued(id, n, "revoked");
      },
    };
  }

  /** Ends every waiting long poll now (empty), so a shutdown does not wait for them. */
  shutdown(): void {
    this.closing = true;
    this.work.notify();
  }

  /** A lease lives this long unless a heartbeat that lists it extends it. */
  get leaseTtlMs(): number {
    return 6 * this.heartbeatIntervalSeconds * 1000;
  }

  async submit(req: SubmitTask, who: AuditFields): Promise<TaskView> {
    validatePayload(req.kind, req.payload);
    const t = await this.tasks.insertTask({
      id: "task_" + randomB64u(12), kind: req.kind, payload: req.payload ?? null, selector: req.selector ?? {},
      timeoutS: req.timeout_s ?? DEFAULT_TASK_TIMEOUT_S, maxAttempts: req.max_attempts ?? DEFAULT_MAX_ATTEMPTS,
      submittedBy: submitter(who), now: Date.now(),
    });
    this.audit.event("task.submitted", { task_id: t.id, kind: t.kind, ...who });
    this.work.notify();
    return taskView(t);
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
    const t = (await this.tasks.cancelTask(id, Date.now()))!;
    this.audit.event("task.cancelled", { task_id: id, was: before.status, executor_id: before.executorId, ...who });
    return taskView(t);
  }

  /**
   * Leases up to `max` matching tasks to the executor, waiting up to `waitS` for
   * work. Suspect, draining, revoked and full executors get none.
   */
  async lease(executorId: string, epoch: number, max: number, waitS: number, signal?: AbortSignal): Promise<Lease[]> {
    const deadline = Date.now() + waitS * 1000;
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

  private async tryLease(executorId: string, epoch: number, max: number): Promise<Lease[]> {
    const e = await this.store.getExecutor(executorId);
    if (!e || e.epoch !== epoch) return [];
    const now = Date.now();
    const liveness = this.executors.liveness(e, now);
    if (liveness !== "ready" || e.drain) return [];
    const free = Math.min(max, e.capacity - (await this.tasks.countLeased(executorId)));
    if (free <= 0) return [];
    const leaseExpiresAt = now + this.leaseTtlMs;
    const leased = await this.tasks.leaseTasks({
      executorId, epoch, labels: e.labels, max: free, leaseExpiresAt, now, newLeaseId: () => "lease_" + randomB64u(12),
    });
    return leased.map((t) => ({
      lease_id: t.leaseId!,
      task_id: t.id,
      kind: t.kind,
      payload: t.payload !== null && typeof t.payload === "object" && !Array.isArray(t.payload) ? { ...(t.payload as object), timeout_s: t.timeoutS } : t.payload,
      expires_at: rfc3339(leaseExpiresAt),
    }));
  }

  async complete(executorId: string, epoch: number, leaseId: string, result: Record<string, unknown>): Promise<void> {
    if ((await this.tasks.completeLease(leaseId, executorId, epoch, result, Date.now())) !== "ok") throw staleLease(leaseId);
  }

  async fail(executorId: string, epoch: number, leaseId: string, error: string, retryable: boolean): Promise<void> {
    if ((await this.tasks.failLease(leaseId, executorId, epoch, error, retryable, Date.now())) !== "ok") throw staleLease(leaseId);
    if (retryable) this.work.notify();
  }

  /** Extends the leases a heartbeat lists; returns those the executor must stop. */
  async onHeartbeat(executorId: string, epoch: number, leaseIds: string[]): Promise<string[]> {
    const now = Date.now();
    return (await this.tasks.heartbeatLeases(executorId, epoch, leaseIds, now + this.leaseTtlMs, now)).cancel;
  }

  /** Offline executors (6 missed intervals) and expired leases give their work back. */
  async reclaim(now = Date.now()): Promise<{ requeued: number; failed: number }> {
    const r = await this.tasks.reclaim(now, now - 6 * this.heartbeatIntervalSeconds * 1000);
    if (r.requeued + r.failed > 0) {
      this.audit.event("leases.reclaimed", { requeued: r.requeued, failed: r.failed, executors: r.executors });
      this.work.notify();
    }
    return r;
  }

  private requeued(executorId: string, n: number, why: string): void {
    this.audit.event("leases.requeued", { executor_id: executorId, count: n, reason: why });
    this.work.notify();
  }
}

/** Built-in kinds are checked at submission, so a malformed task fails fast instead of on an executor. */
function validatePayload(kind: string, payload: unknown): void {
  if (kind !== "command") return;
  const argv = (payload as { argv?: unknown } | null)?.argv;
  if (!Array.isArray(argv) || argv.length === 0 || argv.length > 1024 || !argv.every((a) => typeof a === "string" && a.length <= 65536)) {
    throw new TetherError(400, ErrorCode.INVALID_REQUEST, 'a "command" task needs payload.argv: a non-empty array of strings');
  }
  if (argv[0] === "") throw new TetherError(400, ErrorCode.INVALID_REQUEST, "payload.argv[0] must name a command");
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
