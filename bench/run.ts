/**
 * `npm run bench -- [--executors N] [--duration S] [--json] …` — the benchmark harness.
 *
 * Starts a controller as its own process (`tether controller start --bench`, which is
 * refused in production), registers N simulated executors through the real /register
 * path, drives them from worker threads (bench/worker.ts) over their own keep-alive
 * mTLS connections, and reports, next to every figure, the CPU the controller used
 * (/proc/<pid>/stat) and the CPU the generator used (this process, all threads):
 *
 *   1. heartbeat throughput at saturation (full guard chain) vs the same server's
 *      unguarded baseline route on the same connections → heartbeat_ratio_vs_bare_tls
 *   2. heartbeat latency p50/p99/max at a fixed offered load, open loop → heartbeat_p99_ms
 *   3. controller RSS with N executors connected → rss_mb, executors
 *   4. registrations/s vs bare TLS handshakes/s → registration_ratio_vs_handshake
 *   5. restart storm: SIGTERM, start again on the same data dir and port, seconds until
 *      every executor heartbeats again → restart_recovery_s, reenrollments
 *   6. rotation under load (bench/rotation.ts) → rotation_failed_requests, rotation_fleet_moved_s
 *   7. with `--store postgres://…` only: revocation propagation across two replicas
 *      (bench/revocation.ts) → revocation_propagation_ms_p50/p99/max
 *
 * Alongside all of them, one real executor daemon is measured idle (`--daemon-idle S`,
 * bench/daemon-idle-phase.ts) → daemon_idle_rss_mb, daemon_idle_cpu_pct. With `--report DIR`
 * the phases' time series become charts: an HTML page and SVG files (bench/report.ts).
 *
 * `--store` (bench/store.ts) picks the controller's store: the embedded SQLite database
 * (default) or a database of the run's own on a PostgreSQL server; every phase runs the
 * same on both, and the JSON says which (`store`).
 *
 * Every figure is measured against a baseline in the same run (the machine is shared
 * and noisy). Progress goes to stderr; with --json the last stdout line is one JSON
 * object. Only 127.0.0.1 traffic; every loop is bounded in count and time.
 */
import { mkdtempSync, readFileSync, rmSync, mkdirSync } from "node:fs";
import { cpus, tmpdir, totalmem } from "node:os";
import { join } from "node:path";
import type { ControllerProcess } from "../tools/controller-process.ts";
import {
  cores, fmtErrors, GenWorker, log, mergeCounts, pgCores, procStatusMb, round, runStarted,
  startController, startWindow, sumErrors, withProgress, withTicker, type AllWorkers, type Window,
} from "./harness.ts";
import { options, parameters } from "./options.ts";
import { openLoop as openLoopPhase } from "./latency.ts";
import { rotationPhase } from "./rotation.ts";
import { benchMetrics } from "./metrics-scrape.ts";
import { restartStorm } from "./storm.ts";
import { revocationPhase } from "./revocation.ts";
import { openBenchStore, tetherCli, type BenchStore } from "./store.ts";
import { redactStoreUrl } from "../controller/store/store-url.ts";
import { startIdleDaemon } from "./daemon-idle-phase.ts";
import { mergeTimelines, type RunSeries, type TimelineData } from "./report-series.ts";
import { runMeta, writeReport } from "./report.ts";

const { N, DURATION_S, RATE, LATENCY_S, REGS, CONCURRENCY, REG_CONCURRENCY, W, RESTART_TIMEOUT_S, MAX_S } = options;
const hardDeadline = runStarted + MAX_S * 1000;

// ---------------------------------------------------------------------------------------------
// The run

/** The phases, with the idle-daemon measurement alongside; then the report, when asked for. */
async function main(): Promise<Record<string, number | string>> {
  const idle = startIdleDaemon(options.DAEMON_IDLE_S, options.DAEMON_IDLE_WARMUP_S);
  const series: RunSeries = {};
  let result: Record<string, number | string>;
  try {
    result = await phases(series);
  } catch (e) {
    await idle.abandon();
    throw e;
  }
  Object.assign(result, await idle.finish());
  result.total_s = round((Date.now() - runStarted) / 1000, 1);
  if (options.report) {
    const files = writeReport(options.report, { result, series, meta: runMeta(runStarted, process.argv.slice(2), parameters) });
    log(`report: ${files.length} files in ${options.report} (open ${files[0]})`);
  }
  return result;
}

