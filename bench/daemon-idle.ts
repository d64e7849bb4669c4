/**
 * One real executor daemon, idle: its resident memory and CPU over a window of S seconds.
 *
 * Starts a controller of its own (`tether controller start`, SQLite in a data dir under
 * `tmpDir`, 127.0.0.1 port 0, defaults otherwise: heartbeat interval 10 s, JWT 15 min,
 * certificate 24 h — tools/controller-process.ts), creates an enrollment token through the
 * CLI (`tether token create`), and starts ONE daemon the way an operator's service unit
 * does: `node bin/tether.mjs executor run --controller URL --ca-file … --state-dir …
 * --token-file …` (docs/examples/tether-executor.service; no --allow-command, so it takes
 * no tasks, and no metrics listener). The process measured is that node process itself:
 * bin/tether.mjs registers tsx's loader in it, so its RSS includes the loader's hooks
 * thread and everything loaded to run TypeScript without a build step. `npx tether`
 * would add npm's own node process in front of it (not measured: the documented unit runs
 * node directly). Processes the daemon starts (tsx's esbuild service, when a module had
 * to be compiled because tsx's cache in $TMPDIR was cold — e.g. under PrivateTmp=yes)
 * are measured separately and logged, not added to the figures.
 *
 * Once the daemon logged `ready` (registered, first heartbeat answered) and a warm-up
 * passed, /proc/<pid>/status VmRSS and /proc/<pid>/stat utime+stime (all threads) are
 * sampled every few seconds for `seconds`:
 *
 *   daemon_idle_rss_mb   the MAXIMUM VmRSS sampled in the window (MiB) — what the host
 *                        must have for it, not a lucky sample taken right after a GC
 *   daemon_idle_cpu_pct  CPU seconds used in the window / wall seconds × 100 (% of one core)
 *   daemon_idle_s        the window's wall seconds
 *
 * Used by bench/run.ts (`--daemon-idle S`, alongside the other phases: nothing here blocks
 * the event loop) and on its own:
 *
 *   node --import tsx bench/daemon-idle.ts --seconds 600 [--json] [--cli-root DIR] …  (--help)
 */
import { spawn, execFile, type ChildProcess } from "node:child_process";
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { pathToFileURL } from "node:url";
import { parseArgs } from "node:util";
import { ControllerProcess, isolatedEnv, TETHER_BIN } from "../tools/controller-process.ts";

export interface DaemonIdleFigures {
  daemon_idle_rss_mb: number;
  daemon_idle_cpu_pct: number;
  daemon_idle_s: number;
}

export interface DaemonIdleOptions {
  /** Length of the measured window. */
  seconds: number;
  /** Scratch space: a directory of this run's own is made in it (and removed at the end). */
  tmpDir: string;
  log: (line: string) => void;
  /** The tree whose CLI starts the daemon (default: this one); the controller is always this tree's. */
  cliRoot?: string;
  /**
   * Seconds between `ready` and the window's start (default 45): V8's memory reducer
   * collects the start-up garbage in a few GCs over the first ~30 s of idleness.
   */
  warmupS?: number;
  /** Seconds between samples (default 2). */
  sampleS?: number;
  /** More `executor run` options, e.g. ["--allow-command", "true"]. */
  daemonArgs?: string[];
  /** Node flags for the daemon's process (before bin/tether.mjs). */
  daemonNodeArgs?: string[];
  /** Run the daemon with an empty $TMPDIR, as under systemd's PrivateTmp=yes: tsx compiles every module again. */
  coldTsxCache?: boolean;
  /** Called with every sample (standalone mode prints them). */
  onSample?: (s: Sample) => void;
}

export interface Sample {
  /** Seconds since the window started. */
  t: number;
  rssMb: number;
  cpuS: number;
  /** The daemon's descendants (e.g. an esbuild service), summed. */
  childRssMb: number;
  childCpuS: number;
  children: number;
}

