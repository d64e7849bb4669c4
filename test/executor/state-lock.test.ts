/**
 * The state-dir lock in one process: a second taker is refused with the clear
 * message, a release lets the next one in, and a pid written in the lock file (an
 * older version's, a reused or zombie pid) is never trusted. Real processes across a
 * kill -9: test/e2e/state-lock.e2e.test.ts.
 */
import { describe, expect, it } from "vitest";
import { spawn } from "node:child_process";
import { existsSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { acquireStateLock, lockHolder, LOCK_FILE, StateLockError } from "../../executor/state-lock.ts";
import { tempDir } from "../support/temp-dir.ts";

describe("state-dir lock", () => {
  it("one holder at a time: a second taker gets the clear message naming the holder; a release lets the next one in", () => {
    const dir = tempDir();
    const path = join(dir, LOCK_FILE);
    const first = acquireStateLock(dir);
    expect(lockHolder(path)).toBe(process.pid);
    const t0 = Date.now();
    let err: unknown;
    try {
      acquireStateLock(dir);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(StateLockError);
    expect((err as Error).message).toBe(`another executor is using ${dir}; stop it first (pid ${process.pid} holds ${path})`);
    expect(Date.now() - t0).toBeLessThan(2_000); // a short wait, not a hang
    // The refused attempt closed its connection without disturbing the holder's lock.
    expect(lockHolder(path)).toBe(process.pid);
    expect(() => acquireStateLock(dir)).toThrow(/another executor is using/);
    first.release();
    first.release(); // idempotent
    expect(lockHolder(path)).toBeUndefined();
    expect(existsSync(path)).toBe(true); // never unlinked: no race with the next start
    const again = acquireStateLock(dir);
    expect(statSync(path).mode & 0o777).toBe(0o600);
    again.release();
  });

  it("a pid in the lock file is not trusted: an older version's file naming a live process (a reused pid) does not block a start", () => {
    const dir = tempDir();
    const path = join(dir, LOCK_FILE);
    // pid 1 always runs: exactly what a pid reused after a reboot looks like.
    writeFileSync(path, "1\n", { mode: 0o600 });
    const lock = acquireStateLock(dir);
    expect(lockHolder(path)).toBe(process.pid);
    lock.release();
  });

  it("processes taking the lock at the same instant: exactly one gets it, every time", async () => {
    const lockModule = fileURLToPath(new URL("../../executor/state-lock.ts", import.meta.url));
    const script = join(tempDir(), "take.mts");
    // Each waits for the same start instant, takes the lock, holds it briefly.
    writeFileSync(script, `import { acquireStateLock } from ${JSON.stringify(lockModule)};
const at = Number(process.argv[3]);
while (Date.now() < at) {}
try { acquireStateLock(process.argv[2]); console.log("WON"); setTimeout(() => {}, 400); }
catch (e) { console.log("LOST " + e.message); }
`);
    const root = fileURLToPath(new URL("../..", import.meta.url));
    const take = (dir: string, at: number) =>
      new Promise<string>((resolve) => {
        const c = spawn(process.execPath, ["--import", "tsx", script, dir, String(at)], { cwd: root, stdio: ["ignore", "pipe", "inherit"] });
        let out = "";
        c.stdout.setEncoding("utf8").on("data", (d: string) => (out += d));
        c.on("close", () => resolve(out.trim()));
      });
    for (let round = 0; round < 4; round++) {
      const dir = tempDir();
      const at = Date.now() + 1_500;
      const outs = await Promise.all([0, 1, 2, 3].map(() => take(dir, at)));
      expect(outs.filter((o) => o === "WON"), `round ${round}: ${outs.join(" | ")}`).toHaveLength(1);
      for (const o of outs.filter((x) => x !== "WON")) expect(o).toMatch(/^LOST another executor is using /);
    }
  }, 60_000);

  it("a state dir that cannot hold the lock is a StateLockError naming it", () => {
    const dir = join(tempDir(), "missing");
    expect(() => acquireStateLock(dir)).toThrow(new RegExp(`^could not lock ${dir}`));
  });
});
