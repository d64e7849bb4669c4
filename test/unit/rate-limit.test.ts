import { describe, expect, it } from "vitest";
import { RateLimiter } from "../../controller/domain/rate-limit.ts";

describe("RateLimiter", () => {
  it("allows a burst, then asks to wait, then refills", () => {
    const rl = new RateLimiter(3, 1);
    const t = 1_000_000;
    expect([rl.take("a", t), rl.take("a", t), rl.take("a", t)]).toEqual([0, 0, 0]);
    expect(rl.take("a", t)).toBe(1);
    expect(rl.take("b", t)).toBe(0);
    expect(rl.take("a", t + 1000)).toBe(0);
  });
  it("reports seconds to wait, at least 1", () => {
    const rl = new RateLimiter(1, 0.1);
    expect(rl.take("x", 0)).toBe(0);
    expect(rl.take("x", 0)).toBe(10);
  });
});
