/**
 * The time series a bench run collects for its report (`--report DIR`, bench/report.ts):
 * cheap to record on the generator's hot paths — a bucket counter per kind of event
 * (Timeline: one typed-array increment per event, growing by doubling) and a log-binned
 * histogram built once from the latency samples the phase already keeps — and plain,
 * serializable data for the charts (DIR/series.json). No imports: the generator threads
 * load it too.
 */

/** Events per kind, counted in fixed buckets of epoch time; what a Timeline sends over RPC and to series.json. */
export interface TimelineData {
  /** Epoch ms at which bucket 0 starts (a multiple of bucketMs, so timelines of different threads line up). */
  originMs: number;
  bucketMs: number;
  /** Per kind: the count of each bucket, from bucket 0 to the last non-empty one. */
  counts: Record<string, number[]>;
}

const MAX_KINDS = 24;
const MAX_BUCKETS = 200_000; // 100 ms buckets: 5.5 hours, longer than --max-seconds allows

/**
 * Counts events per kind in fixed time buckets. `add` costs a map lookup and an increment
 * (the array grows by doubling, so amortized nothing is allocated per event). Kinds beyond
 * the first 24 are counted as "other".
 */
export class Timeline {
  readonly originMs: number;
  private readonly counts = new Map<string, Uint32Array>();

  constructor(
    readonly bucketMs = 100,
    now = Date.now(),
  ) {
    this.originMs = Math.floor(now / bucketMs) * bucketMs;
  }

  add(kind: string, t = Date.now()): void {
    const i = Math.max(0, Math.floor((t - this.originMs) / this.bucketMs));
    if (i >= MAX_BUCKETS) return;
    let a = this.counts.get(kind);
    if (!a) {
      if (this.counts.size >= MAX_KINDS && kind !== "other") return this.add("other", t);
      a = new Uint32Array(Math.max(64, i + 1));
      this.counts.set(kind, a);
    } else if (i >= a.length) {
      const b = new Uint32Array(Math.min(MAX_BUCKETS, Math.max(i + 1, a.length * 2)));
      b.set(a);
      a = b;
      this.counts.set(kind, a);
    }
    a[i]!++;
  }

  toJSON(): TimelineData {
    const counts: Record<string, number[]> = {};
    for (const [kind, a] of this.counts) {
      let end = a.length;
      while (end > 0 && a[end - 1] === 0) end--;
      counts[kind] = Array.from(a.subarray(0, end));
    }
    return { originMs: this.originMs, bucketMs: this.bucketMs, counts };
  }
}

/** Several timelines (one per generator thread, or per call) as one; buckets must be of the same width. */
export function mergeTimelines(list: (TimelineData | undefined)[]): TimelineData {
  const ts = list.filter((t): t is TimelineData => !!t);
  if (ts.length === 0) return { originMs: 0, bucketMs: 100, counts: {} };
  const bucketMs = ts[0]!.bucketMs;
  if (ts.some((t) => t.bucketMs !== bucketMs)) throw new Error("mergeTimelines: different bucket widths");
  const originMs = Math.min(...ts.map((t) => t.originMs));
  const counts: Record<string, number[]> = {};
  for (const t of ts) {
    const off = Math.round((t.originMs - originMs) / bucketMs);
    for (const [kind, c] of Object.entries(t.counts)) {
      const out = (counts[kind] ??= []);
      for (let i = 0; i < c.length; i++) {
        while (out.length <= off + i) out.push(0);
        out[off + i]! += c[i]!;
      }
    }
  }
  return { originMs, bucketMs, counts };
}

/** Total events of a kind (or of all kinds). */
export function timelineTotal(t: TimelineData, kind?: string): number {
  const sum = (c: number[]) => c.reduce((a, b) => a + b, 0);
  return kind ? sum(t.counts[kind] ?? []) : Object.values(t.counts).reduce((a, c) => a + sum(c), 0);
}

/** Latencies in log-spaced bins (`perDecade` per factor of ten from `minMs`), with the exact extremes. */
export interface LogHistogram {
  minMs: number;
  perDecade: number;
  /** counts[i]: samples in [minMs·10^(i/perDecade), minMs·10^((i+1)/perDecade)); below minMs count in bin 0. */
  counts: number[];
  samples: number;
  lowestMs: number;
  highestMs: number;
}

/**
 * The histogram of latency samples (ms), 50 bins per decade from 10 µs (2.3 % wide: finer
 * than any figure the report prints). Built once per phase from the samples it kept.
 */
export function logHistogram(samples: ArrayLike<number>, perDecade = 50, minMs = 0.01): LogHistogram {
  const counts: number[] = [];
  let lowest = Infinity;
  let highest = -Infinity;
  for (let k = 0; k < samples.length; k++) {
    const v = samples[k]!;
    if (!Number.isFinite(v)) continue;
    lowest = Math.min(lowest, v);
    highest = Math.max(highest, v);
    const i = v <= minMs ? 0 : Math.floor(Math.log10(v / minMs) * perDecade);
    while (counts.length <= i) counts.push(0);
    counts[i]!++;
  }
  const n = counts.reduce((a, b) => a + b, 0);
  return { minMs, perDecade, counts, samples: n, lowestMs: n ? lowest : NaN, highestMs: n ? highest : NaN };
}

/** The upper edge of bin i, in ms. */
export const binUpperMs = (h: LogHistogram, i: number) => h.minMs * 10 ** ((i + 1) / h.perDecade);

/** Everything the report draws, besides the run's JSON figures. Each part is absent when its phase did not run. */
export interface RunSeries {
  /** Phase 2: the open-loop latencies of the same timetable against the bare route and the heartbeat. */
  latency?: { heartbeat: LogHistogram; bare: LogHistogram };
  /** Phase 4: completions over time, from the start of the timed registrations. */
  registration?: {
    startMs: number;
    /** Kinds "handshake", "registration" (timed, interleaved H R H R) and "registration (rest)" (the rest of the fleet, untimed). */
    completions: TimelineData;
  };
  /** Phase 5: everything relative to the SIGTERM. */
  storm?: {
    termMs: number;
    armed: number;
    /** Seconds after SIGTERM: the old process exited, the new one listened. */
    exitS: number;
    listeningS: number;
    /** Seconds after SIGTERM of each executor's first successful heartbeat, sorted. */
    recoveredS: number[];
    /** Failed reconnect attempts, by code (ECONNREFUSED, CONNECT_TIMEOUT, an error code…). */
    failures: TimelineData;
  };
  /** Phase 6: the executors' requests by outcome, and the operator's steps. */
  rotation?: {
    startMs: number;
    /** Kinds "ok:<request>" and "failed:<code>". */
    outcomes: TimelineData;
    /** Epoch ms of each step that happened (0 or absent: did not). */
    steps: { label: string; atMs: number }[];
    /** Requests still unanswered when the phase stopped (counted as failed; no time). */
    unanswered: number;
  };
}
