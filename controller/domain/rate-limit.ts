/** A token bucket per source (source-address.ts: an IPv4 address or an IPv6 /64), for /register. */
import { sourceKey } from "./source-address.ts";

export class RateLimiter {
  private readonly buckets = new Map<string, { tokens: number; at: number }>();

  constructor(
    private readonly burst: number,
    private readonly perSecond: number,
  ) {}

  /** 0 when allowed; otherwise the seconds to wait before trying again. */
  take(address: string, nowMs = Date.now()): number {
    const key = sourceKey(address);
    let b = this.buckets.get(key);
    if (!b) {
      if (this.buckets.size > 100_000) this.sweep(nowMs);
      b = { tokens: this.burst, at: nowMs };
      this.buckets.set(key, b);
    }
    b.tokens = Math.min(this.burst, b.tokens + ((nowMs - b.at) / 1000) * this.perSecond);
    b.at = nowMs;
    if (b.tokens >= 1) {
      b.tokens -= 1;
      return 0;
    }
    return Math.max(1, Math.ceil((1 - b.tokens) / this.perSecond));
  }

  private sweep(nowMs: number): void {
    for (const [k, b] of this.buckets) if (nowMs - b.at > (this.burst / this.perSecond) * 1000) this.buckets.delete(k);
  }
}
