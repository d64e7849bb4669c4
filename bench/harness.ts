/**
 * The orchestrator's tools (bench/run.ts and its phases): the clock and log, CPU and
 * memory readers, the controller process, the generator threads and small statistics.
 */
import { spawnSync } from "node:child_process";
import { readdirSync, readFileSync } from "node:fs";
import { Worker } from "node:worker_threads";
import { ControllerProcess } from "../tools/controller-process.ts";
import { options } from "./options.ts";
import type { WorkerInit } from "./protocol.ts";

export const runStarted = Date.now();

export const log = (msg: string) => process.stderr.write(`[bench ${((Date.now() - runStarted) / 1000).toFixed(1).padStart(6)}s] ${msg}\n`);

// ---------------------------------------------------------------------------------------------
// /proc readers

const CLK_TCK = (() => {
  const r = spawnSync("getconf", ["CLK_TCK"], { encoding: "utf8" });
  const n = Number(r.stdout?.trim());
  return Number.isFinite(n) && n > 0 ? n : 100;
})();

/** utime + stime of a process, in seconds. */
export function procCpuS(pid: number): number {
  const s = readFileSync(`/proc/${pid}/stat`, "utf8");
  const f = s.slice(s.lastIndexOf(")") + 2).split(" ");
  return (Number(f[11]) + Number(f[12])) / CLK_TCK;
}

export function procStatusMb(pid: number, field: "VmRSS" | "VmHWM"): number {
  const m = new RegExp(`^${field}:\\s+(\\d+) kB`, "m").exec(readFileSync(`/proc/${pid}/status`, "utf8"));
  return m ? Number(m[1]) / 1024 : NaN;
}

/** CPU of this process (the generator: orchestrator + every worker thread), in seconds. */
export function genCpuS(): number {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1e6;
}

/**
 * CPU of the local PostgreSQL server in seconds: every process named `postgres` (the
 * postmaster, its backends and workers), each with its reaped children's time, so a
 * backend that exits mid-window still counts (its time moves to the postmaster's).
 * NaN unless the run's store is PostgreSQL on this machine. Counts whatever else uses
 * that server meanwhile, too (run the bench on an otherwise idle server).
 */
export function storeCpuS(): number {
  if (!localPostgres) return NaN;
  let sum = 0;
  for (const pid of readdirSync("/proc")) {
    if (!/^\d+$/.test(pid)) continue;
    try {
      const s = readFileSync(`/proc/${pid}/stat`, "utf8");
      if (!s.includes("(postgres)")) continue;
      const f = s.slice(s.lastIndexOf(")") + 2).split(" ");
      sum += Number(f[11]) + Number(f[12]) + Number(f[13]) + Number(f[14]);
    } catch {
      // gone meanwhile
    }
  }
  return sum / CLK_TCK;
}
const localPostgres = options.STORE === "postgres" && /^(127\.|localhost$|\[?::1\]?$)/.test(new URL(options.STORE_URL).hostname);

export interface Window {
  wallS: number;
  ctlCpuS: number;
  genCpuS: number;
  /** The PostgreSQL server's CPU (storeCpuS); NaN on SQLite (its work is in the controller's CPU). */
  storeCpuS: number;
}

export function startWindow(pid: number): () => Window {
  const t = performance.now();
  const c = procCpuS(pid);
  const g = genCpuS();
  const st = storeCpuS();
  return () => ({ wallS: (performance.now() - t) / 1000, ctlCpuS: procCpuS(pid) - c, genCpuS: genCpuS() - g, storeCpuS: storeCpuS() - st });
}

export const round = (x: number, d = 2) => (Number.isFinite(x) ? Math.round(x * 10 ** d) / 10 ** d : x);
export const cores = (cpuS: number, wallS: number) => round(cpuS / wallS, 2);
/** ", PostgreSQL server X cores" for a log line, when the store's CPU was measured (storeCpuS). */
export const pgCores = (cpuS: number, wallS: number) => (Number.isFinite(cpuS) ? `, PostgreSQL server ${cores(cpuS, wallS)} cores` : "");

// ---------------------------------------------------------------------------------------------
// The controller process

/**
 * The controller as the benchmark runs it (tools/controller-process.ts); `storeArgs` are
 * the run's `--store … --kek-file …` (bench/store.ts), empty for the embedded store.
 */
export function startController(dataDir: string, port: number, profDir: string | undefined, storeArgs: string[] = []): Promise<ControllerProcess> {
  return ControllerProcess.start({
    dataDir,
    port,
    nodeArgs: [
      ...(profDir ? ["--cpu-prof", `--cpu-prof-dir=${profDir}`] : []),
      // Extra node flags for the controller only, e.g. BENCH_CONTROLLER_NODE_ARGS="--trace-gc".
      ...(process.env.BENCH_CONTROLLER_NODE_ARGS?.split(/\s+/).filter(Boolean) ?? []),
    ],
    // --dev: the bench route and the lifted /register limit are refused in production.
    // --jwt-ttl: see options.ts (short enough for the rotation phase's JWT key rotation).
    args: [
      "--dev", "--bench", "--jwt-ttl", `${options.JWT_TTL_S}s`, "--heartbeat-interval", `${options.HEARTBEAT_INTERVAL_S}s`, ...storeArgs,
    ],
    logFile: options.controllerLog,
  });
}

