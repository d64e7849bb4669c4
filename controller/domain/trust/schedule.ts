/**
 * The CA schedule (PROTOCOL §7.2, SPIRE's): a CA is prepared when the active one has half
 * of `--ca-ttl` left and activated, gated on adoption, when a sixth is left. The gate is
 * lifted when a twelfth is left (or the active CA has expired): an executor that never
 * adopts must not let the whole fleet's CA run out; activation then is forced, audited
 * with the executors still pending. A pure function of the set and the time.
 */
export type CaStep =
  | { kind: "none" }
  | { kind: "prepare" }
  | { kind: "activate"; force: boolean };

export const PREPARE_AT_FRACTION = 1 / 2;
export const ACTIVATE_AT_FRACTION = 1 / 6;
export const FORCE_AT_FRACTION = 1 / 12;

export function caScheduleStep(activeNotAfter: number, hasPrepared: boolean, caTtlMs: number, now: number): CaStep {
  const left = activeNotAfter - now;
  if (!hasPrepared) return left <= caTtlMs * PREPARE_AT_FRACTION ? { kind: "prepare" } : { kind: "none" };
  if (left <= caTtlMs * FORCE_AT_FRACTION) return { kind: "activate", force: true };
  if (left <= caTtlMs * ACTIVATE_AT_FRACTION) return { kind: "activate", force: false };
  return { kind: "none" };
}

/** How often the running controller checks the schedule: 1/120 of the CA lifetime, within [1 s, 60 s]. */
export function caCheckIntervalMs(caTtlMs: number): number {
  return Math.min(60_000, Math.max(1000, Math.floor(caTtlMs / 120)));
}
