/**
 * The lease loop inside the real daemon, against a scripted controller over real
 * TLS (leases-controller.ts): capacity, reports, STALE_LEASE, cancel_leases,
 * EPOCH_MISMATCH dropping the work, drain with hand-back, operator drain, and
 * no tight loops when the controller misbehaves.
 */
import { beforeAll, describe, expect, it } from "vitest";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { ExitCode } from "../../executor/exit-codes.ts";
import { LeaseWorkSource, type LeaseWorkSourceOptions } from "../../executor/leases.ts";
import { CommandHandler } from "../../executor/handlers/command.ts";
import type { TaskHandler, TaskInput, TaskOutcome } from "../../executor/handlers/types.ts";
import { createTestCa, type TestCa } from "../support/ca.ts";
import { daemonRuns, events, testDaemonOptions, untilEvent, type DaemonRun } from "../support/daemon.ts";
import { alive, until } from "../support/daemon-wait.ts";
import { tempDir } from "../support/temp-dir.ts";
import { wireError } from "./fake-controller.ts";
import { startLeaseController, type LeaseController } from "./leases-controller.ts";

let ca: TestCa;
let server: { certPem: string; keyPem: string };
beforeAll(async () => {
  ca = await createTestCa();
  server = await ca.serverCert();
});

/** A handler the test steers: payload {block: true} waits until finish() or an abort. */
class Gate implements TaskHandler {
  readonly kind = "test";
  current = 0;
  maxConcurrent = 0;
  readonly started: string[] = [];
  readonly aborted: string[] = [];
  private readonly waiting = new Map<string, (o: TaskOutcome) => void>();

  run(task: TaskInput, signal: AbortSignal): Promise<TaskOutcome> {
    const p = task.payload as { block?: boolean; outcome?: TaskOutcome };
    this.started.push(task.taskId);
    this.current++;
    this.maxConcurrent = Math.max(this.maxConcurrent, this.current);
    return new Promise<TaskOutcome>((resolve) => {
      if (!p.block) return resolve(p.outcome ?? { result: { task: task.taskId } });
      this.waiting.set(task.taskId, resolve);
      signal.addEventListener("abort", () => {
        this.aborted.push(task.taskId);
        resolve({ error: "aborted", retryable: false });
      });
    }).finally(() => {
      this.current--;
      this.waiting.delete(task.taskId);
    });
  }

  finish(taskId: string, outcome: TaskOutcome = { result: { task: taskId } }): void {
    const r = this.waiting.get(taskId);
    if (!r) throw new Error(`${taskId} is not running`);
    r(outcome);
  }

  get running(): string[] {
    return [...this.waiting.keys()];
  }
}

type Run = DaemonRun<LeaseWorkSource> & { gate: Gate };
const daemons = daemonRuns();

async function controller(): Promise<LeaseController> {
  return daemons.closeAfterEach(await startLeaseController(ca, server));
}