/** Every phase against one controller; the time series for the report go into `series`. */
async function phases(series: RunSeries): Promise<Record<string, number | string>> {
  const root = mkdtempSync(join(tmpdir(), "tether-bench-"));
  const dataDir = join(root, "data");
  const profDir = options.cpuProf;
  if (profDir) mkdirSync(profDir, { recursive: true });
  let ctl: ControllerProcess | undefined;
  let store: BenchStore | undefined;
  let workers: GenWorker[] = [];
  const cleanup = async () => {
    await Promise.all(workers.map((w) => w.call("shutdown").catch(() => {})));
    await Promise.all(workers.map((w) => w.worker.terminate()));
    workers = [];
    if (ctl) await ctl.stop(20_000);
    await store?.close(options.keep).catch((e: unknown) => log(`dropping the run's database failed: ${(e as Error).message}`));
    if (!options.keep) rmSync(root, { recursive: true, force: true });
    else log(`data dir kept: ${dataDir}${store?.kind === "postgres" ? `; database kept: ${store.label}` : ""}`);
  };
  const onSignal = () => {
    log("interrupted");
    void cleanup().finally(() => process.exit(130));
  };
  process.once("SIGINT", onSignal);
  process.once("SIGTERM", onSignal);
  const watchdog = setTimeout(() => {
    log(`--max-seconds ${MAX_S} exceeded; aborting`);
    void cleanup().finally(() => process.exit(3));
  }, MAX_S * 1000);
  watchdog.unref();

  try {
    log(`machine: ${cpus().length} × ${cpus()[0]?.model ?? "?"}, ${(totalmem() / 2 ** 30).toFixed(1)} GiB, node ${process.version}`);
    log(`executors ${N}, duration ${DURATION_S}s, latency ${LATENCY_S}s at ${RATE}/s, registrations timed ${REGS}, workers ${W}`);
    log(
      `controller: heartbeat interval ${options.HEARTBEAT_INTERVAL_S}s, JWT lifetime ${options.JWT_TTL_S}s; ` +
        `rotation phase ${options.ROTATION ? "on" : "off (--no-rotation)"}`,
    );
    store = await openBenchStore(options.STORE_URL, root, dataDir);
    const metrics = await benchMetrics(options.METRICS);
    const storeArgs = [...store.controllerArgs, ...metrics.controllerArgs];
    log(
      store.kind === "postgres"
        ? `store: PostgreSQL, database ${store.label} made for this run on ${redactStoreUrl(options.STORE_URL)}${options.keep ? " (kept: --keep)" : " (dropped at the end)"}`
        : "store: SQLite (embedded, in the data dir)",
    );
    ctl = await startController(dataDir, 0, profDir, storeArgs);
    const port = ctl.port;
    log(`controller pid ${ctl.pid} listening on ${ctl.url}${profDir ? ` (cpu profiles → ${profDir})` : ""}`);
    metrics.start();
    const token = tetherCli(store, ["token", "create", "--uses", String(N), "--ttl", "2h"]);
    const caPem = readFileSync(join(dataDir, "ca.pem"), "utf8");

    // Generator threads, each with a shard of executors.
    const module = new URL("./worker.ts", import.meta.url).href;
    for (let i = 0; i < W; i++) {
      const start = Math.floor((i * N) / W);
      const end = Math.floor(((i + 1) * N) / W);
      workers.push(new GenWorker({ module, port, caPem, index: i, workers: W, start, count: end - start }));
    }
    const all: AllWorkers = <T = any>(cmd: string, args: (w: GenWorker, i: number) => unknown = () => ({})) =>
      Promise.all(workers.map((w, i) => w.call<T>(cmd, args(w, i))));
    const deadline = (s: number) => Math.min(hardDeadline, Date.now() + s * 1000);
    const share = (total: number, i: number) => Math.floor(((i + 1) * total) / W) - Math.floor((i * total) / W);

    // ── 0. keys and CSRs, made before anything is timed ────────────────────────────────
    let t = Date.now();
    const csr = await withProgress(workers, "csr", N, all<{ made: number }>("gencsr", () => ({ deadline: deadline(600), second: options.ROTATION })));
    const csrs = csr.reduce((a, r) => a + r.made, 0);
    if (csrs !== N) throw new Error(`only ${csrs}/${N} CSRs generated in time`);
    log(`pre-generated ${N}${options.ROTATION ? " × 2 (one for the rotation phase's renewal)" : ""} Ed25519 keys + CSRs (executor/csr.ts) in ${((Date.now() - t) / 1000).toFixed(1)}s — not timed`);

    // ── 4. registration rate vs bare TLS handshake rate (interleaved: H R H R) ─────────
    const regPerWorker = workers.map((w, i) => Math.min(w.init.count, share(REGS, i)));
    const regConc = (i: number) => Math.max(1, share(REG_CONCURRENCY, i));
    const hs = { ok: 0, wall: 0, ctl: 0, gen: 0, errors: [] as Record<string, number>[] };
    const rg = { ok: 0, wall: 0, ctl: 0, gen: 0, errors: [] as Record<string, number>[] };
    const completions: TimelineData[] = [];
    const regStartMs = Date.now();
    for (let half = 0; half < 2; half++) {
      let win = startWindow(ctl.pid);
      const h = await all<{ ok: number; errors: Record<string, number>; timeline: TimelineData }>("handshakes", (w, i) => ({
        count: half === 0 ? Math.floor(regPerWorker[i]! / 2) : regPerWorker[i]! - Math.floor(regPerWorker[i]! / 2),
        concurrency: regConc(i), deadline: deadline(300),
      }));
      let wnd = win();
      hs.ok += h.reduce((a, r) => a + r.ok, 0);
      hs.wall += wnd.wallS;
      hs.ctl += wnd.ctlCpuS;
      hs.gen += wnd.genCpuS;
      hs.errors.push(...h.map((r) => r.errors));
      completions.push(...h.map((r) => r.timeline));

      win = startWindow(ctl.pid);
      const r = await all<{ ok: number; errors: Record<string, number>; timeline: TimelineData }>("register", (w, i) => {
        const from = half === 0 ? 0 : Math.floor(regPerWorker[i]! / 2);
        const to = half === 0 ? Math.floor(regPerWorker[i]! / 2) : regPerWorker[i]!;
        return { token, from, to, concurrency: regConc(i), deadline: deadline(600) };
      });
      wnd = win();
      rg.ok += r.reduce((a, x) => a + x.ok, 0);
      rg.wall += wnd.wallS;
      rg.ctl += wnd.ctlCpuS;
      rg.gen += wnd.genCpuS;
      rg.errors.push(...r.map((x) => x.errors));
      completions.push(...r.map((x) => x.timeline));
    }
    const handshakesPerS = hs.ok / hs.wall;
    const registrationsPerS = rg.ok / rg.wall;
    log(
      `handshakes: ${hs.ok} in ${hs.wall.toFixed(2)}s = ${handshakesPerS.toFixed(0)}/s, controller ${cores(hs.ctl, hs.wall)} cores ` +
        `(${((hs.ctl / hs.ok) * 1000).toFixed(2)} ms CPU each), generator ${cores(hs.gen, hs.wall)} cores${fmtErrors(mergeCounts(hs.errors))}`,
    );
    log(
      `registrations: ${rg.ok} in ${rg.wall.toFixed(2)}s = ${registrationsPerS.toFixed(0)}/s, controller ${cores(rg.ctl, rg.wall)} cores ` +
        `(${((rg.ctl / rg.ok) * 1000).toFixed(2)} ms CPU each), generator ${cores(rg.gen, rg.wall)} cores${fmtErrors(mergeCounts(rg.errors))}`,
    );

    // The rest of the fleet, untimed for the ratio but reported.
    t = Date.now();
    let fleetWin = startWindow(ctl.pid);
    const rest = await withProgress(
      workers, "register", N - REGS,
      all<{ ok: number; errors: Record<string, number>; timeline: TimelineData }>("register", (w, i) => ({
        token, from: regPerWorker[i]!, to: w.init.count, concurrency: regConc(i), deadline: deadline(3000), kind: "registration (rest)",
      })),
    );
    series.registration = { startMs: regStartMs, completions: mergeTimelines([...completions, ...rest.map((r) => r.timeline)]) };
    const fleet = fleetWin();
    const registered = rg.ok + rest.reduce((a, r) => a + r.ok, 0);
    if (N > REGS) {
      log(
        `registered the remaining ${N - REGS} in ${fleet.wallS.toFixed(1)}s (${((N - REGS) / fleet.wallS).toFixed(0)}/s, controller ${((fleet.ctlCpuS / Math.max(1, N - REGS)) * 1000).toFixed(2)} ms CPU each)${fmtErrors(mergeCounts(rest.map((r) => r.errors)))}`,
      );
    }
    if (registered < N) throw new Error(`only ${registered}/${N} executors registered`);

    // ── connect: every executor opens its own keep-alive mTLS connection ─────────────
    // From here on, connected executors heartbeat every interval between measured phases (like real ones).
    await all("keepalive", () => ({ on: true, intervalMs: options.HEARTBEAT_INTERVAL_S * 1000 }));
    fleetWin = startWindow(ctl.pid);
    if (profDir) log(`  connect phase starts at monotonic ${process.hrtime.bigint() / 1000n} µs`);
    const conn = await withProgress(workers, "connect", N, all<{ ok: number; open: number; errors: Record<string, number> }>("connect", (w, i) => ({
      concurrency: Math.max(1, share(64, i)), deadline: deadline(900),
    })));
    const cw = fleetWin();
    const connectedOk = conn.reduce((a, r) => a + r.ok, 0);
    log(
      `connected ${connectedOk}/${N} executors (mTLS handshake + first heartbeat) in ${cw.wallS.toFixed(1)}s, ` +
        `controller ${((cw.ctlCpuS / Math.max(1, connectedOk)) * 1000).toFixed(2)} ms CPU each${fmtErrors(mergeCounts(conn.map((r) => r.errors)))}`,
    );
    const rssConnected = procStatusMb(ctl.pid, "VmRSS");
    log(`controller RSS with ${connectedOk} executors connected: ${rssConnected.toFixed(0)} MB`);
    if (options.stopAfter === "connect") {
      return { executors: connectedOk, rss_mb: round(rssConnected, 0), connect_controller_cpu_ms_each: round((cw.ctlCpuS / Math.max(1, connectedOk)) * 1000, 2) };
    }

    // ── 1. throughput at saturation: bare baseline vs full guard chain (B H H B) ───────
    const perWorkerConc = (i: number) => Math.max(1, share(CONCURRENCY, i));
    const saturate = async (target: "heartbeat" | "bare", seconds: number, measured: boolean) => {
      const startAt = Date.now() + 50;
      const measureFrom = startAt + (measured ? 300 : 0);
      const measureTo = measureFrom + seconds * 1000;
      let win: (() => Window) | undefined;
      let wnd: Window | undefined;
      const t1 = setTimeout(() => {
        win = startWindow(ctl!.pid);
        if (profDir && measured) log(`  ${target} segment (${seconds}s) starts at monotonic ${process.hrtime.bigint() / 1000n} µs`);
      }, measureFrom - Date.now());
      const t2 = setTimeout(() => (wnd = win?.()), measureTo - Date.now());
      const res = await all<{ ok: number; all: number; reconnects: number; errors: Record<string, number> }>("saturate", (w, i) => ({
        target, concurrency: perWorkerConc(i), startAt, measureFrom, measureTo,
      }));
      clearTimeout(t1);
      clearTimeout(t2);
      wnd ??= win?.() ?? { wallS: seconds, ctlCpuS: NaN, genCpuS: NaN, storeCpuS: NaN };
      return { ok: res.reduce((a, r) => a + r.ok, 0), errors: mergeCounts(res.map((r) => r.errors)), reconnects: res.reduce((a, r) => a + r.reconnects, 0), wnd, seconds };
    };
    await saturate("heartbeat", Math.min(2, DURATION_S), false); // warm-up (JIT, caches), not counted
    const seg = DURATION_S / 2;
    const acc0 = () => ({ ok: 0, s: 0, ctl: 0, gen: 0, store: 0, errors: [] as Record<string, number>[] });
    const sat = { heartbeat: acc0(), bare: acc0() };
    for (const target of ["bare", "heartbeat", "heartbeat", "bare"] as const) {
      const r = await saturate(target, seg, true);
      const acc = sat[target];
      acc.ok += r.ok;
      acc.s += r.seconds;
      acc.ctl += r.wnd.ctlCpuS;
      acc.gen += r.wnd.genCpuS;
      acc.store += r.wnd.storeCpuS;
      acc.errors.push(r.errors);
      log(
        `  ${target.padEnd(9)} ${(r.ok / r.seconds).toFixed(0).padStart(6)}/s  controller ${cores(r.wnd.ctlCpuS, r.wnd.wallS)} cores, ` +
          `generator ${cores(r.wnd.genCpuS, r.wnd.wallS)} cores${pgCores(r.wnd.storeCpuS, r.wnd.wallS)}${fmtErrors(r.errors)}`,
      );
    }
    const hbPerS = sat.heartbeat.ok / sat.heartbeat.s;
    const barePerS = sat.bare.ok / sat.bare.s;
    const hbErrors = mergeCounts(sat.heartbeat.errors);
    log(
      `heartbeat ${hbPerS.toFixed(0)}/s vs bare ${barePerS.toFixed(0)}/s → ratio ${(hbPerS / barePerS).toFixed(3)} (concurrency ${CONCURRENCY}); ` +
        `controller CPU per request ${((sat.heartbeat.ctl / Math.max(1, sat.heartbeat.ok)) * 1e6).toFixed(0)} µs vs ${((sat.bare.ctl / Math.max(1, sat.bare.ok)) * 1e6).toFixed(0)} µs` +
        (Number.isFinite(sat.heartbeat.store) ? `; PostgreSQL server CPU per heartbeat ${((sat.heartbeat.store / Math.max(1, sat.heartbeat.ok)) * 1e6).toFixed(0)} µs` : ""),
    );

    // ── 2. latency at a fixed offered load, open loop ───────────────────────────────────
    // The same timetable against the unguarded route first (a shorter baseline), then the heartbeat.
    const openLoop = (target: "heartbeat" | "bare", seconds: number) => openLoopPhase({ all, pid: ctl!.pid, profDir }, target, seconds);
    const bareLat = await openLoop("bare", Math.min(LATENCY_S, 5));
    const hbLat = await openLoop("heartbeat", LATENCY_S);
    series.latency = { heartbeat: hbLat.histogram, bare: bareLat.histogram };

    // ── 3. RSS with every executor connected ─────────────────────────────────────────────
    const status = await all<{ registered: number; open: number }>("status");
    const executorsConnected = status.reduce((a, s) => a + s.open, 0);
    const rssMb = procStatusMb(ctl.pid, "VmRSS");
    const rssPeakMb = procStatusMb(ctl.pid, "VmHWM");
    const genRssMb = process.memoryUsage().rss / 2 ** 20;
    log(`controller RSS ${rssMb.toFixed(0)} MB (peak ${rssPeakMb.toFixed(0)} MB) with ${executorsConnected} executors connected; generator RSS ${genRssMb.toFixed(0)} MB`);

    // ── 5. restart storm (bench/storm.ts) ────────────────────────────────────────────────
    const storm = await restartStorm({
      ctl, all,
      restart: () => startController(dataDir, port, profDir, storeArgs),
      onRestarted: (next) => (ctl = next),
      deadline: (tTerm) => Math.min(hardDeadline, tTerm + RESTART_TIMEOUT_S * 1000),
    });
    series.storm = storm.series;

    // ── 6. rotation under load: JWT key, CA rotate + activate, the fleet renews ──────────
    const rotation = options.ROTATION ? await rotationPhase({ ctl, store, caPem, all, N }) : undefined;
    if (rotation) series.rotation = rotation.series;
    const jwtRenewals = (await all<{ jwtRenewals: number }>("status")).reduce((a, s) => a + s.jwtRenewals, 0);

    // ── 7. revocation propagation across two replicas (a shared store only) ───────────────
    let revocation: Record<string, number> = {};
    if (store.kind !== "postgres") {
      log("revocation propagation: absent — it needs two replicas on one shared store (--store postgres://…); the SQLite store serves one controller process");
    } else if (options.REVOCATIONS === 0) {
      log("revocation propagation: skipped (--revocations 0)");
    } else {
      const s = store;
      revocation = await withTicker("revocation", revocationPhase({
        store: s, ctl, dataDir, root, K: options.REVOCATIONS,
        startReplica: (dir) => startController(dir, 0, undefined, s.controllerArgs),
      }));
    }

    const result: Record<string, number | string> = {
      store: store.kind,
      ...metrics.result(),
      executors: executorsConnected,
      executors_requested: N,
      heartbeat_per_s: round(hbPerS, 0),
      bare_tls_per_s: round(barePerS, 0),
      heartbeat_ratio_vs_bare_tls: round(hbPerS / barePerS, 3),
      // The same ratio in controller CPU per request: steadier on a shared machine, where
      // "saturation" can be the whole machine's rather than the controller's.
      heartbeat_cpu_ratio_vs_bare_tls: round(sat.bare.ctl / Math.max(1, sat.bare.ok) / (sat.heartbeat.ctl / Math.max(1, sat.heartbeat.ok)), 3),
      heartbeat_concurrency: CONCURRENCY,
      heartbeat_errors: sumErrors(hbErrors),
      heartbeat_controller_cpu_cores: cores(sat.heartbeat.ctl, sat.heartbeat.s),
      heartbeat_generator_cpu_cores: cores(sat.heartbeat.gen, sat.heartbeat.s),
      heartbeat_controller_cpu_us_each: round((sat.heartbeat.ctl / Math.max(1, sat.heartbeat.ok)) * 1e6, 0),
      ...(store.kind === "postgres" && Number.isFinite(sat.heartbeat.store)
        ? {
            heartbeat_store_cpu_cores: cores(sat.heartbeat.store, sat.heartbeat.s),
            heartbeat_store_cpu_us_each: round((sat.heartbeat.store / Math.max(1, sat.heartbeat.ok)) * 1e6, 0),
            bare_store_cpu_cores: cores(sat.bare.store, sat.bare.s),
            latency_store_cpu_cores: cores(hbLat.wnd.storeCpuS, hbLat.wnd.wallS),
          }
        : {}),
      bare_controller_cpu_cores: cores(sat.bare.ctl, sat.bare.s),
      bare_generator_cpu_cores: cores(sat.bare.gen, sat.bare.s),
      bare_controller_cpu_us_each: round((sat.bare.ctl / Math.max(1, sat.bare.ok)) * 1e6, 0),
      heartbeat_offered_per_s: RATE,
      latency_duration_s: LATENCY_S,
      latency_samples: hbLat.ok,
      latency_errors: hbLat.errors,
      heartbeat_p50_ms: round(hbLat.p50, 2),
      heartbeat_p99_ms: round(hbLat.p99, 2),
      heartbeat_p999_ms: round(hbLat.p999, 2),
      heartbeat_max_ms: round(hbLat.max, 2),
      latency_controller_cpu_cores: cores(hbLat.wnd.ctlCpuS, hbLat.wnd.wallS),
      latency_generator_cpu_cores: cores(hbLat.wnd.genCpuS, hbLat.wnd.wallS),
      generator_send_lag_p99_ms: round(hbLat.lagP99, 2),
      generator_send_lag_max_ms: round(hbLat.lagMax, 2),
      timer_jitter_p99_ms: round(hbLat.jitterP99, 2),
      timer_jitter_max_ms: round(hbLat.jitterMax, 2),
      bare_p50_ms: round(bareLat.p50, 2),
      bare_p99_ms: round(bareLat.p99, 2),
      bare_max_ms: round(bareLat.max, 2),
      bare_latency_errors: bareLat.errors,
      rss_mb: round(rssMb, 0),
      rss_peak_mb: round(rssPeakMb, 0),
      rss_after_connect_mb: round(rssConnected, 0),
      generator_rss_mb: round(genRssMb, 0),
      csrs_pregenerated: csrs,
      registrations_measured: rg.ok,
      registrations_per_s: round(registrationsPerS, 1),
      handshakes_per_s: round(handshakesPerS, 1),
      registration_ratio_vs_handshake: round(registrationsPerS / handshakesPerS, 3),
      registration_cpu_ratio_vs_handshake: round(hs.ctl / Math.max(1, hs.ok) / (rg.ctl / Math.max(1, rg.ok)), 3),
      registration_concurrency: REG_CONCURRENCY,
      registration_errors: sumErrors(mergeCounts(rg.errors)),
      registration_controller_cpu_ms_each: round((rg.ctl / Math.max(1, rg.ok)) * 1000, 2),
      registration_controller_cpu_cores: cores(rg.ctl, rg.wall),
      registration_generator_cpu_cores: cores(rg.gen, rg.wall),
      handshake_controller_cpu_ms_each: round((hs.ctl / Math.max(1, hs.ok)) * 1000, 2),
      handshake_controller_cpu_cores: cores(hs.ctl, hs.wall),
      handshake_generator_cpu_cores: cores(hs.gen, hs.wall),
      ...storm.figures,
      heartbeat_interval_s: options.HEARTBEAT_INTERVAL_S,
      jwt_ttl_s: options.JWT_TTL_S,
      jwt_renewals: jwtRenewals,
      ...rotation?.figures,
      ...revocation,
      controller_errors_logged: ctl.errorsLogged,
      total_s: round((Date.now() - runStarted) / 1000, 1),
    };
    return result;
  } catch (e) {
    if (ctl) log(`controller stderr (tail):\n${ctl.tail()}`);
    throw e;
  } finally {
    clearTimeout(watchdog);
    await cleanup();
    process.off("SIGINT", onSignal);
    process.off("SIGTERM", onSignal);
  }
}

