/**
 * The controller under test, as its own process (tools/controller-process.ts), in
 * production posture unless asked, and what the fuzzer needs from its data dir.
 */
import { spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { ControllerProcess, isolatedEnv, TETHER_BIN } from "../tools/controller-process.ts";

export { ControllerProcess };

export function startController(dataDir: string, opts: { dev: boolean }): Promise<ControllerProcess> {
  return ControllerProcess.start({ dataDir, args: opts.dev ? ["--dev"] : [] });
}

/** `tether admin bootstrap --data-dir DIR`: the first admin API token, as an operator gets it. */
export function bootstrapAdmin(dataDir: string): string {
  const r = spawnSync(process.execPath, [TETHER_BIN, "admin", "bootstrap", "--data-dir", dataDir, "--name", "fuzz-admin"], {
    encoding: "utf8", env: isolatedEnv(), timeout: 60_000,
  });
  const token = r.stdout.trim();
  if (r.status !== 0 || !/^tet_pat_[A-Za-z0-9_-]{43}$/.test(token)) {
    throw new Error(`admin bootstrap failed (exit ${r.status}): ${r.stderr.trim()}`);
  }
  return token;
}

export function readCaPem(dataDir: string): string {
  return readFileSync(join(dataDir, "ca.pem"), "utf8");
}
