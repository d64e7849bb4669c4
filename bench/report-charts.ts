/**
 * The bench report's charts (bench/report.ts writes them): each from the run's series
 * (bench/report-series.ts) and its JSON figures, as a standalone SVG (bench/report-svg.ts).
 * A chart whose phase did not run is left out; one whose phase ran but recorded nothing
 * still renders, with its axes and a note in place of the data.
 */
import { binUpperMs, type LogHistogram, type RunSeries, type TimelineData } from "./report-series.ts";
import { formatNumber, PALETTE, renderChart, type MarkSpec, type SeriesSpec } from "./report-svg.ts";

export interface Chart {
  /** File name without ".svg". */
  name: string;
  title: string;
  /** One or two sentences: what the chart shows and how to read it. */
  caption: string;
  svg: string;
}

type Figures = Record<string, unknown>;
const num = (r: Figures, k: string) => (typeof r[k] === "number" && Number.isFinite(r[k]) ? (r[k] as number) : NaN);
const ms = (v: number) => (Number.isFinite(v) ? `${formatNumber(v)} ms` : "—");
const BLUE = PALETTE[0]!;
const RED = PALETTE[1]!;

export function buildCharts(series: RunSeries, r: Figures): Chart[] {
  const charts: Chart[] = [];
  if (series.latency) charts.push(...latencyCharts(series.latency, r));
  if (series.registration) charts.push(registrationChart(series.registration, r));
  if (series.storm) charts.push(stormChart(series.storm, r));
  if (series.rotation) charts.push(rotationChart(series.rotation, r));
  return charts;
}

// ---------------------------------------------------------------------------------------------
// Latency: heartbeat vs the bare route, same timetable, same run

/** [upper edge of each non-empty bin (ms), % of samples at or below it], from 0 % at the lowest sample. */
function cdfPoints(h: LogHistogram): [number, number][] {
  if (h.samples === 0) return [];
  const pts: [number, number][] = [[h.lowestMs, 0]];
  let cum = 0;
  for (let i = 0; i < h.counts.length; i++) {
    if (h.counts[i] === 0) continue;
    cum += h.counts[i]!;
    pts.push([Math.min(binUpperMs(h, i), h.highestMs), (cum / h.samples) * 100]);
  }
  return pts;
}

/** % of samples per bin, `merge` fine bins to one, as steps from each bin's lower edge. */
function histogramPoints(h: LogHistogram, merge: number): [number, number][] {
  if (h.samples === 0) return [];
  const pts: [number, number][] = [];
  const first = Math.floor(h.counts.findIndex((c) => c > 0) / merge);
  const last = Math.floor((h.counts.length - 1) / merge);
  for (let b = first; b <= last; b++) {
    let c = 0;
    for (let i = b * merge; i < (b + 1) * merge && i < h.counts.length; i++) c += h.counts[i]!;
    const lower = h.minMs * 10 ** ((b * merge) / h.perDecade);
    if (b === first) pts.push([lower, 0]);
    pts.push([lower, (c / h.samples) * 100]);
  }
  const end = h.minMs * 10 ** (((last + 1) * merge) / h.perDecade);
  pts.push([end, pts.at(-1)?.[1] ?? 0], [end, 0]);
  return pts;
}

