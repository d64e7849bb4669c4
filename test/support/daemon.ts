/**
 * Real ExecutorDaemons in a test file, against a stand-in controller: the log
 * captured as JSON objects, and every daemon still running stopped after each test
 * (two stop signals: the second hands running work back at once), then the
 * stand-in controllers closed.
 *
 *   const daemons = daemonRuns();   // at the top level of the test file: registers the afterEach
 *   const ctl = daemons.closeAfterEach(await startSomeController());
 *   const run = daemons.start(testDaemonOptions({ controllerUrl: ctl.url, caFilePem: ca.certPem }), work);
 *   await untilEvent(run, "ready");
 *   expect(await daemons.stop(run, "SIGTERM")).toBe(0);   // a test that stops one itself
 */
import { join } from "node:path";
import { Writable } from "node:stream";
import { afterEach } from "vitest";
import { ExecutorDaemon, type DaemonDeps, type DaemonOptions } from "../../executor/daemon/daemon.ts";
import { createLogger } from "../../executor/logger.ts";
import type { WorkSource } from "../../executor/work.ts";
import { until } from "./daemon-wait.ts";
import { tempDir } from "./temp-dir.ts";

/** One pino log line, parsed. */
export type LogLine = Record<string, any>;

export interface DaemonRun<W extends WorkSource = WorkSource> {
  daemon: ExecutorDaemon;
  /** run()'s exit code. */
  done: Promise<number>;
  logs: LogLine[];
  work: W;
  stateDir: string;
}

/** A logger writing JSON lines into `logs` (debug and up). */
export function captureLog(): { log: DaemonDeps["log"]; logs: LogLine[] } {
  const logs: LogLine[] = [];
  const destination = new Writable({
    write(chunk, _enc, cb) {
      for (const line of String(chunk).split("\n")) if (line.trim()) logs.push(JSON.parse(line));
      cb();
    },
  });
  return { log: createLogger({ level: "debug", destination: destination as never }), logs };
}

/**
 * Daemon options for a test: a fresh state dir, token "tet_enr_test", Ed25519, a fast backoff (50 → 200 ms),
 * and an unverifiable controller ends the daemon after 6 attempts without the 60 s floor.
 */
export function testDaemonOptions(o: Pick<DaemonOptions, "controllerUrl" | "caFilePem"> & Partial<DaemonOptions>): DaemonOptions {
  return {
    stateDir: join(tempDir(), "state"), token: () => "tet_enr_test", tokenSource: "--token",
    labels: {}, capacity: 2, allowedCommands: [], keyType: "ed25519", drainTimeoutMs: 1000,
    backoff: { baseMs: 50, capMs: 200, factor: 2 },
    untrusted: { forMs: 0 },
    ...o,
  };
}

/** The `event` field of every log line, in order. */
export const events = (run: { logs: LogLine[] }): unknown[] => run.logs.map((l) => l.event);

/** Resolves once the daemon has logged `event`. */
export function untilEvent(run: { logs: LogLine[] }, event: string, timeoutMs?: number): Promise<void> {
  return until(() => events(run).includes(event), event, timeoutMs);
}

export function daemonRuns() {
  const running: DaemonRun[] = [];
  const closers: { close(): Promise<void> }[] = [];
  afterEach(async () => {
    for (const r of running.splice(0)) {
      r.daemon.shutdown("test end");
      r.daemon.shutdown("test end");
      await r.done;
    }
    for (const c of closers.splice(0)) await c.close();
  });
  return {
    /** Starts `daemon.run()`; stopped after the test unless the test stops it (`stop`). */
    start<W extends WorkSource>(opts: DaemonOptions, work: W, deps: Omit<DaemonDeps, "log" | "work"> = {}): DaemonRun<W> {
      const { log, logs } = captureLog();
      const daemon = new ExecutorDaemon(opts, { ...deps, log, work });
      const run: DaemonRun<W> = { daemon, done: daemon.run(), logs, work, stateDir: opts.stateDir };
      running.push(run);
      return run;
    },
    /** One stop signal, as the test's own step (not the after-test stop); resolves to the exit code. */
    stop(run: DaemonRun, reason: string): Promise<number> {
      const i = running.indexOf(run);
      if (i !== -1) running.splice(i, 1);
      run.daemon.shutdown(reason);
      return run.done;
    },
    /** Closed after each test, once its daemons have stopped. */
    closeAfterEach<C extends { close(): Promise<void> }>(c: C): C {
      closers.push(c);
      return c;
    },
  };
}
