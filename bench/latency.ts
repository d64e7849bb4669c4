/**
 * Phase 2 of bench/run.ts: heartbeats (or the bare route) on a fixed open-loop timetable
 * (`--rate` over all N executors), latency measured from the scheduled send time, with the
 * generator's own lag and the machine's timer noise next to it.
 */
import {
  cores, fmtErrors, log, mergeCounts, mergeSorted, percentile, pgCores, startJitterProbe, startWindow, sumErrors, type AllWorkers, type Window,
} from "./harness.ts";
import { options } from "./options.ts";
import { logHistogram } from "./report-series.ts";

const { N, RATE } = options;

export async function openLoop(d: { all: AllWorkers; pid: number; profDir: string | undefined }, target: "heartbeat" | "bare", seconds: number) {
  const { all, profDir } = d;
  const startAt = Date.now() + 300;
  let latWin: (() => Window) | undefined;
  let latWnd: Window | undefined;
  const lt1 = setTimeout(() => {
    latWin = startWindow(d.pid);
    // For lining the phase up with a --cpu-prof profile (whose clock is CLOCK_MONOTONIC, in µs).
    if (profDir) log(`  ${target} latency phase starts at monotonic ${process.hrtime.bigint() / 1000n} µs`);
  }, startAt - Date.now());
  const lt2 = setTimeout(() => (latWnd = latWin?.()), startAt + seconds * 1000 - Date.now());
  const probe = startJitterProbe();
  const lat = await all<{
    sent: number; completed: number; queued: number; reconnects: number; outstanding: number; errors: Record<string, number>;
    latencies: Float64Array; lags: Float64Array; slow: [number, number][]; loopDelayP99Ms: number; loopDelayMaxMs: number;
  }>("openloop", (w) => ({ target, rate: (RATE * w.init.count) / N, startAt, durationMs: seconds * 1000, drainMs: 20_000, slowMs: 10 }));
  clearTimeout(lt1);
  clearTimeout(lt2);
  const jitter = await probe.stop();
  const wnd = latWnd ?? latWin?.() ?? { wallS: seconds, ctlCpuS: NaN, genCpuS: NaN, storeCpuS: NaN };
  const samples = mergeSorted(lat.map((r) => r.latencies));
  const lags = mergeSorted(lat.map((r) => r.lags));
  const errors = mergeCounts(lat.map((r) => r.errors));
  const outstanding = lat.reduce((a, r) => a + r.outstanding, 0);
  const last = (a: Float64Array) => (a.length ? a[a.length - 1]! : NaN);
  const out = {
    sent: lat.reduce((a, r) => a + r.sent, 0), ok: samples.length, errors: sumErrors(errors) + outstanding, wnd,
    p50: percentile(samples, 50), p99: percentile(samples, 99), p999: percentile(samples, 99.9), max: last(samples),
    lagP99: percentile(lags, 99), lagMax: last(lags), jitterP99: percentile(jitter, 99), jitterMax: last(jitter),
    /** For the report's latency charts (bench/report-charts.ts). */
    histogram: logHistogram(samples),
  };
  log(
    `${target} latency at ${RATE}/s offered over ${N} executors for ${seconds}s: ${out.ok}/${out.sent} ok, p50 ${out.p50.toFixed(2)} ms, ` +
      `p99 ${out.p99.toFixed(2)} ms, p99.9 ${out.p999.toFixed(2)} ms, max ${out.max.toFixed(2)} ms; controller ${cores(wnd.ctlCpuS, wnd.wallS)} cores, ` +
      `generator ${cores(wnd.genCpuS, wnd.wallS)} cores${pgCores(wnd.storeCpuS, wnd.wallS)}${fmtErrors(errors)}${outstanding ? `, ${outstanding} never answered` : ""}`,
  );
  log(
    `  generator send lag (sent − scheduled; part of the latency above): p99 ${out.lagP99.toFixed(2)} ms, max ${out.lagMax.toFixed(2)} ms; ` +
      `generator event-loop delay p99 ${Math.max(...lat.map((r) => r.loopDelayP99Ms)).toFixed(2)} ms, max ${Math.max(...lat.map((r) => r.loopDelayMaxMs)).toFixed(2)} ms`,
  );
  log(`  machine noise floor (an idle thread's 1 ms timer, how late it wakes): p99 ${out.jitterP99.toFixed(2)} ms, max ${out.jitterMax.toFixed(2)} ms`);
  // Where the slow answers (> 10 ms) were scheduled, in 100 ms buckets: one stall or many?
  const stalls = new Map<number, { n: number; worst: number }>();
  for (const r of lat) {
    for (const [at, l] of r.slow) {
      const b = Math.floor(at / 100) * 100;
      const st = stalls.get(b) ?? { n: 0, worst: 0 };
      st.n++;
      st.worst = Math.max(st.worst, l);
      stalls.set(b, st);
    }
  }
  if (stalls.size) {
    const worst = [...stalls.entries()].sort((a, b) => b[1].worst - a[1].worst).slice(0, 8).sort((a, b) => a[0] - b[0]);
    log(`  slowest moments (answers > 10 ms by scheduled time): ${worst.map(([b, st]) => `t+${(b / 1000).toFixed(1)}s ×${st.n} (worst ${st.worst.toFixed(0)} ms)`).join(", ")}`);
  }
  return out;
}
