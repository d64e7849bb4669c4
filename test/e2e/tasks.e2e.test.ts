/**
 * Work dispatch end to end: a real controller and real executor daemons running
 * `command` tasks over mTLS. Tasks complete although an executor is killed -9
 * mid-run (its leases are reclaimed once it is offline and another executor
 * finishes them); a completion for a reclaimed lease gets 409 STALE_LEASE; a
 * command that is not allowed never runs, nor one whose env names a variable the
 * executor did not allow (--allow-env); cancelling kills a running command.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { spawn } from "node:child_process";
import { createToken, killAll, sleep, startController, startExecutor, tempDir, tether, TETHER_BIN, type Controller, type Proc } from "./harness.ts";
import { executorCall, register } from "../support/wire.ts";
import { alive } from "../support/daemon-wait.ts";

interface TaskView {
  id: string;
  kind: string;
  status: "queued" | "leased" | "succeeded" | "failed" | "cancelled";
  attempts: number;
  executor_id: string | null;
  result: Record<string, any> | null;
  error: string | null;
}

const TERMINAL = ["succeeded", "failed", "cancelled"];

let ctl: Controller;

/** `tether …` without blocking the event loop (spawnSync would hold up the executors' log pipes). */
function cli(args: string[], timeoutMs = 30_000): Promise<{ status: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [TETHER_BIN, ...args], { stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, TETHER_ENV: "" } });
    let stdout = "";
    let stderr = "";
    child.stdout.setEncoding("utf8").on("data", (d: string) => (stdout += d));
    child.stderr.setEncoding("utf8").on("data", (d: string) => (stderr += d));
    const timer = setTimeout(() => child.kill("SIGKILL"), timeoutMs);
    child.on("close", (status) => {
      clearTimeout(timer);
      resolve({ status, stdout, stderr });
    });
  });
}

/**
 * Operator side: the `tether task` CLI on the data dir when it exists, otherwise the
 * controller's task service opened in-process on the same data dir (what that CLI does).
 */
const tasks = {
  cli: false,
  async submit(argv: string[], o: { selector?: Record<string, string>; timeout?: string; maxAttempts?: number } = {}): Promise<string> {
    if (this.cli) {
      const sel = Object.entries(o.selector ?? {}).flatMap(([k, v]) => ["--selector", `${k}=${v}`]);
      const extra = [...sel, ...(o.timeout ? ["--timeout", o.timeout] : []), ...(o.maxAttempts ? ["--max-attempts", String(o.maxAttempts)] : [])];
      const r = await cli(["task", "submit", "--data-dir", ctl.dataDir, ...extra, "--", ...argv]);
      if (r.status !== 0) throw new Error(`task submit failed: ${r.stderr}`);
      return r.stdout.trim();
    }
    return inProcess(async (c) => {
      const timeout_s = o.timeout ? Number(o.timeout.replace(/s$/, "")) : undefined;
      const t = await c.tasks.submit({ kind: "command", payload: { argv }, selector: o.selector, timeout_s, max_attempts: o.maxAttempts }, { actor: "e2e" });
      return t.id;
    });
  },
  async show(id: string): Promise<TaskView> {
    if (this.cli) {
      const r = await cli(["task", "show", id, "--data-dir", ctl.dataDir, "--json"]);
      if (r.status !== 0) throw new Error(`task show failed: ${r.stderr}`);
      return JSON.parse(r.stdout) as TaskView;
    }
    return inProcess((c) => c.tasks.show(id) as Promise<TaskView>);
  },
  async cancel(id: string): Promise<void> {
    if (this.cli) {
      const r = await cli(["task", "cancel", id, "--data-dir", ctl.dataDir]);
      if (r.status !== 0) throw new Error(`task cancel failed: ${r.stderr}`);
      return;
    }
    await inProcess((c) => c.tasks.cancel(id, { actor: "e2e" }));
  },
  /** Waits until every task is terminal: `tether task wait --json` (exit 0 only when all succeeded), or polling in-process. */
  async waitAll(ids: string[], timeoutMs: number): Promise<TaskView[]> {
    if (this.cli) {
      const r = await cli(["task", "wait", "--data-dir", ctl.dataDir, "--timeout", `${Math.ceil(timeoutMs / 1000)}s`, "--json", ...ids], timeoutMs + 15_000);
      if (r.status !== 0 && r.status !== 1) throw new Error(`task wait exited ${r.status}: ${r.stderr}`);
      const views = JSON.parse(r.stdout) as TaskView[];
      expect(r.status, r.stderr).toBe(views.every((v) => v.status === "succeeded") ? 0 : 1);
      return ids.map((id) => views.find((v) => v.id === id)!);
    }
    const end = Date.now() + timeoutMs;
    for (;;) {
      const views = await Promise.all(ids.map((id) => tasks.show(id)));
      if (views.every((v) => TERMINAL.includes(v.status))) return views;
      if (Date.now() > end) throw new Error(`tasks not finished in time: ${JSON.stringify(views.map((v) => [v.id, v.status, v.attempts]))}`);
      await sleep(250);
    }
  },
};

