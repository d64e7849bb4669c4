/**
 * Temporary directories for tests, removed when the test file is done.
 *
 *   import { tempDir } from "../support/temp-dir.ts";
 *   const dir = tempDir();                 // a new empty directory under the OS temp dir
 *   const work = tempDir("tether-curl-");  // with a prefix that says what it is for
 *
 * Import it statically at the top of a test file (or of a helper the file imports):
 * importing registers one `afterAll` that removes every directory made in that file.
 * That hook is registered first, so it runs after the file's own teardown (vitest runs
 * after-hooks in reverse order): stop daemons and servers there and their directories
 * are still in place while they shut down.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll } from "vitest";

const made: string[] = [];

afterAll(() => {
  for (const dir of made.splice(0)) rmSync(dir, { recursive: true, force: true });
});

export function tempDir(prefix = "tether-test-"): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  made.push(dir);
  return dir;
}
