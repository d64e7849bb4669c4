/**
 * The built-in `command` handler: runs `payload.argv` without a shell, only when
 * `argv[0]` was allowed with `--allow-command` and every `env` name with `--allow-env`,
 * from a minimal fixed environment, in its own process group, with a timeout, and
 * reports the exit code and the tails of stdout/stderr. Rules and decisions:
 * docs/handlers.md.
 */
import { spawn } from "node:child_process";
import { accessSync, constants as fsc, readdirSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { MAX_EXECUTOR_BODY_BYTES } from "../../shared/protocol.ts";
import { COMMAND_KIND, envNameProblem, parseCommandPayload, type CommandPayload } from "../../shared/task-kinds/command.ts";
import { absoluteEntries, allowedNameProblem, minimalEnv, refusedEnvError, type BaseEnv } from "./command-policy.ts";
import { lastBytes, TailBuffer } from "./tail-buffer.ts";
import type { TaskHandler, TaskInput, TaskOutcome } from "./types.ts";

export const DEFAULT_TIMEOUT_S = 600;
/** setTimeout's limit (~24.8 days); longer timeouts are clamped to it. */
export const MAX_TIMEOUT_MS = 2 ** 31 - 1;
export const TAIL_BYTES = 64 * 1024;
export const KILL_GRACE_MS = 5_000;
/** A failure's `error` text (with the output tails) stays within this many UTF-8 bytes. */
export const ERROR_TEXT_BYTES = 4 * 1024;
/**
 * The serialized `result` of a completion stays within this, so that
 * `{"result": …}` fits the controller's 64 KiB limit on executor request bodies.
 */
export const MAX_RESULT_JSON_BYTES = MAX_EXECUTOR_BODY_BYTES - 2 * 1024;
/** After the group is gone, how long to wait for the output pipes to drain. */
const STDIO_DRAIN_MS = 1_000;

export interface CommandHandlerOptions {
  /** `--allow-command` values: bare names (resolved through PATH) or absolute paths, matched exactly against argv[0]. */
  allowed: readonly string[];
  /** `--allow-env` values: the only names a payload's `env` may set (default none). */
  allowEnv?: readonly string[];
  defaultTimeoutS?: number;
  killGraceMs?: number;
  tailBytes?: number;
  /** The daemon's environment: only its PATH and LANG reach commands (minimalEnv). Default: this process's. */
  daemonEnv?: NodeJS.ProcessEnv;
  /** Where bare names are looked up (default: the commands' base PATH — never the payload's). */
  searchPath?: string;
  /** Called with the pid (= process group id) of every command started. */
  onSpawn?: (pid: number, argv: readonly string[]) => void;
}

function isExecutableFile(path: string): boolean {
  try {
    if (!statSync(path).isFile()) return false;
    accessSync(path, fsc.X_OK);
    return true;
  } catch {
    return false;
  }
}

/** First executable `name` in the absolute entries of `searchPath` (relative and empty entries are skipped). */
export function resolveInPath(name: string, searchPath: string): string | undefined {
  for (const dir of absoluteEntries(searchPath)) {
    const candidate = join(dir, name);
    if (isExecutableFile(candidate)) return candidate;
  }
  return undefined;
}

type Authorization = { ok: true; path: string } | { ok: false; error: string };

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/**
 * Whether any process of group `pgid` still runs. Zombies do not count: an
 * orphan's zombie lingers until init reaps it, which can take a while.
 */
function groupAlive(pgid: number): boolean {
  try {
    process.kill(-pgid, 0);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== "EPERM") return false;
  }
  let entries: string[];
  try {
    entries = readdirSync("/proc");
  } catch {
    return true; // no procfs: the signal probe is all we have
  }
  for (const name of entries) {
    if (!/^\d+$/.test(name)) continue;
    let stat: string;
    try {
      stat = readFileSync(`/proc/${name}/stat`, "utf8");
    } catch {
      continue;
    }
    // pid (comm) state ppid pgrp …; comm may contain spaces and parentheses.
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    if (Number(fields[2]) === pgid && fields[0] !== "Z" && fields[0] !== "X") return true;
  }
  return false;
}

