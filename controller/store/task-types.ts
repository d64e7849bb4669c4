/** The task store: tasks, their single current lease, and the transitions between states. */
import type { TaskStatus } from "../../shared/wire/operator.ts";
import type { TaskCounts } from "./counts.ts";

export type { TaskCounts };

export type { TaskStatus };

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

/**
 * One lease call. The store checks the executor inside the same transaction as the
 * lease itself — it exists, holds `epoch`, is not revoked, not drained, reported
 * `ready`, and was seen at or after `aliveSince` (not suspect) — and leases at most
 * `min(max, capacity − leases it holds)` of the oldest queued tasks whose selector is
 * a subset of its labels. So nothing the guard read earlier can be stale by then, and
 * the cost follows the matching tasks, not the backlog.
 */
export interface LeaseRequest {
  executorId: string;
  epoch: number;
  max: number;
  /** Executors whose last heartbeat is older than this (unix ms) are suspect: no leases. */
  aliveSince: number;
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
  /** Atomically leases matching queued tasks to an eligible executor (see LeaseRequest); [] when it is not eligible. */
  leaseTasks(req: LeaseRequest): Promise<TaskRecord[]>;
  completeLease(leaseId: string, executorId: string, epoch: number, result: Record<string, unknown>, now: number): Promise<LeaseOutcome>;
  failLease(leaseId: string, executorId: string, epoch: number, error: string, retryable: boolean, now: number): Promise<LeaseOutcome>;
  /** Extends the leases the executor validly holds; returns the listed ones it must stop. */
  heartbeatLeases(executorId: string, epoch: number, leaseIds: string[], leaseExpiresAt: number, now: number): Promise<{ cancel: string[] }>;
  /** Puts back leases of an executor held under an epoch below `belowEpoch` (all when undefined). */
  requeueExecutorLeases(executorId: string, reason: string, now: number, belowEpoch?: number): Promise<number>;
  /** Puts back expired leases and leases of executors silent since `silentSince`. */
  reclaim(now: number, silentSince: number): Promise<{ requeued: number; failed: number; executors: string[] }>;
  /** Tasks by status, every status present: one query (metrics, PROTOCOL §9.1). */
  taskCounts(): Promise<TaskCounts>;
}