function latencyCharts(lat: NonNullable<RunSeries["latency"]>, r: Figures): Chart[] {
  const rate = num(r, "heartbeat_offered_per_s");
  const subtitle =
    `open loop: ${formatNumber(rate)} requests/s offered over ${formatNumber(num(r, "executors"))} executors, latency from the scheduled send time; ` +
    `heartbeat ${formatNumber(lat.heartbeat.samples)} answers, bare ${formatNumber(lat.bare.samples)}`;
  const pct = { hb: { p50: num(r, "heartbeat_p50_ms"), p99: num(r, "heartbeat_p99_ms"), p999: num(r, "heartbeat_p999_ms") }, bare: { p50: num(r, "bare_p50_ms"), p99: num(r, "bare_p99_ms") } };
  const hbName = "heartbeat (full guard chain)";
  const bareName = "bare route (no guards, same connections)";
  const xAxis = { label: "latency (ms, log scale)", scale: "log" as const };
  const marks = (withTail: boolean): MarkSpec[] => [
    { x: pct.hb.p50, y: 50, label: `p50 ${ms(pct.hb.p50)}`, color: BLUE },
    { x: pct.hb.p99, y: 99, label: `p99 ${ms(pct.hb.p99)}`, color: BLUE },
    ...(withTail ? [{ x: pct.hb.p999, y: 99.9, label: `p99.9 ${ms(pct.hb.p999)}`, color: BLUE }] : []),
    { x: pct.bare.p50, y: 50, label: `p50 ${ms(pct.bare.p50)}`, color: RED, left: true },
    { x: pct.bare.p99, y: 99, label: `p99 ${ms(pct.bare.p99)}`, color: RED, left: true },
  ];
  const hb = cdfPoints(lat.heartbeat);
  const bare = cdfPoints(lat.bare);
  const empty = "no latency samples";
  const cdf = renderChart({
    title: "Heartbeat latency vs the bare route: cumulative distribution",
    subtitle,
    x: xAxis,
    panels: [{
      y: { label: "answered within x (% of requests)", min: 0, max: 100 },
      series: [{ name: hbName, points: hb, color: BLUE }, { name: bareName, points: bare, color: RED, dash: true }],
      marks: marks(false),
      hlines: [{ y: 50, label: "50 %" }, { y: 99, label: "99 %" }],
      empty,
      height: 300,
    }],
  });
  // The tail: the same curves with the y axis in "nines" (each step of the grid is ten times fewer requests).
  const nines = Math.max(2, Math.min(5, Math.floor(Math.log10(Math.max(lat.heartbeat.samples, lat.bare.samples, 1)))));
  const tail = renderChart({
    title: "Heartbeat latency vs the bare route: the tail",
    subtitle,
    x: xAxis,
    panels: [{
      y: { label: "answered within x (%, nines scale)", scale: "nines", max: Number((100 - 100 / 10 ** nines).toFixed(nines)) },
      series: [{ name: hbName, points: hb, color: BLUE }, { name: bareName, points: bare, color: RED, dash: true }],
      marks: marks(true),
      empty,
      height: 300,
    }],
  });
  const perDecade = lat.heartbeat.perDecade;
  const merge = Math.max(1, Math.round(perDecade / 10));
  const hist = renderChart({
    title: "Heartbeat latency vs the bare route: distribution",
    subtitle,
    x: xAxis,
    panels: [{
      y: { label: "requests (% per bin, 10 bins per decade)", min: 0 },
      series: [
        { name: hbName, points: histogramPoints(lat.heartbeat, merge), color: BLUE, kind: "step" },
        { name: bareName, points: histogramPoints(lat.bare, merge), color: RED, kind: "step", dash: true },
      ],
      empty,
      height: 300,
    }],
  });
  return [
    {
      name: "latency-cdf", title: "Heartbeat vs bare route: latency CDF", svg: cdf,
      caption: "Share of requests answered within a given latency (log scale), heartbeats through the full guard chain and the unguarded bare route on the same open-loop timetable in the same run; p50 and p99 of each are marked.",
    },
    {
      name: "latency-tail", title: "Heartbeat vs bare route: latency tail", svg: tail,
      caption: "The same curves with the y axis in nines (50 %, 90 %, 99 %, 99.9 %…), so the slowest requests are as visible as the median; p50, p99 and p99.9 marked.",
    },
    {
      name: "latency-histogram", title: "Heartbeat vs bare route: latency distribution", svg: hist,
      caption: "Share of requests per latency bin (10 bins per decade, log scale): where the bulk sits and how far the tail reaches, heartbeat against bare route.",
    },
  ];
}

// ---------------------------------------------------------------------------------------------
// Rates over time from bucket counters

/** A display bucket of at least the recorded one, so that a span has at most ~150 of them. */
function displayBucketMs(spanMs: number, recordedMs: number): number {
  for (const b of [100, 200, 250, 500, 1000, 2000, 5000, 10_000, 30_000, 60_000]) if (b >= recordedMs && spanMs / b <= 150) return b;
  return 60_000;
}

/** Per-second rate of one kind, as steps from its first to its last event, x in s after `zeroMs`. */
function rateSteps(t: TimelineData, kind: string, zeroMs: number, binMs: number): [number, number][] {
  const c = t.counts[kind] ?? [];
  const merge = Math.max(1, Math.round(binMs / t.bucketMs));
  const first = c.findIndex((v) => v > 0);
  if (first < 0) return [];
  let last = c.length - 1;
  while (last > first && c[last] === 0) last--;
  const pts: [number, number][] = [];
  const xOf = (bucket: number) => (t.originMs + bucket * t.bucketMs - zeroMs) / 1000;
  // Bins aligned on the timeline's origin, so every kind shares the same bin edges.
  const b0 = Math.floor(first / merge);
  const b1 = Math.floor(last / merge);
  pts.push([xOf(b0 * merge), 0]);
  for (let b = b0; b <= b1; b++) {
    let n = 0;
    for (let i = b * merge; i < (b + 1) * merge && i < c.length; i++) n += c[i]!;
    pts.push([xOf(b * merge), (n * 1000) / (merge * t.bucketMs)]);
  }
  const endX = xOf((b1 + 1) * merge);
  pts.push([endX, pts.at(-1)![1]], [endX, 0]);
  return pts;
}