/** Everything measured; finish() resolves the three bench figures of it. */
export interface DaemonIdleDetail extends DaemonIdleFigures {
  pid: number;
  rss_min_mb: number;
  rss_last_mb: number;
  /** At the end: the anonymous part (heaps, stacks, malloc) and the file-backed part (the node binary, .node addons — shared with other processes). */
  rss_anon_mb: number;
  rss_file_mb: number;
  /** VmHWM at the end: the peak since the process started, start-up included. */
  rss_peak_since_start_mb: number;
  cpu_s: number;
  children_rss_max_mb: number;
  children_cpu_pct: number;
  children: string[];
  threads: number;
  samples: number;
}

const CLK_TCK = 100; // Linux's USER_HZ on every platform it runs on (getconf CLK_TCK)

function statusKb(pid: number, field: string): number {
  const m = new RegExp(`^${field}:\\s+(\\d+)`, "m").exec(readFileSync(`/proc/${pid}/status`, "utf8"));
  return m ? Number(m[1]) : NaN;
}

/** utime + stime of all threads, seconds; and the parent pid. */
function procStat(pid: number): { cpuS: number; ppid: number } {
  const s = readFileSync(`/proc/${pid}/stat`, "utf8");
  const f = s.slice(s.lastIndexOf(")") + 2).split(" ");
  return { cpuS: (Number(f[11]) + Number(f[12])) / CLK_TCK, ppid: Number(f[1]) };
}

/** Every living descendant of `pid` (children, their children, …). */
function descendants(pid: number): number[] {
  const parent = new Map<number, number>();
  for (const name of readdirSync("/proc")) {
    if (!/^\d+$/.test(name)) continue;
    try {
      parent.set(Number(name), procStat(Number(name)).ppid);
    } catch {
      /* gone meanwhile */
    }
  }
  const out: number[] = [];
  const walk = (p: number) => {
    for (const [child, pp] of parent) if (pp === p) (out.push(child), walk(child));
  };
  walk(pid);
  return out;
}

function commandOf(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0").filter(Boolean).join(" ").slice(0, 160);
  } catch {
    return `pid ${pid}`;
  }
}

function runCli(args: string[]): Promise<string> {
  return new Promise((ok, fail) => {
    execFile(process.execPath, [TETHER_BIN, ...args], { env: isolatedEnv(), timeout: 60_000, encoding: "utf8" }, (err, stdout, stderr) => {
      if (err) fail(new Error(`tether ${args.slice(0, 2).join(" ")} failed: ${err.message}\n${stderr}`));
      else ok(stdout.trim());
    });
  });
}

const round = (x: number, d = 2) => Math.round(x * 10 ** d) / 10 ** d;
const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** The daemon's process: its stderr tail, `ready`, its exit. */
class DaemonProcess {
  private tail = "";
  exit: { code: number | null; signal: NodeJS.Signals | null } | undefined;
  readonly exited: Promise<void>;
  private readonly orphan = () => this.child.kill("SIGKILL");

  constructor(readonly child: ChildProcess) {
    child.stdout!.resume();
    child.stderr!.setEncoding("utf8");
    child.stderr!.on("data", (d: string) => (this.tail = (this.tail + d).slice(-32 * 1024)));
    process.once("exit", this.orphan);
    this.exited = new Promise((r) =>
      child.once("exit", (code, signal) => {
        process.off("exit", this.orphan);
        this.exit = { code, signal };
        r();
      }),
    );
  }

  get pid(): number {
    return this.child.pid ?? -1;
  }

  lastLines(n = 15): string {
    return this.tail.trimEnd().split("\n").slice(-n).join("\n");
  }

  /** Resolves once the daemon logged `event: "ready"` (registered, first heartbeat answered). */
  async ready(timeoutMs: number): Promise<void> {
    const until = Date.now() + timeoutMs;
    while (!/"event":"ready"/.test(this.tail)) {
      if (this.exit) throw new Error(`the daemon exited (${JSON.stringify(this.exit)}) before it was ready:\n${this.lastLines()}`);
      if (Date.now() > until) throw new Error(`the daemon was not ready after ${timeoutMs} ms:\n${this.lastLines()}`);
      await sleep(100);
    }
  }

