/**
 * A small tmpfs to fill up, for disk-full tests. Mounting needs root (CAP_SYS_ADMIN);
 * `canMountTmpfs` says whether this machine allows it, so a test can skip cleanly.
 *
 *   import { canMountTmpfs, mountTmpfs } from "../support/full-disk.ts";
 *   it.skipIf(!canMountTmpfs)("…", async () => {
 *     const disk = mountTmpfs(16);   // MiB; unmounted after the test file
 *     disk.fill();                   // every free byte taken by a filler file
 *     disk.free();                   // the filler removed
 *   });
 */
import { execFileSync } from "node:child_process";
import { closeSync, mkdtempSync, openSync, rmSync, unlinkSync, writeSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll } from "vitest";

const mounted: string[] = [];

function tryMount(dir: string, mib: number): boolean {
  try {
    execFileSync("mount", ["-t", "tmpfs", "-o", `size=${mib}m,mode=0700`, "tmpfs", dir], { stdio: "ignore" });
    return true;
  } catch {
    return false;
  }
}

function unmount(dir: string): void {
  try {
    execFileSync("umount", ["-l", dir], { stdio: "ignore" });
  } catch {
    // already gone
  }
  rmSync(dir, { recursive: true, force: true });
}

export const canMountTmpfs: boolean = (() => {
  const dir = mkdtempSync(join(tmpdir(), "tether-tmpfs-probe-"));
  const ok = tryMount(dir, 1);
  if (ok) unmount(dir);
  else rmSync(dir, { recursive: true, force: true });
  return ok;
})();

afterAll(() => {
  for (const dir of mounted.splice(0)) unmount(dir);
});

export interface FullDisk {
  dir: string;
  /** Takes every free byte with a filler file. */
  fill(): void;
  /** Removes the filler. */
  free(): void;
}

export function mountTmpfs(mib: number): FullDisk {
  const dir = mkdtempSync(join(tmpdir(), "tether-tmpfs-"));
  if (!tryMount(dir, mib)) throw new Error("mount -t tmpfs is not permitted here (check canMountTmpfs first)");
  mounted.push(dir);
  const filler = join(dir, "filler");
  return {
    dir,
    fill() {
      const fd = openSync(filler, "a");
      try {
        for (const size of [1 << 20, 1 << 12, 1]) {
          const chunk = Buffer.alloc(size, 0x5a);
          for (;;) {
            try {
              writeSync(fd, chunk);
            } catch {
              break; // ENOSPC at this chunk size: go on with smaller ones
            }
          }
        }
      } finally {
        closeSync(fd);
      }
    },
    free() {
      unlinkSync(filler);
    },
  };
}
