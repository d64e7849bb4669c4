import { describe, expect, it } from "vitest";
import { RateLimiter } from "../../controller/domain/rate-limit.ts";
import { sourceKey } from "../../controller/domain/source-address.ts";

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

describe("sources", () => {
  it("an IPv6 /64 is one source, an IPv4-mapped address is its IPv4 address", () => {
    expect(sourceKey("192.0.2.1")).toBe("192.0.2.1");
    expect(sourceKey("::ffff:192.0.2.1")).toBe("192.0.2.1");
    expect(sourceKey("::ffff:c000:201")).toBe("192.0.2.1");
    expect(sourceKey("2001:db8:1:2:aaaa:bbbb:cccc:dddd")).toBe("2001:db8:1:2::/64");
    expect(sourceKey("2001:db8:1:2::1")).toBe("2001:db8:1:2::/64");
    expect(sourceKey("2001:0db8:0001:0002::1")).toBe("2001:db8:1:2::/64");
    expect(sourceKey("fe80::1%eth0")).toBe("fe80:0:0:0::/64");
    expect(sourceKey("2001:db8:1:3::1")).not.toBe(sourceKey("2001:db8:1:2::1"));
  });

  it("/register's limit counts a whole IPv6 /64 as one source", () => {
    const rl = new RateLimiter(2, 1);
    const t = 1_000_000;
    expect([rl.take("2001:db8:1:2::1", t), rl.take("2001:db8:1:2::2", t)]).toEqual([0, 0]);
    // Rotating through the /64 does not earn a fresh bucket.
    expect(rl.take("2001:db8:1:2:ffff::9", t)).toBeGreaterThan(0);
    expect(rl.take("2001:db8:1:3::1", t)).toBe(0);
    // IPv4 and its mapped form share one bucket.
    expect([rl.take("192.0.2.1", t), rl.take("::ffff:192.0.2.1", t)]).toEqual([0, 0]);
    expect(rl.take("192.0.2.1", t)).toBeGreaterThan(0);
  });
});
