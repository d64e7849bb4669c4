/**
 * `npm run demo` — the whole system in under a minute: a controller on a temporary
 * data dir, three executor processes enrolled with a token over real mTLS, a batch
 * of tasks, one executor killed mid-run (its work is reclaimed and finished by the
 * others), the killed one restarted (epoch + 1, no token), live progress, a summary.
 *
 *   npm run demo [-- --tasks 12 --keep]
 */
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { defaultConfig } from "../controller/config.ts";
import { openControllerContext, type ControllerContext } from "../controller/context.ts";
import type { TaskView } from "../shared/wire/operator.ts";

const BIN = fileURLToPath(new URL("../bin/tether.mjs", import.meta.url));
const args = process.argv.slice(2);
const TASKS = Number(args[args.indexOf("--tasks") + 1]) || 12;
const KEEP = args.includes("--keep");
const DEADLINE_MS = 55_000;
const started = Date.now();
const elapsed = () => ((Date.now() - started) / 1000).toFixed(1).padStart(5) + "s";
const say = (msg: string) => process.stderr.write(`${elapsed()}  ${msg}\n`);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface Proc {
  child: ChildProcess;
  stderr: string;
  exited: Promise<number | null>;
}

function run(argv: string[]): Proc {
  const child = spawn(process.execPath, [BIN, ...argv], { stdio: ["ignore", "pipe", "pipe"] });
  const p: Proc = { child, stderr: "", exited: new Promise((r) => child.on("exit", (code) => r(code))) };
  child.stderr!.on("data", (d) => (p.stderr += d));
  child.stdout!.resume();
  return p;
}

async function output(argv: string[]): Promise<string> {
  const child = spawn(process.execPath, [BIN, ...argv], { stdio: ["ignore", "pipe", "pipe"] });
  let out = "";
  let err = "";
  child.stdout!.on("data", (d) => (out += d));
  child.stderr!.on("data", (d) => (err += d));
  const code = await new Promise((r) => child.on("exit", r));
  if (code !== 0) throw new Error(`tether ${argv.slice(0, 2).join(" ")} failed: ${err.trim()}`);
  return out.trim();
}

async function until<T>(what: string, fn: () => Promise<T | undefined> | T | undefined, timeoutMs = 20_000): Promise<T> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v !== undefined && v !== false) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(200);
  }
}

function countBy<T>(items: T[], key: (t: T) => string): Record<string, number> {
  const out: Record<string, number> = {};
  for (const i of items) out[key(i)] = (out[key(i)] ?? 0) + 1;
  return out;
}

function renewals(dataDir: string): Record<string, number> {
  const lines = readFileSync(join(dataDir, "audit.log"), "utf8").trim().split("\n");
  const events = lines.map((l) => JSON.parse(l) as { event: string; executor_id?: string }).filter((e) => e.event === "executor.renewed");
  return countBy(events, (e) => e.executor_id ?? "?");
}