/** A `command` task with a whole payload (the CLI has no `env` option): through the controller's task service on its data dir. */
function submitPayload(payload: Record<string, unknown>, selector: Record<string, string>): Promise<string> {
  return inProcess(async (c) => (await c.tasks.submit({ kind: "command", payload, selector }, { actor: "e2e" })).id);
}

type Ctx = Awaited<ReturnType<typeof import("../../controller/context.ts").openControllerContext>>;
async function inProcess<T>(fn: (c: Ctx) => Promise<T>): Promise<T> {
  const { openControllerContext } = await import("../../controller/context.ts");
  const { defaultConfig } = await import("../../controller/config.ts");
  const c = await openControllerContext(defaultConfig(ctl.dataDir), { create: false, actor: "e2e" });
  try {
    return await fn(c);
  } finally {
    await c.close();
  }
}

/** Process groups of commands an executor started (they outlive a SIGKILLed daemon). */
const orphanGroups: number[] = [];

function executor(name: string, extra: string[] = []): Proc {
  return startExecutor(ctl, join(tempDir(), "state"), [
    "--token", createToken(ctl.dataDir), "--name", name, "--allow-command", "sh", "--allow-command", "echo", ...extra,
  ]);
}

beforeAll(async () => {
  ctl = await startController({ heartbeat: "1s" });
  // The command's own help (not the general one an unknown command gets) names its options.
  const help = tether(["task", "submit", "--help"]);
  tasks.cli = help.status === 0 && /--selector/.test(help.stdout + help.stderr) && /--data-dir/.test(help.stdout + help.stderr);
}, 60_000);
afterAll(async () => {
  await killAll();
  for (const pgid of orphanGroups) {
    try {
      process.kill(-pgid, "SIGKILL");
    } catch {
      /* gone */
    }
  }
});