  /** SIGTERM (the daemon drains, holding no work, and exits 0), SIGKILL after `timeoutMs`. */
  async stop(timeoutMs = 30_000): Promise<void> {
    if (this.exit) return;
    this.child.kill("SIGTERM");
    const timer = setTimeout(() => this.child.kill("SIGKILL"), timeoutMs);
    await this.exited;
    clearTimeout(timer);
  }
}

/**
 * Starts the controller and the daemon, waits until the daemon is registered and
 * heartbeating, lets it warm up, and starts the window. finish() waits for the rest of
 * the window, stops both (SIGTERM, waiting for their exit) and resolves the figures;
 * stop() ends everything early (the caller failed). Rejects (having stopped what it
 * started) when either does not come up.
 */
export async function startDaemonIdle(opts: DaemonIdleOptions): Promise<{
  finish(): Promise<DaemonIdleFigures>;
  stop(): Promise<void>;
  /** finish(), with every detail measured. */
  finishDetail(): Promise<DaemonIdleDetail>;
}> {
  const warmupS = opts.warmupS ?? 45;
  const sampleMs = Math.max(0.2, opts.sampleS ?? 2) * 1000;
  const root = mkdtempSync(join(opts.tmpDir, "daemon-idle-"));
  const dataDir = join(root, "data");
  const stateDir = join(root, "state");
  const bin = opts.cliRoot ? join(resolve(opts.cliRoot), "bin", "tether.mjs") : TETHER_BIN;
  let ctl: ControllerProcess | undefined;
  let daemon: DaemonProcess | undefined;
  const stopAll = async () => {
    await daemon?.stop();
    await ctl?.stop(20_000);
    rmSync(root, { recursive: true, force: true });
  };

  try {
    ctl = await ControllerProcess.start({ dataDir });
    const tokenFile = join(root, "enrollment-token");
    writeFileSync(tokenFile, await runCli(["token", "create", "--data-dir", dataDir, "--ttl", "1h"]), { mode: 0o600 });
    const env = isolatedEnv();
    if (opts.coldTsxCache) {
      const tmp = join(root, "tmp");
      mkdirSync(tmp, { mode: 0o700 });
      env.TMPDIR = tmp;
    }
    const args = [
      ...(opts.daemonNodeArgs ?? []), bin, "executor", "run", "--controller", ctl.url, "--ca-file", join(dataDir, "ca.pem"),
      "--state-dir", stateDir, "--token-file", tokenFile, ...(opts.daemonArgs ?? []),
    ];
    const started = Date.now();
    // In the tree, as the documented unit's WorkingDirectory=/opt/tether: tsx reads tsconfig.json from there.
    daemon = new DaemonProcess(spawn(process.execPath, args, { stdio: ["ignore", "pipe", "pipe"], env, cwd: join(bin, "..", "..") }));
    await daemon.ready(60_000);
    opts.log(
      `daemon pid ${daemon.pid} (${bin}) registered with the controller (pid ${ctl.pid}, ${ctl.url}) and heartbeating after ` +
        `${((Date.now() - started) / 1000).toFixed(1)}s; warming up ${warmupS}s, then measuring ${opts.seconds}s`,
    );
    await sleep(warmupS * 1000);
    if (daemon.exit) throw new Error(`the daemon exited during the warm-up (${JSON.stringify(daemon.exit)}):\n${daemon.lastLines()}`);
  } catch (e) {
    await stopAll().catch(() => {});
    throw e;
  }

  const d = daemon;
  const c = ctl;
  const pid = d.pid;
  const childNames = new Set<string>();
  const take = (t0: number): Sample => {
    const kids = descendants(pid);
    let childRssMb = 0;
    let childCpuS = 0;
    for (const k of kids) {
      try {
        childRssMb += statusKb(k, "VmRSS") / 1024;
        childCpuS += procStat(k).cpuS;
        childNames.add(commandOf(k));
      } catch {
        /* gone meanwhile */
      }
    }
    return { t: (performance.now() - t0) / 1000, rssMb: statusKb(pid, "VmRSS") / 1024, cpuS: procStat(pid).cpuS, childRssMb, childCpuS, children: kids.length };
  };
  const t0 = performance.now();
  const samples: Sample[] = [take(t0)];
  let failure: Error | undefined;
  const timer = setInterval(() => {
    if (failure) return;
    if (d.exit) failure = new Error(`the daemon exited during the measurement (${JSON.stringify(d.exit)}):\n${d.lastLines()}`);
    else if (!c.alive) failure = new Error(`the controller exited during the measurement (${JSON.stringify(c.exit)}):\n${c.tail(2000)}`);
    else {
      const s = take(t0);
      samples.push(s);
      opts.onSample?.(s);
    }
  }, sampleMs);
  timer.unref();
  let stopped = false;

  const finishDetail = async (): Promise<DaemonIdleDetail> => {
    if (stopped) throw new Error("the idle-daemon measurement was stopped");
    const left = opts.seconds * 1000 - (performance.now() - t0);
    // Wait in steps, so a daemon that dies meanwhile fails the measurement at once.
    for (let until = performance.now() + left; performance.now() < until && !failure && !d.exit; ) {
      await sleep(Math.min(1000, until - performance.now()));
    }
    clearInterval(timer);
    try {
      if (d.exit) failure ??= new Error(`the daemon exited during the measurement (${JSON.stringify(d.exit)}):\n${d.lastLines()}`);
      if (failure) throw failure;
      const last = take(t0);
      samples.push(last);
      const threads = statusKb(pid, "Threads");
      const hwm = statusKb(pid, "VmHWM") / 1024;
      const first = samples[0]!;
      const wallS = last.t - first.t;
      const rss = samples.map((s) => s.rssMb);
      return {
        daemon_idle_rss_mb: round(Math.max(...rss), 1),
        daemon_idle_cpu_pct: round(((last.cpuS - first.cpuS) / wallS) * 100, 3),
        daemon_idle_s: round(wallS, 1),
        pid,
        rss_min_mb: round(Math.min(...rss), 1),
        rss_last_mb: round(last.rssMb, 1),
        rss_anon_mb: round(statusKb(pid, "RssAnon") / 1024, 1),
        rss_file_mb: round(statusKb(pid, "RssFile") / 1024, 1),
        rss_peak_since_start_mb: round(hwm, 1),
        cpu_s: round(last.cpuS - first.cpuS, 2),
        children_rss_max_mb: round(Math.max(...samples.map((s) => s.childRssMb)), 1),
        children_cpu_pct: round(((last.childCpuS - first.childCpuS) / wallS) * 100, 3),
        children: [...childNames],
        threads,
        samples: samples.length,
      };
    } finally {
      stopped = true;
      await stopAll();
    }
  };

  return {
    finishDetail,
    async finish() {
      const r = await finishDetail();
      opts.log(
        `RSS max ${r.daemon_idle_rss_mb} MB (min ${r.rss_min_mb}, last ${r.rss_last_mb}, peak since start ${r.rss_peak_since_start_mb}), ` +
          `CPU ${r.daemon_idle_cpu_pct} % over ${r.daemon_idle_s}s, ${r.threads} threads` +
          (r.children.length ? `; its child processes (not counted): RSS ${r.children_rss_max_mb} MB, CPU ${r.children_cpu_pct} % — ${r.children.join("; ")}` : ""),
      );
      return { daemon_idle_rss_mb: r.daemon_idle_rss_mb, daemon_idle_cpu_pct: r.daemon_idle_cpu_pct, daemon_idle_s: r.daemon_idle_s };
    },
    async stop() {
      if (stopped) return;
      stopped = true;
      clearInterval(timer);
      await stopAll();
    },
  };
}

