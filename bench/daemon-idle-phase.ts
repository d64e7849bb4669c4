/**
 * `--daemon-idle S` (bench/run.ts): one real executor daemon measured idle for S seconds
 * against a small controller of its own (bench/daemon-idle.ts). Started with the run and
 * not waited for — its start-up and warm-up overlap the run's first phases — then waited
 * for at the end (a line every 30 s while the run waits). Its figures join the run's JSON
 * (daemon_idle_rss_mb, daemon_idle_cpu_pct, daemon_idle_s); if it fails, the run keeps
 * its other figures and says why in `daemon_idle_error`.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startDaemonIdle, type DaemonIdleFigures } from "./daemon-idle.ts";
import { log } from "./harness.ts";

export interface IdleDaemonRun {
  /** Waits for the rest of the measurement; its figures (none when skipped, an error when it failed). */
  finish(): Promise<Partial<DaemonIdleFigures> & { daemon_idle_error?: string }>;
  /** The run failed: end the measurement without waiting for it. */
  abandon(): Promise<void>;
}

export function startIdleDaemon(seconds: number, warmupS?: number): IdleDaemonRun {
  if (seconds <= 0) {
    log("daemon idle: skipped (--daemon-idle 0)");
    return { finish: async () => ({}), abandon: async () => {} };
  }
  const t0 = Date.now();
  const tmpDir = mkdtempSync(join(tmpdir(), "tether-bench-idle-"));
  const remove = () => {
    process.off("exit", remove);
    rmSync(tmpDir, { recursive: true, force: true });
  };
  // Also when the run is interrupted or hits --max-seconds (its processes end with the run: bench/daemon-idle.ts).
  process.once("exit", remove);
  log(`daemon idle: starting one executor daemon and its controller, to measure it idle for ${seconds}s alongside the run`);
  const started = startDaemonIdle({ seconds, tmpDir, warmupS, log: (line) => log(`daemon idle: ${line}`) });
  started.catch(() => {}); // reported by finish(), not as an unhandled rejection meanwhile
  return {
    async finish() {
      log("daemon idle: every other phase is done; waiting for the idle measurement to end");
      const timer = setInterval(() => log(`daemon idle: still measuring (${((Date.now() - t0) / 1000).toFixed(0)}s since it started)`), 30_000);
      try {
        const r = await (await started).finish();
        log(`daemon idle: RSS ${r.daemon_idle_rss_mb} MB (max in the window), CPU ${r.daemon_idle_cpu_pct} % of one core over ${r.daemon_idle_s}s`);
        return r;
      } catch (e) {
        const message = (e as Error)?.message ?? String(e);
        log(`daemon idle: FAILED: ${message}`);
        return { daemon_idle_error: message.split("\n")[0]!.slice(0, 300) };
      } finally {
        clearInterval(timer);
        remove();
      }
    },
    async abandon() {
      await started.then((h) => h.stop(), () => {}).catch((e: unknown) => log(`daemon idle: stopping failed: ${(e as Error).message}`));
      remove();
    },
  };
}