describe("tasks (e2e)", () => {
  let a: Proc;

  beforeAll(async () => {
    a = executor("e2e-tasks-a", ["--capacity", "4"]);
    await a.waitForEvent("ready", 20_000);
  }, 40_000);

  it("runs a command without a shell and reports its output; a command that is not allowed never runs", async () => {
    const dir = tempDir();
    const marker = join(dir, "marker");
    const [ok, refused, failing] = await Promise.all([
      tasks.submit(["echo", "$HOME; rm -rf /"]),
      tasks.submit(["touch", marker]),
      tasks.submit(["sh", "-c", "echo bad >&2; exit 7"]),
    ]);
    const [vOk, vRefused, vFailing] = await tasks.waitAll([ok, refused, failing], 20_000);
    expect(vOk).toMatchObject({ status: "succeeded", result: { exit_code: 0, signal: null, stdout_tail: "$HOME; rm -rf /\n", stderr_tail: "" } });
    expect(vRefused!.status).toBe("failed");
    expect(vRefused!.error).toMatch(/command "touch" is not allowed/);
    expect(vRefused!.attempts).toBe(1); // not retryable: not tried again
    expect(existsSync(marker)).toBe(false);
    expect(vFailing!.status).toBe("failed");
    expect(vFailing!.error).toMatch(/^exit code 7\n--- stderr \(tail\) ---\nbad/);
    await a.waitFor(() => a.logs().some((l) => l.event === "command.refused" && l.command === "touch"), "command.refused for touch", 5_000);
  }, 40_000);

  it("cancelling a running task kills its process group and nothing is reported for it", async () => {
    const pidFile = join(tempDir(), "pid");
    const id = await tasks.submit(["sh", "-c", `sleep 100 & echo $! > ${pidFile}; wait`]);
    await a.waitFor(() => existsSync(pidFile) && readFileSync(pidFile, "utf8").trim() !== "", "the command to start");
    const grandchild = Number(readFileSync(pidFile, "utf8"));
    // The pid file can be written before the daemon's log line reaches us through its stderr pipe.
    await a.waitFor(() => a.logs().some((l) => l.event === "command.started" && l.task_id === id), "command.started", 5_000);
    const leader = a.logs().find((l) => l.event === "command.started" && l.task_id === id)!.pid as number;
    expect(alive(grandchild)).toBe(true);
    await tasks.cancel(id);
    await a.waitFor(() => a.logs().some((l) => l.event === "lease.cancelled" && l.task_id === id), "the executor to hear of the cancel", 10_000);
    await a.waitFor(() => !alive(grandchild) && !alive(leader), "the process group to be killed", 10_000);
    await a.waitFor(() => a.logs().some((l) => l.event === "lease.stopped" && l.task_id === id), "the handler to stop", 10_000);
    expect((await tasks.show(id)).status).toBe("cancelled");
    expect(a.logs().filter((l) => ["lease.completed", "lease.failed", "lease.stale"].includes(l.event) && l.task_id === id)).toEqual([]);
  }, 30_000);

  it("a batch completes although an executor is killed -9 mid-run: its leases are reclaimed and another executor finishes them", async () => {
    const ids = await Promise.all([0, 1, 2, 3].map((i) => tasks.submit(["sh", "-c", `sleep 5; echo done ${i}`])));
    // A (capacity 4) is the only executor: it takes the batch.
    await a.waitFor(() => a.logs().filter((l) => l.event === "command.started" && ids.includes(l.task_id)).length >= 2, "A to start at least two of the batch", 15_000);
    const b = executor("e2e-tasks-b", ["--capacity", "4"]);
    await b.waitForEvent("ready", 20_000);
    const onA = a.logs().filter((l) => l.event === "command.started" && ids.includes(l.task_id) && !a.logs().some((x) => x.event === "lease.completed" && x.task_id === l.task_id));
    orphanGroups.push(...onA.map((l) => l.pid as number));
    const killed = await a.kill("SIGKILL");
    expect(killed.signal).toBe("SIGKILL");
    const t0 = Date.now();
    const views = await tasks.waitAll(ids, 40_000);
    expect(views.map((v) => v.status)).toEqual(["succeeded", "succeeded", "succeeded", "succeeded"]);
    const redone = views.filter((v) => onA.some((l) => l.task_id === v.id));
    expect(redone.length).toBeGreaterThanOrEqual(1);
    for (const v of redone) {
      expect(v.attempts).toBe(2); // the reclaim counted an attempt
      await b.waitFor(() => b.logs().some((l) => l.event === "lease.completed" && l.task_id === v.id), `B to complete ${v.id}`, 5_000);
    }
    for (const v of views) expect(v.result!.stdout_tail).toMatch(/^done \d\n$/);
    // Reclaimed after A went offline (6 missed 1 s heartbeats), not before.
    expect(Date.now() - t0).toBeGreaterThan(4_000);
  }, 90_000);

  it("a completion for a lease reclaimed from a silent executor gets 409 STALE_LEASE", async () => {
    const caPem = readFileSync(ctl.caFile, "utf8");
    const w = await register(ctl.url, caPem, createToken(ctl.dataDir), { labels: { pool: "wire" } });
    const beat = () => executorCall(w, "POST", `/v1/executors/${w.id}/heartbeat`, { status: "ready", running: 0, capacity: 2, leases: [] });
    expect((await beat()).status).toBe(200);
    // Heartbeats keep it ready (3 missed intervals would make it suspect: no leases) until it holds the lease.
    const ticker = setInterval(() => void beat().catch(() => {}), 500);
    let polled;
    try {
      const id0 = await tasks.submit(["echo", "wire"], { selector: { pool: "wire" }, maxAttempts: 5 });
      polled = { id: id0, res: await executorCall(w, "POST", `/v1/executors/${w.id}/leases`, { max: 1, wait_s: 10 }) };
    } finally {
      clearInterval(ticker);
    }
    const id = polled.id;
    expect(polled.res.status).toBe(200);
    const [lease] = polled.res.json.leases as { lease_id: string; task_id: string; kind: string; payload: any }[];
    expect(lease).toMatchObject({ task_id: id, kind: "command", payload: { argv: ["echo", "wire"], timeout_s: 600 } });
    // Silence: after 6 missed heartbeat intervals the executor is offline and its lease requeued.
    const end = Date.now() + 20_000;
    let v = await tasks.show(id);
    while (v.status !== "queued" && Date.now() < end) {
      await sleep(250);
      v = await tasks.show(id);
    }
    expect(v.status).toBe("queued");
    for (const [route, body] of [["complete", { result: { exit_code: 0 } }], ["fail", { error: "x", retryable: false }]] as const) {
      const r = await executorCall(w, "POST", `/v1/executors/${w.id}/leases/${lease!.lease_id}/${route}`, body);
      expect(r.status, route).toBe(409);
      expect(r.json.error.code).toBe("STALE_LEASE");
    }
    // A heartbeat that still lists it is told to cancel it.
    const again = await executorCall(w, "POST", `/v1/executors/${w.id}/heartbeat`, { status: "ready", running: 1, capacity: 2, leases: [lease!.lease_id] });
    expect(again.json.cancel_leases).toEqual([lease!.lease_id]);
    await tasks.cancel(id);
    await w.client.close();
  }, 40_000);

  it("SIGTERM past --drain-timeout hands the running task back (retryable); it runs again after the restart", async () => {
    const stateDir = join(tempDir(), "state");
    const args = ["--allow-command", "sh", "--drain-timeout", "1s", "--capacity", "1"];
    const c = startExecutor(ctl, stateDir, ["--token", createToken(ctl.dataDir), "--name", "e2e-tasks-c", "--label", "pool=c", ...args]);
    await c.waitForEvent("ready", 20_000);
    const id = await tasks.submit(["sh", "-c", "sleep 3; echo finished"], { selector: { pool: "c" } });
    await c.waitFor(() => c.logs().some((l) => l.event === "command.started" && l.task_id === id), "the task to start", 15_000);
    const leader = c.logs().find((l) => l.event === "command.started" && l.task_id === id)!.pid as number;
    const t0 = Date.now();
    const exit = await c.kill("SIGTERM");
    expect(exit.code).toBe(0);
    expect(Date.now() - t0).toBeLessThan(8_000);
    expect(alive(leader)).toBe(false);
    await c.waitFor(() => c.logs().some((l) => l.event === "lease.failed" && l.task_id === id && l.retryable === true), "the hand-back report", 5_000);
    expect((await tasks.show(id)).status).toBe("queued");
    const again = startExecutor(ctl, stateDir, args);
    const [done] = await tasks.waitAll([id], 30_000);
    expect(done).toMatchObject({ status: "succeeded", result: { stdout_tail: "finished\n" } });
    await again.waitFor(() => again.logs().some((l) => l.event === "lease.completed" && l.task_id === id), "the restarted executor to complete it", 5_000);
  }, 60_000);

  it("a task setting an env name not allowed with --allow-env fails naming it, and its command never runs; allowed names reach a minimal environment", async () => {
    const ldd = ["/usr/bin/ldd", "/bin/ldd"].find((p) => existsSync(p) && readFileSync(p, "utf8").startsWith("#!/bin/bash"));
    const e = executor("e2e-tasks-env", ["--label", "pool=env", "--allow-command", "env", ...(ldd ? ["--allow-command", "ldd"] : []), "--allow-env", "GREETING", "--allow-env", "NODE_OPTIONS"]);
    await e.waitForEvent("ready", 20_000);
    expect(e.logs().filter((l) => l.event === "allow_env.loads_code").map((l) => [l.level, l.name])).toEqual([["warn", "NODE_OPTIONS"]]);
    // One warning per allowed command that runs anything.
    expect(e.logs().filter((l) => l.event === "allow_command.broad").map((l) => [l.level, l.command])).toEqual([["warn", "sh"], ["warn", "env"]]);
    const dir = tempDir();
    const [m1, m2] = [join(dir, "sh-ran"), join(dir, "bash-env-ran")];
    const pool = { pool: "env" };
    const ids = await Promise.all([
      submitPayload({ argv: ["sh", "-c", `touch ${m1}`], env: { GREETING: "hi", FOO: "x" } }, pool),
      submitPayload({ argv: ["env"], env: { GREETING: "hello" } }, pool),
      ...(ldd ? [submitPayload({ argv: ["ldd", "/bin/true"], env: { BASH_ENV: `$(touch ${m2})` } }, pool)] : []),
    ]);
    const [vSh, vEnv, vLdd] = await tasks.waitAll(ids, 20_000);
    expect(vSh).toMatchObject({ status: "failed", attempts: 1, error: 'env "FOO" is not allowed on this executor (--allow-env: GREETING, NODE_OPTIONS)' });
    expect(vEnv).toMatchObject({ status: "succeeded", result: { exit_code: 0 } });
    // The daemon's environment (this test runner's, with TETHER_ENV and all) is not inherited.
    const lines = (vEnv!.result!.stdout_tail as string).split("\n").filter(Boolean);
    expect(lines.map((l) => l.slice(0, l.indexOf("="))).sort()).toEqual(["GREETING", "HOME", "LANG", "PATH"]);
    expect(lines).toContain("GREETING=hello");
    if (ldd) expect(vLdd).toMatchObject({ status: "failed", attempts: 1, error: 'env "BASH_ENV" is not allowed on this executor (--allow-env: GREETING, NODE_OPTIONS)' });
    await sleep(300);
    expect([existsSync(m1), existsSync(m2)]).toEqual([false, false]);
    const refused = ids.filter((id) => id !== ids[1]);
    await e.waitFor(() => refused.every((id) => e.logs().some((l) => l.event === "command.refused" && l.task_id === id && Array.isArray(l.env))), "command.refused naming the env", 5_000);
    expect(e.logs().filter((l) => l.event === "command.started" && refused.includes(l.task_id))).toEqual([]);
  }, 40_000);

  it("--allow-env refuses an invalid or dynamic-loader name at start-up (exit 2)", () => {
    for (const [name, re] of [["LD_PRELOAD", /--allow-env: LD_PRELOAD may not be set by a task/], ["1X", /--allow-env: "1X" is not a valid variable name/]] as const) {
      const r = tether(["executor", "run", "--controller", ctl.url, "--ca-file", ctl.caFile, "--state-dir", join(tempDir(), "s"), "--allow-command", "echo", "--allow-env", name]);
      expect(r.status, name).toBe(2);
      expect(r.stderr).toMatch(re);
    }
  });

  it("--allow-command refuses a relative path at start-up (exit 2)", () => {
    const r = tether(["executor", "run", "--controller", ctl.url, "--ca-file", ctl.caFile, "--state-dir", join(tempDir(), "s"), "--allow-command", "./job"]);
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(/--allow-command: "\.\/job" is a relative path/);
  });
});
