/**
 * A controller under measurement, as its own process (`tether controller start`): for the
 * benchmark (bench/) and the fuzzer (fuzz/). A crash is an exit they see, its CPU and
 * memory are its own, and whatever ends the harness (a bug, Ctrl-C) ends it too.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { createWriteStream, readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";

export const TETHER_BIN = fileURLToPath(new URL("../bin/tether.mjs", import.meta.url));

/** The developer's own TETHER_* settings must not leak into the controller under test. */
export function isolatedEnv(extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  const env = { ...process.env, ...extra };
  for (const k of Object.keys(env)) if (k.startsWith("TETHER_") && !(k in extra)) delete env[k];
  return env;
}

export interface ControllerStart {
  dataDir: string;
  /** Port to listen on (0: any). */
  port?: number;
  /** More `controller start` options, e.g. ["--dev", "--bench"]. */
  args?: string[];
  /** Node flags for the controller only (e.g. --cpu-prof). */
  nodeArgs?: string[];
  /** Also append the controller's stdout and stderr to this file. */
  logFile?: string;
}

export type Exit = { code: number | null; signal: NodeJS.Signals | null };

export class ControllerProcess {
  private stderrTail = "";
  /** Lines the controller logged at error or fatal level. */
  errorsLogged = 0;
  readonly exited: Promise<Exit>;
  exit: Exit | undefined;
  url = "";
  port = 0;
  /** Set by stop(): an exit after this is ours, not a crash. */
  stopping = false;

  private constructor(readonly child: ChildProcess) {
    child.stderr!.setEncoding("utf8");
    child.stderr!.on("data", (d: string) => {
      this.stderrTail = (this.stderrTail + d).slice(-64 * 1024);
      this.errorsLogged += (d.match(/"level":(50|60)/g) ?? []).length;
    });
    child.stdout!.resume();
    const orphan = () => child.kill("SIGKILL");
    process.once("exit", orphan);
    this.exited = new Promise((resolve) =>
      child.on("exit", (code, signal) => {
        process.off("exit", orphan);
        this.exit = { code, signal };
        resolve(this.exit);
      }),
    );
  }

  get pid(): number {
    return this.child.pid ?? -1;
  }

  get alive(): boolean {
    return this.exit === undefined;
  }

  static async start(o: ControllerStart): Promise<ControllerProcess> {
    const args = [
      ...(o.nodeArgs ?? []), TETHER_BIN, "controller", "start", "--data-dir", o.dataDir, "--listen", `127.0.0.1:${o.port ?? 0}`,
      "--log-level", "warn", ...(o.args ?? []),
    ];
    const child = spawn(process.execPath, args, { stdio: ["ignore", "pipe", "pipe"], env: isolatedEnv() });
    const p = new ControllerProcess(child);
    if (o.logFile) {
      const f = createWriteStream(o.logFile, { flags: "a" });
      child.stderr!.pipe(f);
      child.stdout!.pipe(f); // e.g. --trace-gc prints to stdout
    }
    const m = await p.waitFor(/listening on (https:\/\/127\.0\.0\.1:(\d+))/, 60_000);
    p.url = m[1] ?? "";
    p.port = Number(m[2]);
    return p;
  }

  waitFor(re: RegExp, timeoutMs: number): Promise<RegExpMatchArray> {
    return new Promise((resolve, reject) => {
      const check = () => {
        const m = this.stderrTail.match(re);
        if (m) {
          done();
          resolve(m);
        }
      };
      const onExit = () => {
        done();
        reject(new Error(`controller exited before it was ready:\n${this.tail()}`));
      };
      const timer = setTimeout(() => {
        done();
        reject(new Error(`controller not ready after ${timeoutMs} ms:\n${this.tail()}`));
      }, timeoutMs);
      const done = () => {
        clearTimeout(timer);
        this.child.stderr!.off("data", check);
        this.child.off("exit", onExit);
      };
      this.child.stderr!.on("data", check);
      this.child.on("exit", onExit);
      check();
    });
  }

  /** Resident set size in MiB (from /proc), NaN once the process is gone. */
  rssMb(): number {
    try {
      const m = /^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${this.pid}/status`, "utf8"));
      return m ? Number(m[1]) / 1024 : NaN;
    } catch {
      return NaN;
    }
  }

  /** SIGTERM, then SIGKILL after `timeoutMs`. Resolves with how it ended. */
  async stop(timeoutMs = 10_000): Promise<Exit & { killed: boolean }> {
    this.stopping = true;
    if (this.exit) return { ...this.exit, killed: false };
    this.child.kill("SIGTERM");
    let killed = false;
    const timer = setTimeout(() => {
      killed = true;
      this.child.kill("SIGKILL");
    }, timeoutMs);
    const exit = await this.exited;
    clearTimeout(timer);
    return { ...exit, killed };
  }

  tail(chars = 4000): string {
    return this.stderrTail.slice(-chars);
  }
}
