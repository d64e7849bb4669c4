/** The task store: tasks, their single current lease, and the transitions between states. */
export type TaskStatus = "queued" | "leased" | "succeeded" | "failed" | "cancelled";
export const TERMINAL_STATUSES: readonly TaskStatus[] = ["succeeded", "failed", "cancelled"];

export interface TaskRecord {
  id: string;
  kind: string;
  payload: unknown;
  selector: Record<string, string>;
  timeoutS: number;
  maxAttempts: number;
  attempts: number;
  status: TaskStatus;
  createdAt: number;
  updatedAt: number;
  finishedAt: number | null;
  leaseId: string | null;
  executorId: string | null;
  epoch: number | null;
  leaseExpiresAt: number | null;
  cancelRequested: boolean;
  result: Record<string, unknown> | null;
  error: string | null;
  submittedBy: string | null;
}

export interface NewTask {
  id: string;
  kind: string;
  payload: unknown;
  selector: Record<string, string>;
  timeoutS: number;
  maxAttempts: number;
  submittedBy: string | null;
  now: number;
}

export interface LeaseRequest {
  executorId: string;
  epoch: number;
  labels: Record<string, string>;
  max: number;
  leaseExpiresAt: number;
  now: number;
  newLeaseId: () => string;
}

export type LeaseOutcome = "ok" | "stale";

export interface TaskStore {
  insertTask(t: NewTask): Promise<TaskRecord>;
  getTask(id: string): Promise<TaskRecord | undefined>;
  listTasks(opts: { status?: TaskStatus; limit: number }): Promise<TaskRecord[]>;
  /** queued → cancelled; leased → cancelled with the lease kept so its holder hears of it. */
  cancelTask(id: string, now: number): Promise<TaskRecord | undefined>;
  /** Atomically leases up to `max` queued tasks whose selector matches `labels`. */
  leaseTasks(req: LeaseRequest): Promise<TaskRecord[]>;
  countLeased(executorId: string): Promise<number>;
  completeLease(leaseId: string, executorId: string, epoch: number, result: Record<string, unknown>, now: number): Promise<LeaseOutcome>;
  failLease(leaseId: string, executorId: string, epoch: number, error: string, retryable: boolean, now: number): Promise<LeaseOutcome>;
  /** Extends the leases the executor validly holds; returns the listed ones it must stop. */
  heartbeatLeases(executorId: string, epoch: number, leaseIds: string[], leaseExpiresAt: number, now: number): Promise<{ cancel: string[] }>;
  /** Puts back leases of an executor held under an epoch below `belowEpoch` (all when undefined). */
  requeueExecutorLeases(executorId: string, reason: string, now: number, belowEpoch?: number): Promise<number>;
  /** Puts back expired leases and leases of executors silent since `silentSince`. */
  reclaim(now: number, silentSince: number): Promise<{ requeued: number; failed: number; executors: string[] }>;
}
