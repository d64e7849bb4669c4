/**
 * Waiting on what a daemon or its handlers do. Only node:fs: the e2e tests, which
 * run the daemon as a separate process, use it too.
 *
 *   await until(() => run.gate.running.length === 2, "two tasks running");   // polls every 20 ms, 8 s by default
 *   expect(alive(pid)).toBe(false);                                           // gone, or a zombie
 */
import { readFileSync } from "node:fs";

/** Resolves once `cond()` holds; rejects naming `what` after `timeoutMs`. */
export async function until(cond: () => boolean, what: string, timeoutMs = 8000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** Whether process `pid` runs: it exists and is not a zombie (Linux /proc). */
export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return stat.slice(stat.lastIndexOf(")") + 2)[0] !== "Z";
  } catch {
    return false;
  }
}