function signalGroup(pgid: number, sig: NodeJS.Signals): void {
  try {
    process.kill(-pgid, sig);
  } catch {
    /* ESRCH: nobody left */
  }
}

async function waitGroupGone(pgid: number, ms: number): Promise<boolean> {
  const end = Date.now() + ms;
  for (;;) {
    if (!groupAlive(pgid)) return true;
    if (Date.now() >= end) return false;
    await sleep(Math.min(50, Math.max(1, end - Date.now())));
  }
}

export class CommandHandler implements TaskHandler {
  readonly kind = COMMAND_KIND;
  private readonly allowed: ReadonlySet<string>;
  private readonly allowEnv: ReadonlySet<string>;
  private readonly defaultTimeoutS: number;
  private readonly graceMs: number;
  private readonly tailBytes: number;
  private readonly baseEnv: Readonly<BaseEnv>;
  private readonly searchPath: string;
  private readonly onSpawn?: (pid: number, argv: readonly string[]) => void;

  constructor(opts: CommandHandlerOptions) {
    this.allowed = new Set(opts.allowed.filter((n) => allowedNameProblem(n) === undefined));
    this.allowEnv = new Set((opts.allowEnv ?? []).filter((n) => envNameProblem(n) === undefined));
    this.defaultTimeoutS = opts.defaultTimeoutS ?? DEFAULT_TIMEOUT_S;
    this.graceMs = opts.killGraceMs ?? KILL_GRACE_MS;
    this.tailBytes = opts.tailBytes ?? TAIL_BYTES;
    this.baseEnv = minimalEnv(opts.daemonEnv ?? process.env);
    this.searchPath = opts.searchPath ?? this.baseEnv.PATH;
    this.onSpawn = opts.onSpawn;
  }

  /** The allowlist decision for `argv0`, and the file it runs. */
  authorize(argv0: string): Authorization {
    const list = this.allowed.size ? [...this.allowed].join(", ") : "none";
    if (!this.allowed.has(argv0)) {
      return { ok: false, error: `command "${argv0}" is not allowed on this executor (--allow-command: ${list})` };
    }
    if (argv0.includes("/")) {
      if (!isExecutableFile(argv0)) return { ok: false, error: `command "${argv0}" is allowed but is not an executable file on this executor` };
      return { ok: true, path: argv0 };
    }
    const path = resolveInPath(argv0, this.searchPath);
    if (!path) return { ok: false, error: `command "${argv0}" is allowed but was not found in this executor's PATH` };
    return { ok: true, path };
  }

  async run(task: TaskInput, signal: AbortSignal): Promise<TaskOutcome> {
    const p = parseCommandPayload(task.payload);
    if (typeof p === "string") return { error: `invalid command payload: ${p}`, retryable: false };
    const argv0 = p.argv[0]!;
    const auth = this.authorize(argv0);
    if (!auth.ok) {
      task.log.warn({ event: "command.refused", task_id: task.taskId, lease_id: task.leaseId, command: argv0 }, auth.error);
      return { error: auth.error, retryable: false };
    }
    // The environment configures the program (BASH_ENV, PERL5OPT, NODE_OPTIONS… run code): only names the executor allows.
    const envRefusal = refusedEnvError(p.env, this.allowEnv);
    if (envRefusal) {
      task.log.warn({ event: "command.refused", task_id: task.taskId, lease_id: task.leaseId, command: argv0, env: envRefusal.names }, envRefusal.error);
      return { error: envRefusal.error, retryable: false };
    }
    if (p.cwd !== undefined) {
      let dir = false;
      try {
        dir = statSync(p.cwd).isDirectory();
      } catch {
        dir = false;
      }
      if (!dir) return { error: `cwd "${p.cwd}" is not a directory on this executor`, retryable: false };
    }
    if (signal.aborted) return { error: "cancelled before it started", retryable: false };
    const timeoutS = p.timeoutS ?? this.defaultTimeoutS;
    const timeoutMs = Math.min(MAX_TIMEOUT_MS, Math.ceil(timeoutS * 1000));
    return this.exec(task, p, auth.path, timeoutMs, signal);
  }