const TARGETS: [string, (r: Record<string, number>) => boolean, string][] = [
  // Issue 15: 0.8 on SQLite, 0.6 on PostgreSQL (every request also costs a database round trip).
  ["heartbeat_ratio_vs_bare_tls", (r) => r.heartbeat_ratio_vs_bare_tls! >= ((r.store as unknown) === "postgres" ? 0.6 : 0.8), "≥ 0.8; ≥ 0.6 on PostgreSQL"],
  ["heartbeat_cpu_ratio_vs_bare_tls", (r) => r.heartbeat_cpu_ratio_vs_bare_tls! >= ((r.store as unknown) === "postgres" ? 0.6 : 0.8), "≥ 0.8; ≥ 0.6 on PostgreSQL"],
  ["heartbeat_p99_ms", (r) => r.heartbeat_p99_ms! <= 10 && r.heartbeat_p99_ms! <= 2 * r.bare_p99_ms!, "≤ 10 and ≤ 2 × bare_p99_ms (at 1,000/s, 10,000 executors)"],
  ["rss_mb", (r) => r.rss_mb! <= 1024, "≤ 1024 (at 10,000 executors)"],
  ["registration_ratio_vs_handshake", (r) => r.registration_ratio_vs_handshake! >= 0.5, "≥ 0.5"],
  ["restart_recovery_s", (r) => r.restart_recovery_s! <= 15, "≤ 15 (at 10,000 executors)"],
  ["reenrollments", (r) => r.reenrollments === 0, "= 0"],
  ["rotation_failed_requests", (r) => r.rotation_failed_requests === 0, "= 0"],
  ["revocation_propagation_ms_p99", (r) => r.revocation_propagation_ms_p99! <= 1000, "≤ 1000 (PROTOCOL §8: within 1 s)"],
  ["daemon_idle_rss_mb", (r) => r.daemon_idle_rss_mb! <= 80, "≤ 80 (one idle executor daemon)"],
  ["daemon_idle_cpu_pct", (r) => r.daemon_idle_cpu_pct! <= 0.2, "≤ 0.2 (% of one core)"],
];

main().then(
  (r) => {
    log("results (target in brackets; targets are goals, not assertions):");
    for (const [k, ok, target] of TARGETS) if (k in r) log(`  ${k.padEnd(34)} ${String(r[k]).padStart(10)}  [${target}] ${ok(r as Record<string, number>) ? "met" : "MISSED"}`);
    if (options.json) process.stdout.write(JSON.stringify(r) + "\n");
    process.exit(0);
  },
  (e: unknown) => {
    log(`FAILED: ${(e as Error)?.stack ?? String(e)}`);
    process.exit(1);
  },
);
