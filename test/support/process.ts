/** Runs the real `tether` CLI as a child process. */
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { fileURLToPath } from "node:url";
import { tempDir } from "./temp-dir.ts";

/** A developer's own saved login or TETHER_* variables must never leak into a test. */
const isolated: NodeJS.ProcessEnv = {
  TETHER_CONFIG_DIR: tempDir("tether-cfg-"),
  TETHER_TOKEN: "", TETHER_URL: "", TETHER_CA_FILE: "", TETHER_DATA_DIR: "", TETHER_ENV: "", TETHER_LISTEN: "",
};

export const TETHER_BIN = fileURLToPath(new URL("../../bin/tether.mjs", import.meta.url));

export function tether(args: string[], opts: { env?: NodeJS.ProcessEnv; input?: string; timeoutMs?: number } = {}) {
  const r = spawnSync(process.execPath, [TETHER_BIN, ...args], {
    encoding: "utf8",
    env: { ...process.env, ...isolated, ...opts.env },
    input: opts.input,
    timeout: opts.timeoutMs ?? 30_000,
  });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

export interface Spawned {
  child: ChildProcess;
  stderr(): string;
  stdout(): string;
  /** Resolves with the first match of `re` in stderr, or rejects on exit/timeout. */
  waitFor(re: RegExp, timeoutMs?: number): Promise<RegExpMatchArray>;
  exited: Promise<number | null>;
  stop(signal?: NodeJS.Signals): Promise<number | null>;
}

export function spawnTether(args: string[], opts: { env?: NodeJS.ProcessEnv } = {}): Spawned {
  const child = spawn(process.execPath, [TETHER_BIN, ...args], { env: { ...process.env, ...isolated, ...opts.env }, stdio: ["ignore", "pipe", "pipe"] });
  let err = "";
  let out = "";
  child.stderr!.on("data", (d) => (err += d));
  child.stdout!.on("data", (d) => (out += d));
  const exited = new Promise<number | null>((resolve) => child.on("exit", (code) => resolve(code)));
  return {
    child,
    stderr: () => err,
    stdout: () => out,
    exited,
    waitFor(re, timeoutMs = 20_000) {
      return new Promise((resolve, reject) => {
        const check = () => {
          const m = err.match(re);
          if (m) {
            cleanup();
            resolve(m);
          }
        };
        const onExit = () => {
          cleanup();
          reject(new Error(`process exited before ${re}: ${err}`));
        };
        const timer = setTimeout(() => {
          cleanup();
          reject(new Error(`timed out waiting for ${re}: ${err}`));
        }, timeoutMs);
        const cleanup = () => {
          clearTimeout(timer);
          child.stderr!.off("data", check);
          child.off("exit", onExit);
        };
        child.stderr!.on("data", check);
        child.on("exit", onExit);
        check();
      });
    },
    async stop(signal = "SIGTERM") {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      return exited;
    },
  };
}
