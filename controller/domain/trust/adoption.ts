/**
 * Adoption (PROTOCOL §7.2): an executor has adopted a CA once it reported a trust bundle
 * version that holds it. Activation waits for every executor that is neither offline nor
 * revoked. A pure function of what the store knows and the time.
 */
import type { CaRecord } from "../../store/trust-types.ts";
import { offlineBefore } from "../liveness.ts";

export interface ReportedVersion {
  id: string;
  version: number | null;
  lastSeenAt: number | null;
  revoked: boolean;
}

export interface Adoption {
  /** Executors (not revoked) holding a version with this CA. */
  adoptedBy: number;
  /** Executors neither offline nor revoked that do not hold it yet, by id. */
  pending: string[];
}

export function adoptionOf(ca: Pick<CaRecord, "addedInVersion">, executors: ReportedVersion[], heartbeatIntervalMs: number, now: number): Adoption {
  const silentSince = offlineBefore(heartbeatIntervalMs, now);
  let adoptedBy = 0;
  const pending: string[] = [];
  for (const e of executors) {
    if (e.revoked) continue;
    if (e.version !== null && e.version >= ca.addedInVersion) adoptedBy++;
    else if (e.lastSeenAt !== null && e.lastSeenAt >= silentSince) pending.push(e.id);
  }
  return { adoptedBy, pending };
}
