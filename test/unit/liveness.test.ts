/** Liveness as a pure function of (last seen, interval, now) — PROTOCOL §3.3. */
import { describe, expect, it } from "vitest";
import { executorLiveness, notSuspectSince, offlineBefore } from "../../controller/domain/liveness.ts";

const INTERVAL = 10_000;
const NOW = 1_767_225_600_000;
const seen = (silentMs: number | null, over: { revokedAt?: number | null; status?: "ready" | "draining" } = {}) => ({
  lastSeenAt: silentMs === null ? null : NOW - silentMs,
  revokedAt: over.revokedAt ?? null,
  status: over.status ?? ("ready" as const),
});

describe("executor liveness", () => {
  it("reports the executor's own status while it heartbeats", () => {
    expect(executorLiveness(seen(0), INTERVAL, NOW)).toBe("ready");
    expect(executorLiveness(seen(0, { status: "draining" }), INTERVAL, NOW)).toBe("draining");
  });

  it("is suspect after 3 missed intervals, not at 3 exactly", () => {
    expect(executorLiveness(seen(3 * INTERVAL), INTERVAL, NOW)).toBe("ready");
    expect(executorLiveness(seen(3 * INTERVAL + 1), INTERVAL, NOW)).toBe("suspect");
  });

  it("is offline after 6 missed intervals, and when never seen", () => {
    expect(executorLiveness(seen(6 * INTERVAL), INTERVAL, NOW)).toBe("suspect");
    expect(executorLiveness(seen(6 * INTERVAL + 1), INTERVAL, NOW)).toBe("offline");
    expect(executorLiveness(seen(null), INTERVAL, NOW)).toBe("offline");
  });

  it("is revoked once revoked, whatever else is true", () => {
    expect(executorLiveness(seen(0, { revokedAt: NOW - 1 }), INTERVAL, NOW)).toBe("revoked");
    expect(executorLiveness(seen(null, { revokedAt: NOW - 1 }), INTERVAL, NOW)).toBe("revoked");
  });

  it("gives the same thresholds to the store's queries", () => {
    expect(notSuspectSince(INTERVAL, NOW)).toBe(NOW - 3 * INTERVAL);
    expect(offlineBefore(INTERVAL, NOW)).toBe(NOW - 6 * INTERVAL);
  });
});