function startDaemon(c: LeaseController, o: { capacity?: number; drainTimeoutMs?: number; allow?: string[]; work?: Partial<LeaseWorkSourceOptions> } = {}): Run {
  const gate = new Gate();
  const work = new LeaseWorkSource({
    handlers: [gate, new CommandHandler({ allowed: o.allow ?? ["sh"], killGraceMs: 500 })],
    waitS: 1,
    backoff: { baseMs: 100, capMs: 400, factor: 2 },
    minEmptyPollMs: 200,
    handbackBudgetMs: 3000,
    ...o.work,
  });
  const opts = testDaemonOptions({
    controllerUrl: c.fake.url, caFilePem: ca.certPem, capacity: o.capacity ?? 2, allowedCommands: o.allow ?? ["sh"], drainTimeoutMs: o.drainTimeoutMs ?? 5000,
  });
  return Object.assign(daemons.start(opts, work), { gate });
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe("lease loop", () => {
  it("runs leases up to --capacity, asks only for free slots, lists held leases in heartbeats, completes them all", async () => {
    const c = await controller();
    c.submit("test", { block: true }, 5);
    const run = startDaemon(c, { capacity: 2 });
    await until(() => run.gate.running.length === 2, "two tasks running");
    await sleep(600); // more polls would have had the chance to overfill
    expect(run.gate.running).toHaveLength(2);
    expect(c.queue).toHaveLength(3);
    await until(() => c.heartbeats.some((h) => h.leases.length === 2 && h.running === 2), "a heartbeat listing both leases");
    expect(new Set(c.heartbeats.at(-1)!.leases)).toEqual(new Set(c.held()));
    run.gate.finish(run.gate.running[0]!);
    await until(() => run.gate.running.length === 2 && c.completes.length === 1, "the freed slot to be refilled");
    while (c.completes.length < 5) {
      for (const t of run.gate.running) run.gate.finish(t);
      await sleep(50);
    }
    expect(run.gate.maxConcurrent).toBe(2);
    expect(c.polls.every((p) => p.max >= 1 && p.max <= 2 && p.wait_s === 1)).toBe(true);
    expect(c.polls.some((p) => p.max === 1)).toBe(true);
    expect(c.completes.map((x) => x.result.task).sort()).toEqual(["task_1", "task_2", "task_3", "task_4", "task_5"]);
    expect(c.fails).toEqual([]);
    await until(() => c.heartbeats.at(-1)!.leases.length === 0, "heartbeats listing nothing");
  });

  it("reports handler failures as fail, and an unknown kind as not retryable", async () => {
    const c = await controller();
    c.submit("test", { outcome: { error: "boom", retryable: false } });
    c.submit("no-such-kind", {});
    startDaemon(c);
    await until(() => c.fails.length === 2, "two failures");
    expect(c.fails).toEqual(
      expect.arrayContaining([
        { lease_id: expect.any(String), error: "boom", retryable: false },
        { lease_id: expect.any(String), error: expect.stringMatching(/no handler for task kind "no-such-kind".*runs: test, command/), retryable: false },
      ]),
    );
  });

  it("runs a command task end to end and never runs a disallowed one", async () => {
    const c = await controller();
    const dir = tempDir();
    c.submit("command", { argv: ["sh", "-c", "echo hello"] });
    c.submit("command", { argv: ["touch", join(dir, "marker")] });
    startDaemon(c, { allow: ["sh"] });
    await until(() => c.completes.length === 1 && c.fails.length === 1, "both reports");
    expect(c.completes[0]!.result).toMatchObject({ exit_code: 0, signal: null, stdout_tail: "hello\n", stderr_tail: "" });
    expect(c.fails[0]).toMatchObject({ error: expect.stringContaining('command "touch" is not allowed'), retryable: false });
    expect(existsSync(join(dir, "marker"))).toBe(false);
  });

  it("409 STALE_LEASE on complete: logged and forgotten, never retried; work goes on", async () => {
    const c = await controller();
    c.script.complete = [wireError(409, "STALE_LEASE")];
    c.submit("test", {}, 2);
    const run = startDaemon(c, { capacity: 1 });
    await until(() => c.completes.length === 1, "the second task to complete");
    const completeCalls = c.fake.requests.filter((r) => r.url.endsWith("/complete"));
    expect(completeCalls).toHaveLength(2);
    expect(completeCalls[0]!.url).not.toBe(completeCalls[1]!.url);
    expect(run.logs.find((l) => l.event === "lease.stale")).toMatchObject({ level: "warn", lease_id: "lease_1" });
    await until(() => c.heartbeats.at(-1)!.leases.length === 0, "nothing held");
  });

  it("cancel_leases from a heartbeat stops the work (killing the command's process group) and reports nothing", async () => {
    const c = await controller();
    const dir = tempDir();
    const pidFile = join(dir, "pid");
    c.submit("command", { argv: ["sh", "-c", `sleep 100 & echo $! > ${pidFile}; wait`] });
    const run = startDaemon(c);
    await until(() => existsSync(pidFile) && readFileSync(pidFile, "utf8").trim() !== "", "the command to start");
    const grandchild = Number(readFileSync(pidFile, "utf8"));
    const [leaseId] = c.held();
    await until(() => c.heartbeats.some((h) => h.leases.includes(leaseId!)), "a heartbeat listing the lease");
    c.leases.get(leaseId!)!.state = "cancelled"; // what `task cancel` does on the controller
    await until(() => events(run).includes("lease.cancelled"), "the cancel");
    await until(() => !alive(grandchild), "the process group to be killed");
    await until(() => events(run).includes("lease.stopped"), "the handler to stop");
    const n = c.heartbeats.length;
    await until(() => c.heartbeats.length > n + 1, "two more heartbeats");
    expect(c.heartbeats.at(-1)!.leases).toEqual([]);
    expect(c.fake.requests.filter((r) => /\/(complete|fail)$/.test(r.url))).toEqual([]);
  });

  it("EPOCH_MISMATCH drops the held work unreported, re-registers, and takes new work at the new epoch", async () => {
    const c = await controller();
    c.submit("test", { block: true });
    const run = startDaemon(c);
    await until(() => run.gate.running.length === 1, "a task running");
    c.script.heartbeat = [wireError(401, "EPOCH_MISMATCH")];
    await until(() => run.gate.aborted.length === 1 && events(run).includes("reregistered"), "the work to be dropped, then the re-registration");
    expect(events(run)).toEqual(expect.arrayContaining(["epoch_mismatch", "leases.dropped", "reregistered"]));
    expect(run.daemon.epoch).toBe(2);
    // The controller requeued the old epoch's lease: it comes back under a new lease.
    await until(() => run.gate.running.length === 1 && c.held().length === 1, "the task again at epoch 2");
    expect(c.leases.get(c.held()[0]!)!.epoch).toBe(2);
    run.gate.finish(run.gate.running[0]!);
    await until(() => c.completes.length === 1, "completion");
    expect(c.stale).toEqual([]);
    expect(c.fails).toEqual([]);
  });

  it("SIGTERM drains: no new polls, running work finishes and is reported, exit 0", async () => {
    const c = await controller();
    c.submit("test", { block: true });
    const run = startDaemon(c);
    await until(() => run.gate.running.length === 1, "a task running");
    run.daemon.shutdown("SIGTERM");
    await until(() => c.heartbeats.some((h) => h.status === "draining"), "the draining heartbeat");
    c.submit("test", { block: true }, 3);
    const polls = c.polls.length;
    await sleep(300);
    run.gate.finish(run.gate.running[0]!);
    expect(await run.done).toBe(ExitCode.OK);
    expect(c.completes).toHaveLength(1);
    expect(c.polls.length).toBeLessThanOrEqual(polls);
    expect(c.queue).toHaveLength(3);
  });

  it("SIGTERM with work past the drain timeout: the work is stopped and handed back (fail retryable)", async () => {
    const c = await controller();
    const dir = tempDir();
    const pidFile = join(dir, "pid");
    c.submit("test", { block: true });
    c.submit("command", { argv: ["sh", "-c", `sleep 100 & echo $! > ${pidFile}; wait`] });
    const run = startDaemon(c, { drainTimeoutMs: 500 });
    await until(() => run.gate.running.length === 1 && existsSync(pidFile) && readFileSync(pidFile, "utf8").trim() !== "", "both running");
    const grandchild = Number(readFileSync(pidFile, "utf8"));
    const t0 = Date.now();
    run.daemon.shutdown("SIGTERM");
    expect(await run.done).toBe(ExitCode.OK);
    expect(Date.now() - t0).toBeLessThan(5000);
    expect(c.fails).toHaveLength(2);
    for (const f of c.fails) expect(f).toMatchObject({ error: expect.stringContaining("handed back"), retryable: true });
    expect(run.gate.aborted).toHaveLength(1);
    expect(alive(grandchild)).toBe(false);
    expect(events(run)).toContain("leases.handing_back");
  });

  it("operator drain (heartbeat drain: true): no polls while drained, work resumes when cleared", async () => {
    const c = await controller();
    c.drain = true;
    const run = startDaemon(c);
    await until(() => events(run).includes("drain.requested"), "the drain request");
    const polls = c.polls.length;
    c.submit("test", {});
    await sleep(800);
    expect(c.polls.length).toBe(polls);
    expect(c.completes).toHaveLength(0);
    c.drain = false;
    await until(() => c.completes.length === 1, "the task to run after the drain is cleared");
  });

  it("a refused poll backs off instead of looping", async () => {
    const c = await controller();
    c.script.leases = Array.from({ length: 50 }, () => wireError(400, "INVALID_REQUEST"));
    const run = startDaemon(c);
    await untilEvent(run, "ready");
    await sleep(1500);
    const failed = run.logs.filter((l) => l.event === "leases.poll_failed");
    expect(failed.length).toBeGreaterThanOrEqual(2);
    expect(failed.length).toBeLessThanOrEqual(12);
    expect(failed.every((l) => l.delay_ms >= 50)).toBe(true);
  });

  it("a controller answering the long poll at once is not polled in a tight loop", async () => {
    const c = await controller();
    c.honorWait = false;
    startDaemon(c);
    await until(() => c.polls.length >= 2, "two polls");
    const first = c.polls.length;
    await sleep(1000);
    expect(c.polls.length - first).toBeLessThanOrEqual(7); // ≥ 200 ms apart
  });

  it("an executor with no handlers (no --allow-command) never polls: it could only fail the tasks", async () => {
    const c = await controller();
    c.submit("command", { argv: ["echo", "hi"] });
    const run = startDaemon(c, { work: { handlers: [] } });
    await until(() => c.heartbeats.length >= 3, "a few heartbeats");
    expect(c.polls).toEqual([]);
    expect(c.queue).toHaveLength(1);
    expect(events(run)).toContain("work.none");
  });

  it("a network failure during a report is retried by the daemon until it lands", async () => {
    const c = await controller();
    c.script.complete = [wireError(503, "INTERNAL"), wireError(503, "INTERNAL")];
    c.submit("test", {});
    const run = startDaemon(c);
    await until(() => c.completes.length === 1, "the completion after the retries");
    expect(c.fake.requests.filter((r) => r.url.endsWith("/complete"))).toHaveLength(3);
    expect(run.logs.filter((l) => l.event === "retrying")).toHaveLength(2);
  });
});
