/** The CA schedule, adoption and the renewal jitter (controller/domain/trust/): pure functions of the set and the time. */
import { moveWindowMs, MOVES_PER_S } from "../../controller/domain/trust/ca-set.ts";
import { describe, expect, it } from "vitest";
import { caCheckIntervalMs, caScheduleStep } from "../../controller/domain/trust/schedule.ts";
import { adoptionOf } from "../../controller/domain/trust/adoption.ts";
import { renewalJitter } from "../../controller/domain/trust/renewal.ts";

const TTL = 120_000;
const NOT_AFTER = 1_000_000;

describe("the CA schedule (½ prepare, ⅙ activate gated, 1/12 forced)", () => {
  it("prepares once half of --ca-ttl is left, not before", () => {
    expect(caScheduleStep(NOT_AFTER, false, TTL, NOT_AFTER - TTL / 2 - 1)).toEqual({ kind: "none" });
    expect(caScheduleStep(NOT_AFTER, false, TTL, NOT_AFTER - TTL / 2)).toEqual({ kind: "prepare" });
    expect(caScheduleStep(NOT_AFTER, false, TTL, NOT_AFTER + 1)).toEqual({ kind: "prepare" });
  });
  it("with a prepared CA: nothing until a sixth is left, then a gated activation, forced from a twelfth (and after expiry)", () => {
    expect(caScheduleStep(NOT_AFTER, true, TTL, NOT_AFTER - TTL / 2)).toEqual({ kind: "none" });
    expect(caScheduleStep(NOT_AFTER, true, TTL, NOT_AFTER - TTL / 6 - 1)).toEqual({ kind: "none" });
    expect(caScheduleStep(NOT_AFTER, true, TTL, NOT_AFTER - TTL / 6)).toEqual({ kind: "activate", force: false });
    expect(caScheduleStep(NOT_AFTER, true, TTL, NOT_AFTER - TTL / 12 - 1)).toEqual({ kind: "activate", force: false });
    expect(caScheduleStep(NOT_AFTER, true, TTL, NOT_AFTER - TTL / 12)).toEqual({ kind: "activate", force: true });
    expect(caScheduleStep(NOT_AFTER, true, TTL, NOT_AFTER + 5)).toEqual({ kind: "activate", force: true });
  });
  it("checks every 1/120 of the CA lifetime, between 1 s and 60 s", () => {
    expect(caCheckIntervalMs(8760 * 3600_000)).toBe(60_000);
    expect(caCheckIntervalMs(180_000)).toBe(1500);
    expect(caCheckIntervalMs(10_000)).toBe(1000);
  });
});

describe("adoption", () => {
  const I = 10_000;
  const now = 1_000_000;
  const e = (id: string, version: number | null, lastSeenAt: number | null, revoked = false) => ({ id, version, lastSeenAt, revoked });

  it("adopted: not revoked and a reported version that holds the CA; pending: live executors that have not", () => {
    const executors = [
      e("ex_adopted", 5, now), e("ex_newer", 9, now - 6 * I - 1), e("ex_behind", 4, now), e("ex_silent", null, now - 2 * I),
      e("ex_never", null, null), e("ex_offline", 4, now - 6 * I - 1), e("ex_edge", 4, now - 6 * I), e("ex_revoked", 2, now, true),
      e("ex_revoked_adopted", 7, now, true),
    ];
    expect(adoptionOf({ addedInVersion: 5 }, executors, I, now)).toEqual({ adoptedBy: 2, pending: ["ex_behind", "ex_silent", "ex_edge"] });
    expect(adoptionOf({ addedInVersion: 1 }, [], I, now)).toEqual({ adoptedBy: 0, pending: [] });
  });
});

describe("the renewal jitter after an activation", () => {
  it("is fixed per executor and CA, in [0, 1), and spreads a fleet", () => {
    expect(renewalJitter("ex_a", "ca_1")).toBe(renewalJitter("ex_a", "ca_1"));
    expect(renewalJitter("ex_a", "ca_1")).not.toBe(renewalJitter("ex_a", "ca_2"));
    const values = Array.from({ length: 1000 }, (_, i) => renewalJitter(`ex_${i}`, "ca_1"));
    expect(Math.min(...values)).toBeGreaterThanOrEqual(0);
    expect(Math.max(...values)).toBeLessThan(1);
    const quarters = [0, 1, 2, 3].map((q) => values.filter((v) => Math.floor(v * 4) === q).length);
    for (const n of quarters) expect(n).toBeGreaterThan(200);
  });
});

describe("the renew window after an activation", () => {
  it("is one heartbeat interval for a small fleet, and grows with the fleet so renewals stay at MOVES_PER_S", () => {
    expect(moveWindowMs(3, 10_000)).toBe(10_000);
    expect(moveWindowMs(MOVES_PER_S * 10, 10_000)).toBe(10_000);
    expect(moveWindowMs(10_000, 10_000)).toBe((10_000 / MOVES_PER_S) * 1000);
    expect(moveWindowMs(0, 1_000)).toBe(1_000);
  });
});