// ---------------------------------------------------------------------------------------------
// On its own

const USAGE = `Usage: node --import tsx bench/daemon-idle.ts --seconds S [options]

Measures one real executor daemon (tether executor run) idle against a controller of its own:
the daemon process's maximum RSS and its CPU over S seconds, after it registered and warmed up.

  --seconds S        length of the measured window (required)
  --warmup S         seconds after the daemon is ready before the window starts (default 45)
  --sample S         seconds between samples (default 2)
  --cli-root DIR     start the daemon from DIR/bin/tether.mjs (another checkout, e.g. for a
                     before/after comparison); the controller is always this tree's
  --cold-tsx-cache   run the daemon with an empty TMPDIR (as systemd's PrivateTmp=yes does):
                     tsx compiles every module at start (its esbuild service is reported)
  --daemon-arg ARG   one more \`executor run\` argument (repeat), e.g. --daemon-arg=--allow-command --daemon-arg=true
  --node-arg ARG     one more node flag for the daemon's process (repeat)
  --tmp DIR          where the scratch directory goes (default: the OS temp dir)
  --verbose          print every sample
  --json             print one JSON object (every detail) as the last stdout line
  --help
`;

async function standalone(): Promise<void> {
  const { values: o } = parseArgs({
    options: {
      seconds: { type: "string" },
      warmup: { type: "string", default: "45" },
      sample: { type: "string", default: "2" },
      "cli-root": { type: "string" },
      "cold-tsx-cache": { type: "boolean", default: false },
      "daemon-arg": { type: "string", multiple: true, default: [] },
      "node-arg": { type: "string", multiple: true, default: [] },
      tmp: { type: "string" },
      verbose: { type: "boolean", default: false },
      json: { type: "boolean", default: false },
      help: { type: "boolean", default: false },
    },
    strict: true,
  });
  if (o.help) {
    process.stdout.write(USAGE);
    return;
  }
  const num = (name: string, v: string | undefined, min: number): number => {
    const n = Number(v);
    if (v === undefined || !Number.isFinite(n) || n < min) {
      process.stderr.write(`--${name} must be a number ≥ ${min}\n${USAGE}`);
      process.exit(2);
    }
    return n;
  };
  const seconds = num("seconds", o.seconds, 1);
  const started = Date.now();
  const log = (line: string) => process.stderr.write(`[daemon-idle ${((Date.now() - started) / 1000).toFixed(1).padStart(6)}s] ${line}\n`);
  const tmp = mkdtempSync(join(o.tmp ?? tmpdir(), "tether-daemon-idle-"));
  try {
    const run = await startDaemonIdle({
      seconds, tmpDir: tmp, log, warmupS: num("warmup", o.warmup, 0), sampleS: num("sample", o.sample, 0.2), cliRoot: o["cli-root"],
      coldTsxCache: o["cold-tsx-cache"], daemonArgs: o["daemon-arg"], daemonNodeArgs: o["node-arg"],
      onSample: o.verbose ? (s) => log(`t=${s.t.toFixed(0)}s rss ${s.rssMb.toFixed(1)} MB cpu ${s.cpuS.toFixed(2)}s${s.children ? ` children ${s.children}: ${s.childRssMb.toFixed(1)} MB` : ""}`) : undefined,
    });
    const onSignal = () => void run.stop().finally(() => process.exit(130));
    process.once("SIGINT", onSignal);
    process.once("SIGTERM", onSignal);
    const r = await run.finishDetail();
    log(
      `daemon_idle_rss_mb ${r.daemon_idle_rss_mb} (max over the window; min ${r.rss_min_mb}, last ${r.rss_last_mb} = ${r.rss_anon_mb} anon + ${r.rss_file_mb} file, ` +
        `peak since start ${r.rss_peak_since_start_mb}), ` +
        `daemon_idle_cpu_pct ${r.daemon_idle_cpu_pct} (${r.cpu_s} CPU-s in ${r.daemon_idle_s}s), ${r.threads} threads, ${r.samples} samples`,
    );
    if (r.children.length) log(`its child processes, not in the figures: RSS max ${r.children_rss_max_mb} MB, CPU ${r.children_cpu_pct} %: ${r.children.join("; ")}`);
    if (o.json) process.stdout.write(`${JSON.stringify(r)}\n`);
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
}

if (process.argv[1] && import.meta.url === pathToFileURL(resolve(process.argv[1])).href) {
  standalone().catch((e: unknown) => {
    process.stderr.write(`daemon-idle: ${(e as Error).stack ?? String(e)}\n`);
    process.exitCode = 1;
  });
}
