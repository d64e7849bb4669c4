/**
 * The restart storm (bench/run.ts phase 5): every executor is armed to reconnect with the
 * daemon's backoff when its connection closes; the controller gets SIGTERM and is started
 * again on the same data dir, store and port; the figure is the seconds from SIGTERM until
 * every executor heartbeated again (and how many would have had to enroll again: target 0).
 */
import type { ControllerProcess } from "../tools/controller-process.ts";
import { fmtErrors, genCpuS, log, mergeCounts, procCpuS, round, sleep, withTicker, type AllWorkers } from "./harness.ts";
import { mergeTimelines, type RunSeries, type TimelineData } from "./report-series.ts";

export interface StormDeps {
  ctl: ControllerProcess;
  all: AllWorkers;
  /** Starts the controller again on the same data dir, store and port. */
  restart(): Promise<ControllerProcess>;
  /** The new process, as soon as it listens (the caller stops it at the end, whatever happens). */
  onRestarted(ctl: ControllerProcess): void;
  /** Epoch ms: give up waiting for the executors. */
  deadline(tTerm: number): number;
}

export async function restartStorm(d: StormDeps): Promise<{ figures: Record<string, number>; series: NonNullable<RunSeries["storm"]> }> {
  await d.all("stormArm");
  const stormGen0 = genCpuS();
  const oldCpu = procCpuS(d.ctl.pid);
  const tTerm = Date.now();
  const stopped = await d.ctl.stop(60_000);
  const tExit = Date.now();
  log(`controller stopped (exit ${stopped.code}${stopped.killed ? ", SIGKILLed" : ""}) ${((tExit - tTerm) / 1000).toFixed(2)}s after SIGTERM; restarting on port ${d.ctl.port}`);
  let ctl: ControllerProcess | undefined;
  for (let attempt = 0; !ctl; attempt++) {
    try {
      ctl = await d.restart();
    } catch (e) {
      if (attempt >= 5 || !/EADDRINUSE/.test(String(e))) throw e;
      await sleep(200);
    }
  }
  d.onRestarted(ctl);
  const tListening = Date.now();
  log(`controller pid ${ctl.pid} listening again ${((tListening - tTerm) / 1000).toFixed(2)}s after SIGTERM; waiting for every executor to heartbeat`);
  const storm = await withTicker("storm", d.all<{ armed: number; ok: number; dead: number; unrecovered: number; lastOk: number; attempts: number; errors: Record<string, number>;
    tlsResumed: number; tlsFull: number; loopDelayMaxMs: number; recoveredAt: number[]; failures: TimelineData }>(
    "stormWait", () => ({ deadline: d.deadline(tTerm) }),
  ));
  const stormCtlCpu = procCpuS(ctl.pid);
  const stormGenCpu = genCpuS() - stormGen0;
  const tDone = Date.now();
  const armed = storm.reduce((a, r) => a + r.armed, 0);
  const recovered = storm.reduce((a, r) => a + r.ok, 0);
  const reenrollments = storm.reduce((a, r) => a + r.dead, 0);
  const unrecovered = storm.reduce((a, r) => a + r.unrecovered, 0);
  const lastOk = Math.max(...storm.map((r) => r.lastOk));
  const tlsResumed = storm.reduce((a, r) => a + r.tlsResumed, 0);
  const tlsFull = storm.reduce((a, r) => a + r.tlsFull, 0);
  const recoveryS = recovered === armed ? (lastOk - tTerm) / 1000 : (tDone - tTerm) / 1000;
  log(
    `restart storm: ${recovered}/${armed} executors heartbeating again ${recoveryS.toFixed(2)}s after SIGTERM ` +
      `(${((lastOk - tListening) / 1000).toFixed(2)}s after the new process listened); re-enrollments needed ${reenrollments}, unrecovered ${unrecovered}; ` +
      `new controller ${stormCtlCpu.toFixed(1)} s CPU (incl. start-up), old controller ${oldCpu.toFixed(1)} s total; generator ${stormGenCpu.toFixed(1)} s CPU; ` +
      `connections made ${tlsResumed + tlsFull}, ${tlsResumed} of them resumed a TLS session; ` +
      `generator event-loop delay max ${Math.max(...storm.map((r) => r.loopDelayMaxMs)).toFixed(0)} ms${fmtErrors(mergeCounts(storm.map((r) => r.errors)))}`,
  );
  const series: NonNullable<RunSeries["storm"]> = {
    termMs: tTerm,
    armed,
    exitS: (tExit - tTerm) / 1000,
    listeningS: (tListening - tTerm) / 1000,
    recoveredS: storm.flatMap((r) => r.recoveredAt.map((t) => (t - tTerm) / 1000)).sort((a, b) => a - b),
    failures: mergeTimelines(storm.map((r) => r.failures)),
  };
  const figures = {
    restart_recovery_s: round(recoveryS, 2),
    restart_down_s: round((tListening - tTerm) / 1000, 2),
    restart_stop_s: round((tExit - tTerm) / 1000, 2),
    reenrollments,
    restart_unrecovered: unrecovered,
    restart_controller_cpu_s: round(stormCtlCpu, 2),
    restart_generator_cpu_s: round(stormGenCpu, 2),
    restart_tls_resumed: tlsResumed,
    restart_tls_full: tlsFull,
  };
  return { figures, series };
}
