import { createHash } from "node:crypto";

/**
 * A number in [0, 1) fixed for one executor and one CA: where in the renewal window after
 * an activation this executor is told to renew, so a fleet spreads out and an executor's
 * hint does not move between heartbeats.
 */
export function renewalJitter(executorId: string, caId: string): number {
  return createHash("sha256").update(`${executorId}\n${caId}`).digest().readUInt32BE(0) / 2 ** 32;
}