async function main(): Promise<number> {
  const root = mkdtempSync(join(tmpdir(), "tether-demo-"));
  const dataDir = join(root, "controller");
  const procs: Proc[] = [];
  let ctx: ControllerContext | undefined;
  try {
    say(`data in ${root}`);
    const controller = run([
      "controller", "start", "--data-dir", dataDir, "--listen", "127.0.0.1:0",
      "--heartbeat-interval", "1s", "--jwt-ttl", "12s", "--cert-ttl", "30s", "--log-level", "warn",
    ]);
    procs.push(controller);
    const url = await until("the controller", () => /listening on (https:\/\/\S+)/.exec(controller.stderr)?.[1]);
    say(`controller up at ${url} (JWTs live 12 s, certificates 30 s, heartbeat every 1 s)`);
    ctx = await openControllerContext(defaultConfig(dataDir, { heartbeatIntervalSeconds: 1 }), { create: false, actor: "demo" });

    const token = await output(["token", "create", "--data-dir", dataDir, "--uses", "3", "--ttl", "10m", "--label", "demo=yes"]);
    say(`enrollment token created (3 uses): ${token.slice(0, 12)}…`);
    const executors = ["alpha", "bravo", "charlie"].map((name) => {
      const stateDir = join(root, name);
      const argv = [
        "executor", "run", "--controller", url, "--ca-file", join(dataDir, "ca.pem"), "--state-dir", stateDir,
        "--name", name, "--capacity", "2", "--allow-command", "sh",
      ];
      const p = run([...argv, "--token", token]);
      procs.push(p);
      return { name, stateDir, argv, proc: p };
    });
    await until("three ready executors", async () => ((await ctx!.executors.list()).filter((e) => e.status === "ready").length === 3 ? true : undefined));
    say(`3 executors enrolled over mTLS: ${(await ctx.executors.list()).map((e) => `${e.name}=${e.id}`).join(", ")}`);

    const ids: string[] = [];
    for (let i = 1; i <= TASKS; i++) {
      const t = await ctx.tasks.submit(
        { kind: "command", payload: { argv: ["sh", "-c", `sleep 2; echo "task ${i} done"`] }, selector: { demo: "yes" }, timeout_s: 30, max_attempts: 3 },
        { via: "demo" },
      );
      ids.push(t.id);
    }
    say(`submitted ${TASKS} tasks (sh -c "sleep 2; echo …"), 2 slots per executor`);

    let killed: (typeof executors)[number] | undefined;
    let restarted = false;
    let lastLine = "";
    for (;;) {
      if (Date.now() - started > DEADLINE_MS) throw new Error("the demo ran out of time");
      const tasks = await Promise.all(ids.map((id) => ctx!.tasks.show(id)));
      const counts = countBy(tasks, (t: TaskView) => t.status);
      const execs = await ctx.executors.list();
      const line = `tasks ${["queued", "leased", "succeeded", "failed"].map((s) => `${s} ${counts[s] ?? 0}`).join(" · ")}  |  ${execs.map((e) => `${e.name}:${e.status}/e${e.epoch}`).join(" ")}`;
      if (line !== lastLine) say(line);
      lastLine = line;

      if (!killed && (counts.succeeded ?? 0) >= 2) {
        const victim = execs.find((e) => tasks.some((t) => t.status === "leased" && t.executor_id === e.id));
        killed = executors.find((x) => x.name === victim?.name);
        if (killed) {
          killed.proc.child.kill("SIGKILL");
          say(`kill -9 ${killed.name} while it runs work: its leases come back after 6 missed heartbeats`);
        }
      }
      const victim = killed && execs.find((e) => e.name === killed!.name);
      if (killed && !restarted && victim?.status === "offline") {
        restarted = true;
        const p = run(killed.argv);
        procs.push(p);
        say(`${killed.name} is offline: its leases went back to the queue; restarting it on its state dir without a token (epoch + 1)`);
      }
      if (tasks.every((t) => t.status === "succeeded" || t.status === "failed" || t.status === "cancelled")) break;
      await sleep(500);
    }

    if (restarted) await until("the restarted executor", async () => ((await ctx!.executors.list()).find((e) => e.name === killed!.name)?.epoch ?? 0) >= 2 || undefined, 15_000);
    const tasks = await Promise.all(ids.map((id) => ctx!.tasks.show(id)));
    const done = countBy(tasks.filter((t) => t.status === "succeeded"), (t) => t.executor_id ?? "?");
    const renewed = renewals(dataDir);
    const rows = (await ctx.executors.list()).map((e) => ({
      executor: `${e.name} (${e.id})`, epoch: String(e.epoch), status: e.status, "tasks done": String(done[e.id] ?? 0), renewals: String(renewed[e.id] ?? 0),
    }));
    const cols = ["executor", "epoch", "status", "tasks done", "renewals"] as const;
    const width = (c: (typeof cols)[number]) => Math.max(c.length, ...rows.map((r) => r[c].length));
    const fmt = (r: Record<string, string>) => cols.map((c) => r[c]!.padEnd(width(c))).join("  ");
    const reattempted = tasks.filter((t) => t.attempts > 1).length;
    const ok = tasks.every((t) => t.status === "succeeded");
    process.stdout.write(
      [
        "",
        fmt(Object.fromEntries(cols.map((c) => [c, c.toUpperCase()]))),
        ...rows.map(fmt),
        "",
        `${tasks.filter((t) => t.status === "succeeded").length}/${TASKS} tasks succeeded, ${reattempted} after a reclaim; ${elapsed().trim()} in all`,
        "",
      ].join("\n"),
    );
    return ok ? 0 : 1;
  } finally {
    await ctx?.close();
    for (const p of procs.reverse()) {
      if (p.child.exitCode === null && p.child.signalCode === null) p.child.kill("SIGTERM");
      await Promise.race([p.exited, sleep(8000)]);
      if (p.child.exitCode === null && p.child.signalCode === null) p.child.kill("SIGKILL");
    }
    if (!KEEP) rmSync(root, { recursive: true, force: true });
    else say(`kept ${root}`);
  }
}

main().then(
  (code) => process.exit(code),
  (e) => {
    say(`demo failed: ${(e as Error).message}`);
    process.exit(1);
  },
);
