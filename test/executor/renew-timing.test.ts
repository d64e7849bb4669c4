/** When the JWT and the certificate are renewed: ~2/3 of the life, jittered, clamped. */
import { describe, expect, it } from "vitest";
import { delayUntil, measureClockOffset, renewDeadline, RENEW_JITTER_FRACTION, serverTimeToLocal } from "../../executor/renew-timing.ts";
import { renewAt } from "../../shared/protocol.ts";

const T0 = Date.parse("2026-01-01T00:00:00Z");
const MIN = 60_000;

describe("renewDeadline", () => {
  it("without a hint and without jitter (r = 0.5) is exactly 2/3 of the life (shared renewAt)", () => {
    const p = { issuedAtMs: T0, expiresAtMs: T0 + 15 * MIN, r: 0.5 };
    expect(renewDeadline(p)).toBe(T0 + 10 * MIN);
    expect(renewDeadline(p)).toBe(renewAt(T0, T0 + 15 * MIN));
  });

  it("jitter spreads it by ±5 % of the life", () => {
    const life = 24 * 60 * MIN;
    const p = { issuedAtMs: T0, expiresAtMs: T0 + life };
    const base = T0 + Math.floor((life * 2) / 3);
    expect(renewDeadline({ ...p, r: 0 })).toBe(Math.floor(base - RENEW_JITTER_FRACTION * life));
    expect(renewDeadline({ ...p, r: 0.999999 })).toBeLessThanOrEqual(base + RENEW_JITTER_FRACTION * life);
    expect(renewDeadline({ ...p, r: 0.999999 })).toBeGreaterThan(base + 0.049 * life);
  });

  it("uses the controller's hint (jwt_renew_after / cert_renew_after) when given", () => {
    const p = { issuedAtMs: T0, expiresAtMs: T0 + 30_000, r: 0.5, suggestedMs: T0 + 18_000 };
    expect(renewDeadline(p)).toBe(T0 + 18_000);
  });

  it("clamps a bad hint or extreme jitter to [half-life, 90 % of the life]", () => {
    const p = { issuedAtMs: T0, expiresAtMs: T0 + 100_000, r: 0.5 };
    expect(renewDeadline({ ...p, suggestedMs: T0 - 1e9 })).toBe(T0 + 50_000);
    expect(renewDeadline({ ...p, suggestedMs: T0 + 1e9 })).toBe(T0 + 90_000);
    expect(renewDeadline({ ...p, jitterFraction: 10, r: 0 })).toBe(T0 + 50_000);
    expect(renewDeadline({ ...p, jitterFraction: 10, r: 0.999 })).toBe(T0 + 90_000);
  });

  it("a certificate plan honors an early hint (renew now after a CA activation), never before issue and without jitter", () => {
    const p = { issuedAtMs: T0, expiresAtMs: T0 + 100_000, r: 0.9, honorEarlyHint: true };
    expect(renewDeadline({ ...p, suggestedMs: T0 + 10_000 })).toBe(T0 + 10_000);
    expect(renewDeadline({ ...p, suggestedMs: T0 - 1e9 })).toBe(T0);
    // A normal hint is treated as before (jitter, clamps).
    expect(renewDeadline({ ...p, suggestedMs: T0 + 1e9 })).toBe(T0 + 90_000);
    expect(renewDeadline({ ...p, suggestedMs: T0 + 66_000 })).toBe(renewDeadline({ ...p, suggestedMs: T0 + 66_000, honorEarlyHint: false }));
  });

  it("the short test lifetimes work too: a 10 s JWT renews between 6.2 s and 7.2 s", () => {
    for (const r of [0, 0.3, 0.7, 0.999]) {
      const t = renewDeadline({ issuedAtMs: T0, expiresAtMs: T0 + 10_000, r }) - T0;
      expect(t).toBeGreaterThanOrEqual(6_166);
      expect(t).toBeLessThanOrEqual(7_167);
    }
  });

  it("never renews after expiry, even for a credential issued in the past", () => {
    const p = { issuedAtMs: T0 - 10 * MIN, expiresAtMs: T0 + MIN, r: 0.99 };
    expect(renewDeadline(p)).toBeLessThan(T0 + MIN);
    expect(delayUntil(renewDeadline(p), T0 + 30_000)).toBe(0);
  });
});

describe("delayUntil / clock helpers", () => {
  it("delayUntil is never negative", () => {
    expect(delayUntil(T0 + 5, T0)).toBe(5);
    expect(delayUntil(T0 - 5, T0)).toBe(0);
  });

  it("converts server timestamps to the local clock with the measured offset", () => {
    expect(serverTimeToLocal("2026-01-01T00:01:00Z", 60_000)).toBe(T0);
    expect(serverTimeToLocal("2026-01-01T00:00:00Z", 0)).toBe(T0);
    expect(serverTimeToLocal("garbage", 0)).toBeUndefined();
    expect(serverTimeToLocal(undefined, 0)).toBeUndefined();
  });

  it("measures server − local from server_time at the midpoint of the exchange", () => {
    expect(measureClockOffset("2026-01-01T00:05:00Z", T0, T0 + 200)).toBe(5 * MIN - 100);
    expect(measureClockOffset("2026-01-01T00:00:00Z", T0 + 10_000, T0 + 10_000)).toBe(-10_000);
    expect(measureClockOffset("nope", T0, T0)).toBeUndefined();
  });
});