function spanMs(t: TimelineData): number {
  const len = Math.max(0, ...Object.values(t.counts).map((c) => c.length));
  return len * t.bucketMs;
}

/** Kinds sorted by total (largest first), at most `max`, the rest summed as "other". */
function topKinds(t: TimelineData, prefix: string, max: number): { kinds: string[]; merged: TimelineData } {
  const kinds = Object.keys(t.counts).filter((k) => k.startsWith(prefix));
  const total = (k: string) => t.counts[k]!.reduce((a, b) => a + b, 0);
  kinds.sort((a, b) => total(b) - total(a));
  if (kinds.length <= max) return { kinds, merged: t };
  const keep = kinds.slice(0, max - 1);
  const other: number[] = [];
  for (const k of kinds.slice(max - 1)) t.counts[k]!.forEach((v, i) => (other[i] = (other[i] ?? 0) + v));
  const name = `${prefix}other`;
  return { kinds: [...keep, name], merged: { ...t, counts: { ...t.counts, [name]: Array.from(other, (v) => v ?? 0) } } };
}

// ---------------------------------------------------------------------------------------------
// Registrations and handshakes

function registrationChart(reg: NonNullable<RunSeries["registration"]>, r: Figures): Chart {
  const t = reg.completions;
  const bin = displayBucketMs(spanMs(t), t.bucketMs);
  const series: SeriesSpec[] = [
    { name: "bare TLS handshakes (timed)", points: rateSteps(t, "handshake", reg.startMs, bin), color: RED, kind: "step" },
    { name: "registrations (timed)", points: rateSteps(t, "registration", reg.startMs, bin), color: BLUE, kind: "step" },
    { name: "registrations (rest of the fleet, untimed)", points: rateSteps(t, "registration (rest)", reg.startMs, bin), color: PALETTE[2], kind: "step", dash: true },
  ];
  const svg = renderChart({
    title: "Registrations and bare TLS handshakes over time",
    subtitle:
      `${formatNumber(num(r, "registrations_measured"))} registrations (CSR → certificate → JWT → HMAC key) against as many bare handshakes, interleaved H R H R, ` +
      `${formatNumber(num(r, "registration_concurrency"))} in flight; ${formatNumber(num(r, "registrations_per_s"))}/s vs ${formatNumber(num(r, "handshakes_per_s"))}/s ` +
      `(ratio ${formatNumber(num(r, "registration_ratio_vs_handshake"))})`,
    x: { label: "time since the first timed handshake (s)", min: 0 },
    panels: [{ y: { label: "completed per second", min: 0 }, series, empty: "no registrations or handshakes completed", height: 280 }],
    notes: [`each step: completions in one ${bin >= 1000 ? `${bin / 1000} s` : `${bin} ms`} bucket, as a per-second rate`],
  });
  return {
    name: "registrations", title: "Registrations and handshakes over time", svg,
    caption: "Completed registrations and bare TLS handshakes per second through the phase: the timed halves alternate (handshakes, registrations, handshakes, registrations), then the rest of the fleet registers untimed.",
  };
}

// ---------------------------------------------------------------------------------------------
// Restart storm

/** Cumulative count of sorted times, sampled at ≤ 800 evenly spaced x (plus both ends) so 10,000 executors stay a small path. */
function cumulativePoints(sorted: number[], until: number): [number, number][] {
  if (sorted.length === 0) return [];
  const end = Math.max(until, sorted.at(-1)!);
  const steps = 800;
  const pts: [number, number][] = [[0, 0]];
  let k = 0;
  for (let i = 1; i <= steps; i++) {
    const x = (end * i) / steps;
    while (k < sorted.length && sorted[k]! <= x) k++;
    pts.push([x, k]);
  }
  return pts;
}