  private async exec(task: TaskInput, p: CommandPayload, file: string, timeoutMs: number, signal: AbortSignal): Promise<TaskOutcome> {
    const argv0 = p.argv[0]!;
    const started = Date.now();
    const child = spawn(file, p.argv.slice(1), {
      argv0,
      shell: false,
      detached: true, // its own process group: the whole tree can be signalled at once
      stdio: ["ignore", "pipe", "pipe"],
      env: { ...this.baseEnv, ...(p.env ?? {}) },
      cwd: p.cwd,
      windowsHide: true,
    });
    const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null } | { error: Error }>((resolve) => {
      child.once("exit", (code, sig) => resolve({ code, signal: sig }));
      child.once("error", (error) => resolve({ error }));
    });
    const pgid = child.pid;
    if (pgid === undefined) {
      const r = await exited;
      const err = "error" in r ? (r.error as NodeJS.ErrnoException) : undefined;
      return { error: `cannot start "${argv0}": ${err?.code ?? err?.message ?? "spawn failed"}`, retryable: false };
    }
    this.onSpawn?.(pgid, p.argv);
    const out = new TailBuffer(this.tailBytes);
    const errb = new TailBuffer(this.tailBytes);
    const closed = Promise.all([
      new Promise<void>((r) => child.stdout!.on("data", (c: Buffer) => out.push(c)).once("close", () => r())),
      new Promise<void>((r) => child.stderr!.on("data", (c: Buffer) => errb.push(c)).once("close", () => r())),
    ]);
    task.log.info({ event: "command.started", task_id: task.taskId, lease_id: task.leaseId, command: argv0, pid: pgid, timeout_ms: timeoutMs }, `started ${argv0} (pid ${pgid})`);

    let killedFor: "timeout" | "cancelled" | undefined;
    let termAt = 0;
    let killTimer: NodeJS.Timeout | undefined;
    const terminate = (why: "timeout" | "cancelled") => {
      if (killedFor) return;
      killedFor = why;
      termAt = Date.now();
      signalGroup(pgid, "SIGTERM");
      killTimer = setTimeout(() => signalGroup(pgid, "SIGKILL"), this.graceMs);
    };
    const timer = setTimeout(() => terminate("timeout"), timeoutMs);
    const onAbort = () => terminate("cancelled");
    signal.addEventListener("abort", onAbort, { once: true });
    if (signal.aborted) onAbort();

    const r = await exited;
    const durationMs = Date.now() - started;
    clearTimeout(timer);
    signal.removeEventListener("abort", onAbort);

    // The command is over: anything it left running in its group goes too (SIGTERM, SIGKILL after the grace).
    if (groupAlive(pgid)) {
      if (!killedFor) {
        termAt = Date.now();
        signalGroup(pgid, "SIGTERM");
      }
      const left = Math.max(0, termAt + this.graceMs - Date.now());
      if (!(await waitGroupGone(pgid, left))) {
        signalGroup(pgid, "SIGKILL");
        await waitGroupGone(pgid, 1_000);
      }
    }
    clearTimeout(killTimer);
    await Promise.race([closed, sleep(STDIO_DRAIN_MS)]);
    child.stdout!.destroy();
    child.stderr!.destroy();

