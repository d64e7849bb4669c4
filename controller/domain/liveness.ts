/**
 * Liveness (PROTOCOL §3.3) as a pure function of what the store knows and the time:
 * an executor that missed 3 heartbeat intervals is `suspect` (no new leases), after 6
 * it is `offline` (its leases go back to the queue); a heartbeat brings it back.
 */
import type { ExecutorLiveness } from "../../shared/wire/operator.ts";
import type { ExecutorRecord } from "../store/types.ts";

export const SUSPECT_AFTER_INTERVALS = 3;
export const OFFLINE_AFTER_INTERVALS = 6;

export function executorLiveness(
  e: Pick<ExecutorRecord, "revokedAt" | "lastSeenAt" | "status">,
  heartbeatIntervalMs: number,
  nowMs: number,
): ExecutorLiveness {
  if (e.revokedAt !== null) return "revoked";
  const silent = e.lastSeenAt === null ? Infinity : nowMs - e.lastSeenAt;
  if (silent > OFFLINE_AFTER_INTERVALS * heartbeatIntervalMs) return "offline";
  if (silent > SUSPECT_AFTER_INTERVALS * heartbeatIntervalMs) return "suspect";
  return e.status;
}

/** Executors seen at or after this time are not suspect. */
export function notSuspectSince(heartbeatIntervalMs: number, nowMs: number): number {
  return nowMs - SUSPECT_AFTER_INTERVALS * heartbeatIntervalMs;
}

/** Executors silent since before this time are offline. */
export function offlineBefore(heartbeatIntervalMs: number, nowMs: number): number {
  return nowMs - OFFLINE_AFTER_INTERVALS * heartbeatIntervalMs;
}