function stormChart(s: NonNullable<RunSeries["storm"]>, r: Figures): Chart {
  const recovery = num(r, "restart_recovery_s");
  const all = s.recoveredS.length === s.armed;
  const end = Math.max(...[recovery, s.listeningS, s.recoveredS.at(-1) ?? 0].filter(Number.isFinite));
  const { kinds, merged } = topKinds(s.failures, "", 5);
  const bin = displayBucketMs(Math.max(spanMs(merged), end * 1000), merged.bucketMs);
  const failures: SeriesSpec[] = kinds.map((k, i) => ({
    name: `failed: ${k}`, points: rateSteps(merged, k, s.termMs, bin), color: PALETTE[(i + 1) % PALETTE.length], kind: "step",
  }));
  const svg = renderChart({
    title: "Restart storm: executors heartbeating again after the controller restarts",
    subtitle:
      `SIGTERM at 0 s with ${formatNumber(s.armed)} executors connected; restarted on the same data dir and port; ` +
      `every executor back after ${formatNumber(recovery)} s, ${formatNumber(num(r, "reenrollments"))} had to enroll again`,
    x: { label: "time since SIGTERM (s)", min: 0, unit: "s" },
    panels: [
      {
        y: { label: "executors heartbeating again", min: 0 },
        series: [{ name: "executors recovered (first successful heartbeat)", points: cumulativePoints(s.recoveredS, end), color: BLUE }],
        hlines: [{ y: s.armed, label: `${formatNumber(s.armed)} executors` }],
        empty: "no executor recovered",
        height: 260,
      },
      {
        y: { label: "failed attempts per second", min: 0 },
        series: failures,
        empty: "no failed reconnect attempts",
        height: 170,
      },
    ],
    events: [
      { x: s.exitS, label: "old process exited" },
      { x: s.listeningS, label: "new process listening" },
      ...(all && Number.isFinite(recovery) ? [{ x: recovery, label: "every executor back" }] : []),
    ],
    notes: [
      `executors reconnect with the daemon's backoff (0.5 s base, ×2, 30 s cap, jitter) and its 10 s connect timeout; failed attempts in ${bin >= 1000 ? `${bin / 1000} s` : `${bin} ms`} buckets`,
    ],
  });
  return {
    name: "restart-storm", title: "Restart storm: executors recovered over time", svg,
    caption: "After SIGTERM the controller restarts on the same data dir and port; the top panel counts executors whose first heartbeat succeeded again, the bottom one their failed reconnect attempts per second by error (refused while down, timeouts while overloaded).",
  };
}

// ---------------------------------------------------------------------------------------------
// Rotation under load

const REQUEST_NAMES: Record<string, string> = {
  "ok:heartbeat": "heartbeats",
  "ok:bundle": "trust bundle fetches",
  "ok:certificate renewal": "certificate renewals (new CSR)",
  "ok:jwt renewal": "JWT renewals",
};

function rotationChart(rot: NonNullable<RunSeries["rotation"]>, r: Figures): Chart {
  const t = rot.outcomes;
  const span = Math.max(spanMs(t), ...rot.steps.map((s) => s.atMs - t.originMs));
  const bin = displayBucketMs(span, t.bucketMs);
  const okKinds = Object.keys(REQUEST_NAMES).filter((k) => t.counts[k]);
  const ok: SeriesSpec[] = okKinds.map((k, i) => ({ name: REQUEST_NAMES[k]!, points: rateSteps(t, k, rot.startMs, bin), color: PALETTE[[0, 2, 4, 5][i] ?? 6], kind: "step" }));
  const { kinds, merged } = topKinds(t, "failed:", 5);
  const failed: SeriesSpec[] = kinds.map((k, i) => ({
    name: `failed: ${k.slice("failed:".length)}`, points: rateSteps(merged, k, rot.startMs, bin), color: [RED, PALETTE[3]!, PALETTE[6]!, PALETTE[7]!, PALETTE[4]!][i], kind: "step",
  }));
  const failedTotal = num(r, "rotation_failed_requests");
  const svg = renderChart({
    title: "Rotation under load: the executors' requests while the JWT key and the CA rotate",
    subtitle:
      `${formatNumber(num(r, "heartbeat_offered_per_s"))} heartbeats/s offered over ${formatNumber(num(r, "executors"))} executors; failed requests ${formatNumber(failedTotal)} ` +
      `of ${formatNumber(num(r, "rotation_requests"))}; fleet on the new CA ${formatNumber(num(r, "rotation_fleet_moved_s"))} s after the activation`,
    x: { label: "time since the phase started (s)", min: 0, unit: "s" },
    panels: [
      { y: { label: "answered (2xx) per second", min: 0 }, series: ok, empty: "no request answered", height: 260 },
      { y: { label: "failed per second", min: 0 }, series: failed, empty: "no failed requests", height: 150 },
    ],
    events: rot.steps.filter((s) => s.atMs > 0).map((s) => ({ x: (s.atMs - rot.startMs) / 1000, label: s.label })),
    notes: [
      `requests counted when their answer (or failure) arrived, in ${bin >= 1000 ? `${bin / 1000} s` : `${bin} ms`} buckets` +
        (rot.unanswered ? `; ${formatNumber(rot.unanswered)} still unanswered when the phase stopped (counted as failed, not drawn)` : ""),
    ],
  });
  return {
    name: "rotation", title: "Rotation phase: request outcomes over time", svg,
    caption: "Every request the simulated executors made during the rotation phase, per second by kind (top) and the failed ones by error code (bottom), with the operator's steps: JWT key rotated, CA prepared, every executor on the new bundle, CA activated, fleet moved to the new CA.",
  };
}
