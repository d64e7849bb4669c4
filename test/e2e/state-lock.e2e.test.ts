/**
 * The state-dir lock with real processes: a daemon killed -9 whose pid lingers as a
 * zombie (its parent does not reap it) does not block an immediate restart; two
 * daemons started at once on one state dir → exactly one runs, the other exits 1
 * with the clear message (before using the token); `tether executor status` works
 * while a daemon holds the lock, and does not take it.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { spawn, type ChildProcess } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { createToken, executorStatus, killAll, sleep, startController, startExecutor, tempDir, TETHER_BIN, type Controller, type Proc } from "./harness.ts";
import { until } from "../support/daemon-wait.ts";

let ctl: Controller;
const parents: ChildProcess[] = [];

beforeAll(async () => {
  ctl = await startController({ certTtl: "1h", heartbeat: "1s" });
}, 60_000);
afterAll(async () => {
  await killAll();
  for (const p of parents) p.kill("SIGKILL"); // its zombie child goes to init, which reaps it
});

/** "R", "S", "Z"… of a pid, or undefined once it is gone entirely. */
function procState(pid: number): string | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return stat.slice(stat.lastIndexOf(")") + 2)[0];
  } catch {
    return undefined;
  }
}

/**
 * `tether executor run` as the child of a parent that never reaps it (`sh` exec'ing
 * `sleep`): once killed, the daemon stays a zombie — its pid still "exists" — for as
 * long as that parent lives. Resolves to the daemon's pid and its log file.
 */
async function startUnreaped(args: string[]): Promise<{ pid: number; log: string }> {
  const log = join(tempDir(), "daemon.log");
  writeFileSync(log, "");
  const parent = spawn("sh", ["-c", '"$0" "$@" 2>>"$DAEMON_LOG" >/dev/null </dev/null & echo $!; exec sleep 600', process.execPath, TETHER_BIN, ...args], {
    stdio: ["ignore", "pipe", "ignore"],
    env: { ...process.env, TETHER_ENV: "", DAEMON_LOG: log },
  });
  parents.push(parent);
  let out = "";
  parent.stdout!.setEncoding("utf8").on("data", (d: string) => (out += d));
  await until(() => /^\d+\n/.test(out), "the daemon's pid", 10_000);
  return { pid: Number(out.trim()), log };
}

const events = (log: string): string[] =>
  readFileSync(log, "utf8").split("\n").filter((l) => l.startsWith("{")).map((l) => JSON.parse(l).event as string);

describe("state-dir lock (e2e)", () => {
  it("kill -9 of the daemon, its pid left a zombie: an immediate restart on the same state dir runs; status works meanwhile", async () => {
    const stateDir = join(tempDir(), "state");
    const base = ["executor", "run", "--controller", ctl.url, "--ca-file", ctl.caFile, "--state-dir", stateDir, "--log-level", "debug"];
    const old = await startUnreaped([...base, "--token", createToken(ctl.dataDir), "--name", "e2e-lock-zombie"]);
    await until(() => events(old.log).includes("ready"), "the first daemon to be ready", 20_000);
    // While it runs, status names it (read from the kernel's lock table, the lock untouched).
    const st = executorStatus(stateDir);
    expect(st.code).toBe(0);
    expect(st.json.daemon_pid).toBe(old.pid);

    process.kill(old.pid, "SIGKILL");
    await until(() => procState(old.pid) === "Z", "the killed daemon to be a zombie", 5_000);
    const again: Proc = startExecutor(ctl, stateDir); // at once, no token
    const rereg = await again.waitForEvent("reregistered", 20_000);
    expect(rereg).toMatchObject({ reason: "restart" });
    await again.waitForEvent("ready", 10_000);
    expect(procState(old.pid)).toBe("Z"); // still there: the pid was never the point
    expect(again.child.exitCode).toBeNull();
    const st2 = executorStatus(stateDir);
    expect(st2.code).toBe(0);
    expect(st2.json.daemon_pid).toBe(again.child.pid);
    expect((await again.kill("SIGTERM")).code).toBe(0);
    expect(executorStatus(stateDir).json.daemon_pid).toBeNull();
  }, 60_000);

  it("two daemons started at once on one state dir: exactly one runs, the other exits 1 with the clear message (first start: before using the token)", async () => {
    const stateDir = join(tempDir(), "state");
    const tokenFile = join(tempDir(), "token");
    writeFileSync(tokenFile, createToken(ctl.dataDir), { mode: 0o600 });
    for (let round = 0; round < 3; round++) {
      // Round 0 enrolls with a single-use token: the loser must not have spent it.
      const extra = round === 0 ? ["--token-file", tokenFile, "--name", "e2e-lock-twins"] : [];
      const pair = [startExecutor(ctl, stateDir, extra), startExecutor(ctl, stateDir, extra)];
      const first = await Promise.race(pair.map((p, i) => p.exited.then(() => i)));
      const loser = pair[first]!;
      const winner = pair[1 - first]!;
      const r = await loser.exited;
      expect(r.code, `round ${round}: ${loser.stderr().slice(-500)}`).toBe(1);
      const lastLine = loser.stderr().trim().split("\n").at(-1)!;
      expect(lastLine).toBe(`tether executor run: another executor is using ${stateDir}; stop it first (pid ${winner.child.pid} holds ${join(stateDir, "executor.lock")})`);
      expect(loser.count("enrolled") + loser.count("reregistered")).toBe(0);
      await winner.waitForEvent("ready", 20_000);
      expect(winner.count(round === 0 ? "enrolled" : "reregistered")).toBe(1);
      await sleep(300);
      expect(winner.child.exitCode).toBeNull();
      expect((await winner.kill("SIGTERM")).code).toBe(0);
    }
  }, 90_000);
});
