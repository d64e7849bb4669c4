/**
 * Rejections anyone can provoke (guard rejections, operator auth failures, /register
 * 429s) would otherwise cost one synchronous audit line each: a flood from one client
 * fills the disk. Here the first rejection of a kind in a window is written at once;
 * repeats are only counted, and written as one line with `count` when the window
 * closes. A kind is the event, the source (source-address.ts: an IPv4 address or an
 * IPv6 /64) and what the caller names (code, reason…). At most `maxKinds` kinds are
 * held per window; rejections of further kinds go into one catch-all counter, so a
 * client rotating its source address cannot grow memory or the log.
 */
import type { AuditFields } from "./audit.ts";
import { sourceKey } from "./source-address.ts";

/** What identifies a kind of rejection; `source` is the client address. */
export type RejectionKind = { source: string } & Record<string, string>;

export interface AggregationLimits {
  windowMs: number;
  maxKinds: number;
}

export const DEFAULT_AGGREGATION: AggregationLimits = { windowMs: 60_000, maxKinds: 256 };

/** The event of the catch-all line: rejections of kinds beyond `maxKinds` in one window. */
export const OVERFLOW_EVENT = "audit.rejections_overflow";

interface Held {
  event: string;
  kind: RejectionKind;
  repeats: number;
}

export class RejectionAggregator {
  private held = new Map<string, Held>();
  private overflow = 0;
  private windowStart = 0;
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly write: (event: string, fields: AuditFields) => void,
    private readonly limits: AggregationLimits = DEFAULT_AGGREGATION,
    private readonly now: () => number = Date.now,
  ) {}

  offer(event: string, kind: RejectionKind, details: AuditFields = {}): void {
    const key = JSON.stringify([event, sourceKey(kind.source), ...Object.entries(kind).filter(([k]) => k !== "source")]);
    const h = this.held.get(key);
    if (h) {
      h.repeats++;
      return;
    }
    this.openWindow();
    if (this.held.size >= this.limits.maxKinds) {
      this.overflow++;
      return;
    }
    this.held.set(key, { event, kind, repeats: 0 });
    this.write(event, { ...kind, ...details });
  }

  /** Closes the window: one line per kind that repeated, one for the overflow. */
  flush(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    const held = this.held;
    const overflow = this.overflow;
    this.held = new Map();
    this.overflow = 0;
    const window = { window_start: new Date(this.windowStart).toISOString(), window_s: Math.round((this.now() - this.windowStart) / 1000) };
    for (const h of held.values()) {
      if (h.repeats > 0) this.write(h.event, { ...h.kind, source: sourceKey(h.kind.source), count: h.repeats, aggregated: true, ...window });
    }
    if (overflow > 0) this.write(OVERFLOW_EVENT, { count: overflow, max_kinds: this.limits.maxKinds, aggregated: true, ...window });
  }

  private openWindow(): void {
    if (this.timer) return;
    this.windowStart = this.now();
    this.timer = setTimeout(() => this.flush(), this.limits.windowMs);
    this.timer.unref();
  }
}
