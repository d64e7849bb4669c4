/**
 * End-to-end harness: the real `tether` CLI as separate processes — a controller
 * on 127.0.0.1 and executor daemons talking real mTLS to it. Every process
 * started here is killed by `killAll()` (call it from afterEach/afterAll).
 */
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { tempDir } from "../support/temp-dir.ts";

export const TETHER_BIN = fileURLToPath(new URL("../../bin/tether.mjs", import.meta.url));

const children = new Set<ChildProcess>();

export { tempDir };
import { freePort } from "../../tools/free-port.ts";

export { freePort };

/** Runs a short CLI command to completion. */
export function tether(args: string[], timeoutMs = 30_000): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [TETHER_BIN, ...args], { encoding: "utf8", timeout: timeoutMs, env: { ...process.env, TETHER_ENV: "" } });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

export interface Proc {
  child: ChildProcess;
  stderr(): string;
  /** pino JSON lines of stderr (other lines skipped). */
  logs(): Record<string, any>[];
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  waitFor(test: RegExp | ((p: Proc) => boolean), what: string, timeoutMs?: number): Promise<void>;
  waitForEvent(event: string, timeoutMs?: number, count?: number): Promise<Record<string, any>>;
  count(event: string): number;
  kill(signal?: NodeJS.Signals): Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

export function start(args: string[]): Proc {
  const child = spawn(process.execPath, [TETHER_BIN, ...args], { stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, TETHER_ENV: "" } });
  children.add(child);
  let err = "";
  child.stderr!.setEncoding("utf8").on("data", (d: string) => (err += d));
  child.stdout!.resume();
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.on("exit", (code, signal) => {
      children.delete(child);
      resolve({ code, signal });
    }),
  );
  let exitedNow = false;
  void exited.then(() => (exitedNow = true));
  const p: Proc = {
    child,
    stderr: () => err,
    logs: () =>
      err.split("\n").flatMap((l) => {
        if (!l.startsWith("{")) return [];
        try {
          return [JSON.parse(l)];
        } catch {
          return [];
        }
      }),
    exited,
    async waitFor(test, what, timeoutMs = 20_000) {
      const end = Date.now() + timeoutMs;
      const ok = () => (typeof test === "function" ? test(p) : test.test(err));
      while (!ok()) {
        if (exitedNow) {
          await new Promise((r) => setTimeout(r, 50)); // let the last output arrive
          if (ok()) return;
          throw new Error(`process exited while waiting for ${what}:\n${err.slice(-3000)}`);
        }
        if (Date.now() > end) throw new Error(`timed out waiting for ${what}:\n${err.slice(-3000)}`);
        await new Promise((r) => setTimeout(r, 50));
      }
    },
    async waitForEvent(event, timeoutMs = 20_000, count = 1) {
      await p.waitFor(() => p.count(event) >= count, `${count}× log event "${event}"`, timeoutMs);
      return p.logs().filter((l) => l.event === event)[count - 1]!;
    },
    count: (event) => p.logs().filter((l) => l.event === event).length,
    async kill(signal = "SIGTERM") {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      return exited;
    },
  };
  return p;
}

/** Kills every process this harness started that is still running. */
export async function killAll(): Promise<void> {
  const waits = [...children].map(
    (c) =>
      new Promise<void>((resolve) => {
        if (c.exitCode !== null || c.signalCode !== null) return resolve();
        c.once("exit", () => resolve());
        c.kill("SIGKILL");
      }),
  );
  await Promise.all(waits);
}

export interface Controller {
  url: string;
  port: number;
  dataDir: string;
  caFile: string;
  proc: Proc;
  args: string[];
  stop(): Promise<void>;
  /** SIGTERM, then start again on the same data dir and port. */
  restart(): Promise<void>;
}

export async function startController(
  opts: { certTtl?: string; jwtTtl?: string; heartbeat?: string; port?: number; dataDir?: string; args?: string[] } = {},
): Promise<Controller> {
  const dataDir = opts.dataDir ?? join(tempDir(), "data");
  const port = opts.port ?? (await freePort());
  const args = [
    "controller", "start", "--data-dir", dataDir, "--listen", `127.0.0.1:${port}`,
    "--cert-ttl", opts.certTtl ?? "24h", "--jwt-ttl", opts.jwtTtl ?? "15m", "--heartbeat-interval", opts.heartbeat ?? "1s",
    "--log-level", "warn", ...(opts.args ?? []),
  ];
  const c: Controller = {
    url: "",
    port,
    dataDir,
    caFile: join(dataDir, "ca.pem"),
    proc: start(args),
    args,
    async stop() {
      const r = await c.proc.kill("SIGTERM");
      if (r.code !== 0) throw new Error(`controller exited ${r.code ?? r.signal}:\n${c.proc.stderr().slice(-2000)}`);
    },
    async restart() {
      await c.stop();
      c.proc = start(args);
      await c.proc.waitFor(/listening on https:\/\/127\.0\.0\.1:\d+/, "the controller to listen again", 20_000);
    },
  };
  await c.proc.waitFor(/listening on https:\/\/127\.0\.0\.1:\d+/, "the controller to listen", 20_000);
  c.url = /listening on (https:\/\/127\.0\.0\.1:\d+)/.exec(c.proc.stderr())![1]!;
  return c;
}

export function createToken(dataDir: string, extra: string[] = []): string {
  const r = tether(["token", "create", "--data-dir", dataDir, ...extra]);
  if (r.status !== 0) throw new Error(`token create failed: ${r.stderr}`);
  const token = r.stdout.trim();
  if (!/^tet_enr_[A-Za-z0-9_-]{32,}$/.test(token)) throw new Error(`token create printed more than a token: ${JSON.stringify(r.stdout)}`);
  return token;
}

export interface ExecutorView {
  id: string;
  name: string;
  epoch: number;
  status: string;
  labels: Record<string, string>;
  cert_expires_at: string;
  last_seen_at: string | null;
  revoked: boolean;
}

export function showExecutor(dataDir: string, id: string): ExecutorView {
  const r = tether(["executors", "show", id, "--data-dir", dataDir, "--json"]);
  if (r.status !== 0) throw new Error(`executors show failed: ${r.stderr}`);
  return JSON.parse(r.stdout) as ExecutorView;
}

export function listExecutors(dataDir: string): ExecutorView[] {
  const r = tether(["executors", "list", "--data-dir", dataDir, "--json"]);
  if (r.status !== 0) throw new Error(`executors list failed: ${r.stderr}`);
  return JSON.parse(r.stdout) as ExecutorView[];
}

export function executorStatus(stateDir: string): { code: number | null; json: Record<string, any>; stderr: string } {
  const r = tether(["executor", "status", "--state-dir", stateDir, "--json"]);
  return { code: r.status, json: JSON.parse(r.stdout || "{}"), stderr: r.stderr };
}

export function startExecutor(
  c: Pick<Controller, "url" | "caFile">,
  stateDir: string,
  extra: string[] = [],
): Proc {
  return start(["executor", "run", "--controller", c.url, "--ca-file", c.caFile, "--state-dir", stateDir, "--log-level", "debug", ...extra]);
}

export function readJson(path: string): any {
  return JSON.parse(readFileSync(path, "utf8"));
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
