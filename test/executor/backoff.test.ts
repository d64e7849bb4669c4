/** Backoff and jitter arithmetic: every bound pinned with a controlled random source. */
import { describe, expect, it } from "vitest";
import { Backoff, backoffDelay, DEFAULT_BACKOFF, heartbeatDelay, jitter, reconnectDelay, retryAfterDelay } from "../../executor/backoff.ts";

const fixed = (r: number) => () => r;
const opts = { baseMs: 500, capMs: 30_000, factor: 2 };

describe("backoffDelay (capped exponential, equal jitter)", () => {
  it("grows exponentially from the base: the step doubles each attempt", () => {
    // random = 1⁻ gives the top of [step/2, step)
    const top = (n: number) => backoffDelay(n, opts, fixed(0.999999));
    expect(top(0)).toBe(499);
    expect(top(1)).toBe(999);
    expect(top(2)).toBe(1999);
    expect(top(3)).toBe(3999);
  });

  it("is never below half the step, so it can never collapse into a tight loop", () => {
    for (let n = 0; n < 40; n++) {
      const step = Math.min(opts.capMs, opts.baseMs * 2 ** n);
      expect(backoffDelay(n, opts, fixed(0))).toBe(Math.floor(step / 2));
      expect(backoffDelay(n, opts, fixed(0))).toBeGreaterThanOrEqual(250);
    }
  });

  it("is capped, also for huge attempt numbers (no Infinity / NaN)", () => {
    for (const n of [15, 100, 1e6, Number.MAX_SAFE_INTEGER]) {
      const d = backoffDelay(n, opts, fixed(0.999999));
      expect(d).toBeLessThan(opts.capMs);
      expect(d).toBeGreaterThanOrEqual(opts.capMs / 2);
    }
  });

  it("stays inside [step/2, step) for any random value, including out-of-range ones", () => {
    for (const r of [0, 0.25, 0.5, 0.75, 0.9999, 1, 1.5, -1, NaN]) {
      const d = backoffDelay(3, opts, fixed(r));
      expect(d).toBeGreaterThanOrEqual(2000);
      expect(d).toBeLessThan(4000);
    }
  });

  it("treats negative or fractional attempts as their floor ≥ 0", () => {
    expect(backoffDelay(-3, opts, fixed(0))).toBe(250);
    expect(backoffDelay(1.7, opts, fixed(0))).toBe(500);
  });

  it("spreads retries of many executors (jitter is real)", () => {
    const values = new Set(Array.from({ length: 200 }, () => backoffDelay(4, DEFAULT_BACKOFF)));
    expect(values.size).toBeGreaterThan(50);
  });
});

describe("Backoff counter", () => {
  it("advances per next() and starts over after reset()", () => {
    const b = new Backoff(opts, fixed(0));
    expect([b.next(), b.next(), b.next()]).toEqual([250, 500, 1000]);
    expect(b.attempts).toBe(3);
    b.reset();
    expect(b.next()).toBe(250);
  });
});

describe("jitter and heartbeat delay", () => {
  it("jitter(ms, f) ∈ [ms·(1−f), ms·(1+f))", () => {
    expect(jitter(10_000, 0.1, fixed(0))).toBe(9_000);
    expect(jitter(10_000, 0.1, fixed(0.5))).toBe(10_000);
    expect(jitter(10_000, 0.1, fixed(0.999999))).toBe(10_999);
  });

  it("uses the controller's interval ±10 %", () => {
    expect(heartbeatDelay(10, fixed(0))).toBe(9_000);
    expect(heartbeatDelay(10, fixed(0.999999))).toBe(10_999);
    expect(heartbeatDelay(1, fixed(0.5))).toBe(1_000);
  });

  it("falls back to 10 s for a missing or absurd interval and never goes below the floor", () => {
    expect(heartbeatDelay(NaN, fixed(0.5))).toBe(10_000);
    expect(heartbeatDelay(0, fixed(0.5))).toBe(10_000);
    expect(heartbeatDelay(-5, fixed(0.5))).toBe(10_000);
    expect(heartbeatDelay(0.1, fixed(0))).toBe(500);
  });
});

describe("retryAfterDelay", () => {
  it("honors Retry-After seconds within [fallback/2, cap]", () => {
    expect(retryAfterDelay("3", 1000)).toBe(3000);
    expect(retryAfterDelay("0", 1000)).toBe(500);
    expect(retryAfterDelay("99999", 1000)).toBe(300_000);
  });
  it("falls back for a missing or unparseable header", () => {
    expect(retryAfterDelay(undefined, 1234)).toBe(1234);
    expect(retryAfterDelay("Wed, 21 Oct 2015 07:28:00 GMT", 1234)).toBe(1234);
    expect(retryAfterDelay("-1", 1234)).toBe(1234);
  });
});

describe("reconnectDelay (nothing listening: flat and short for a while, then the usual backoff)", () => {
  const refused = (lostForMs: number) => ({ refused: true, lostForMs });
  it("retries a refused connection in [0.5 s, 1.5 s) for the first 30 s after the loss, whatever the attempt", () => {
    for (const attempt of [0, 3, 10, 40]) {
      expect(reconnectDelay(attempt, refused(0), opts, fixed(0))).toBe(500);
      expect(reconnectDelay(attempt, refused(29_999), opts, fixed(0.999999))).toBe(1499);
    }
    for (const r of [1, 1.5, -1, NaN]) {
      const d = reconnectDelay(2, refused(1_000), opts, fixed(r));
      expect(d).toBeGreaterThanOrEqual(500);
      expect(d).toBeLessThan(1500);
    }
  });

  it("spreads those retries (jitter is real)", () => {
    const seen = new Set(Array.from({ length: 200 }, () => reconnectDelay(1, refused(100), opts)));
    expect(seen.size).toBeGreaterThan(100);
  });

  it("backs off as usual once the window is over, and for anything but a refusal (reset, timeout, TLS failure)", () => {
    expect(reconnectDelay(5, refused(30_000), opts, fixed(0))).toBe(backoffDelay(5, opts, fixed(0)));
    expect(reconnectDelay(5, { refused: false, lostForMs: 0 }, opts, fixed(0))).toBe(8_000);
    expect(reconnectDelay(0, { refused: false, lostForMs: 0 }, opts, fixed(0))).toBe(250);
    // A clock that went backwards is not a reason to hammer.
    expect(reconnectDelay(5, refused(-1), opts, fixed(0))).toBe(8_000);
  });

  it("counts as an attempt on the Backoff counter", () => {
    const b = new Backoff(opts, fixed(0));
    expect([b.nextReconnect(refused(0)), b.nextReconnect(refused(0)), b.attempts]).toEqual([500, 500, 2]);
    expect(b.nextReconnect({ refused: false, lostForMs: 0 })).toBe(1000); // attempt 2: step 2 s, equal jitter from 1 s
  });
});