    const stdoutTail = out.text();
    const stderrTail = errb.text();
    const log = { event: "command.exited", task_id: task.taskId, lease_id: task.leaseId, command: argv0, pid: pgid, duration_ms: durationMs };
    if ("error" in r) {
      task.log.warn({ ...log, err: r.error.message }, `${argv0} failed`);
      return { error: `"${argv0}" failed: ${r.error.message}`, retryable: false };
    }
    task.log.info({ ...log, exit_code: r.code, signal: r.signal, killed_for: killedFor }, `${argv0} exited (${killedFor ?? (r.signal ? `signal ${r.signal}` : `exit code ${r.code}`)})`);
    if (killedFor === "cancelled") return { error: "cancelled", retryable: false };
    if (killedFor === "timeout") {
      return { error: failureText(`timed out after ${formatSeconds(timeoutMs)}; the process group was killed`, stdoutTail, stderrTail), retryable: false };
    }
    if (r.code !== 0) {
      const head = r.code === null ? `killed by signal ${r.signal ?? "unknown"}` : `exit code ${r.code}`;
      return { error: failureText(head, stdoutTail, stderrTail), retryable: false };
    }
    return {
      result: fitResult({
        exit_code: 0,
        signal: null,
        stdout_tail: stdoutTail,
        stderr_tail: stderrTail,
        stdout_bytes: out.total,
        stderr_bytes: errb.total,
        duration_ms: durationMs,
      }),
    };
  }
}

function formatSeconds(ms: number): string {
  return ms % 1000 === 0 ? `${ms / 1000}s` : `${(ms / 1000).toFixed(3)}s`;
}

/** `head`, then the tails of stderr and stdout, within ERROR_TEXT_BYTES. */
export function failureText(head: string, stdoutTail: string, stderrTail: string, maxBytes = ERROR_TEXT_BYTES): string {
  const parts: [string, string][] = [];
  if (stderrTail) parts.push(["stderr", stderrTail]);
  if (stdoutTail) parts.push(["stdout", stdoutTail]);
  let text = head;
  let budget = maxBytes - Buffer.byteLength(head);
  for (let i = 0; i < parts.length; i++) {
    const [name, tail] = parts[i]!;
    const label = `\n--- ${name} (tail) ---\n`;
    // Each remaining part gets an equal share; what one does not use goes to the next.
    const share = Math.floor((budget - Buffer.byteLength(label) * (parts.length - i)) / (parts.length - i));
    if (share <= 0) break;
    const t = lastBytes(tail, share);
    text += label + t;
    budget -= Buffer.byteLength(label) + Buffer.byteLength(t);
  }
  return firstBytes(text, maxBytes);
}

/** The first at most `maxBytes` UTF-8 bytes of `s`, cut on a character boundary. */
function firstBytes(s: string, maxBytes: number): string {
  const b = Buffer.from(s, "utf8");
  if (b.length <= maxBytes) return s;
  let end = maxBytes;
  while (end > 0 && (b[end]! & 0xc0) === 0x80) end--;
  return b.subarray(0, end).toString("utf8");
}

const jsonCost = (s: string) => Buffer.byteLength(JSON.stringify(s)) - 2;

/** The longest end of `s` whose JSON string form (without quotes) costs at most `budget` bytes. */
function tailWithinJson(s: string, budget: number): string {
  let t = s;
  for (let i = 0; i < 32; i++) {
    const cost = jsonCost(t);
    if (cost <= budget) return t;
    const raw = Buffer.byteLength(t);
    t = lastBytes(t, Math.min(raw - 1, Math.floor((raw * Math.max(0, budget)) / cost)));
  }
  return "";
}

/**
 * Shortens the tails (keeping their ends) until the serialized result fits
 * MAX_RESULT_JSON_BYTES: each gets half the room, and what one does not need goes to the other.
 */
export function fitResult<T extends { stdout_tail: string; stderr_tail: string }>(result: T, maxBytes = MAX_RESULT_JSON_BYTES): T {
  if (Buffer.byteLength(JSON.stringify(result)) <= maxBytes) return result;
  const avail = Math.max(0, maxBytes - Buffer.byteLength(JSON.stringify({ ...result, stdout_tail: "", stderr_tail: "" })));
  const out = jsonCost(result.stdout_tail);
  const err = jsonCost(result.stderr_tail);
  const half = Math.floor(avail / 2);
  const outBudget = out <= half ? out : err <= half ? avail - err : half;
  const errBudget = avail - outBudget;
  return { ...result, stdout_tail: tailWithinJson(result.stdout_tail, outBudget), stderr_tail: tailWithinJson(result.stderr_tail, errBudget) };
}
