/**
 * One daemon per state dir. Two daemons sharing an identity would re-register
 * each other out of their epochs in a loop, so the second one refuses to start.
 * A lock left behind by a killed daemon (its pid is gone) is taken over.
 */
import { openSync, writeSync, closeSync, readFileSync, unlinkSync } from "node:fs";
import { join } from "node:path";

export const LOCK_FILE = "executor.lock";

export class StateLockError extends Error {}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === "EPERM";
  }
}

export interface StateLock {
  release(): void;
}

export function acquireStateLock(dir: string): StateLock {
  const path = join(dir, LOCK_FILE);
  for (let i = 0; i < 3; i++) {
    try {
      const fd = openSync(path, "wx", 0o600);
      writeSync(fd, `${process.pid}\n`);
      closeSync(fd);
      return {
        release() {
          try {
            if (readFileSync(path, "utf8").trim() === String(process.pid)) unlinkSync(path);
          } catch {
            /* already gone */
          }
        },
      };
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== "EEXIST") throw e;
    }
    let pid = NaN;
    try {
      pid = Number(readFileSync(path, "utf8").trim());
    } catch {
      continue; // removed in between: try again
    }
    if (Number.isInteger(pid) && pid > 0 && pid !== process.pid && alive(pid)) {
      throw new StateLockError(`another executor (pid ${pid}) is using ${dir}; stop it first (lock file ${path})`);
    }
    try {
      unlinkSync(path); // stale: its daemon is gone
    } catch {
      /* someone else took it over; retry */
    }
  }
  throw new StateLockError(`could not lock ${dir} (${path})`);
}