// ---------------------------------------------------------------------------------------------
// Generator threads

export class GenWorker {
  private nextRpc = 1;
  private readonly calls = new Map<number, { resolve(v: any): void; reject(e: Error): void }>();
  readonly worker: Worker;
  readonly progress = new Map<string, number>();

  constructor(readonly init: WorkerInit) {
    this.worker = new Worker(new URL("./worker-entry.mjs", import.meta.url), { workerData: init });
    this.worker.on("message", (m: { rpc?: number; result?: unknown; error?: string; progress?: string; done?: number }) => {
      if (m.progress) {
        this.progress.set(m.progress, m.done ?? 0);
        return;
      }
      const c = this.calls.get(m.rpc!);
      if (!c) return;
      this.calls.delete(m.rpc!);
      if (m.error !== undefined) c.reject(new Error(`worker ${init.index}: ${m.error}`));
      else c.resolve(m.result);
    });
    this.worker.on("error", (e) => {
      for (const c of this.calls.values()) c.reject(e);
      this.calls.clear();
    });
  }

  call<T = any>(cmd: string, args: unknown = {}): Promise<T> {
    const rpc = this.nextRpc++;
    return new Promise<T>((resolve, reject) => {
      this.calls.set(rpc, { resolve, reject });
      this.worker.postMessage({ rpc, cmd, args });
    });
  }
}

/** The same command on every generator thread, with per-thread arguments. */
export type AllWorkers = <T = any>(cmd: string, args?: (w: GenWorker, i: number) => unknown) => Promise<T[]>;

/**
 * A thread that only sleeps 1 ms at a time and records how late it wakes: the
 * scheduling noise of this machine right now, the floor under every latency figure.
 */
export function startJitterProbe(): { stop(): Promise<Float64Array> } {
  const w = new Worker(
    `const { parentPort } = require("node:worker_threads");
     const lags = []; let last = performance.now(); let stop = false;
     parentPort.once("message", () => { stop = true; });
     const tick = () => {
       const now = performance.now(); lags.push(now - last - 1); last = now;
       if (!stop && lags.length < 2e6) setTimeout(tick, 1);
       else { const a = Float64Array.from(lags); parentPort.postMessage(a, [a.buffer]); }
     };
     setTimeout(tick, 1);`,
    { eval: true },
  );
  return {
    stop: () =>
      new Promise((resolve) => {
        w.once("message", (a: Float64Array) => {
          void w.terminate();
          resolve(a.sort());
        });
        w.postMessage("stop");
      }),
  };
}

export function mergeCounts(list: Record<string, number>[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const c of list) for (const [k, v] of Object.entries(c)) out[k] = (out[k] ?? 0) + v;
  return out;
}

export const sumErrors = (c: Record<string, number>) => Object.values(c).reduce((a, b) => a + b, 0);
export const fmtErrors = (c: Record<string, number>) => (Object.keys(c).length ? ` errors ${JSON.stringify(c)}` : "");
export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

export function percentile(sorted: Float64Array, p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))]!;
}

/** Concatenates sample arrays from the workers, sorted. */
export function mergeSorted(arrays: Float64Array[]): Float64Array {
  const out = new Float64Array(arrays.reduce((a, x) => a + x.length, 0));
  let off = 0;
  for (const x of arrays) {
    out.set(x, off);
    off += x.length;
  }
  return out.sort();
}

/** Shows a phase's progress (summed over workers) on stderr every 2 s while `work` runs. */
export async function withProgress<T>(workers: GenWorker[], phase: string, total: number, work: Promise<T>): Promise<T> {
  const t0 = Date.now();
  const timer = setInterval(() => {
    const done = workers.reduce((a, w) => a + (w.progress.get(phase) ?? 0), 0);
    const s = (Date.now() - t0) / 1000;
    log(`  ${phase}: ${done}/${total} (${(done / s).toFixed(0)}/s)`);
  }, 2000);
  try {
    return await work;
  } finally {
    clearInterval(timer);
    for (const w of workers) w.progress.delete(phase);
  }
}

/** A phase that reports nothing until it ends: a line every 5 s shows it is alive. */
export async function withTicker<T>(name: string, work: Promise<T>): Promise<T> {
  const t0 = Date.now();
  const timer = setInterval(() => log(`  ${name}: ${((Date.now() - t0) / 1000).toFixed(0)}s`), 5000);
  try {
    return await work;
  } finally {
    clearInterval(timer);
  }
}
