/**
 * Deferred last-seen refreshes (controller/store/last-seen-coalescer.ts) in front of a real
 * SQLite store, observed through a second connection to the same file — what the CLI on
 * --data-dir (another process) would read.
 */
import { rmSync } from "node:fs";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { ExecutorCache } from "../../controller/store/executor-cache.ts";
import { KeyEncryptor } from "../../controller/store/key-encryption.ts";
import { LastSeenCoalescer } from "../../controller/store/last-seen-coalescer.ts";
import { SqliteStore } from "../../controller/store/sqlite/sqlite-store.ts";
import { DataVersionFeed } from "../../controller/store/sqlite/data-version-feed.ts";
import type { CertThumbprint } from "../../shared/fingerprint.ts";
import { tempDir } from "../support/temp-dir.ts";

const KEK = () => new KeyEncryptor(Buffer.alloc(32, 5));
const T0 = Date.UTC(2026, 0, 1);

describe("deferred last-seen refreshes over SQLite", () => {
  let dir: string;
  let inner: SqliteStore;
  let other: SqliteStore;
  let cache: ExecutorCache;

  beforeEach(async () => {
    dir = tempDir("tether-last-seen-");
    inner = new SqliteStore(join(dir, "tether.db"), KEK());
    other = new SqliteStore(join(dir, "tether.db"), KEK());
    cache = new ExecutorCache(inner, new DataVersionFeed(inner.db), { deferLastSeenMs: 200 });
    await inner.insertEnrollmentToken({ id: "enr", tokenHash: "h", createdAt: 0, expiresAt: Date.now() + 60_000, maxUses: 5, uses: 0, revokedAt: null, labels: {} });
    for (const id of ["ex_1", "ex_2"]) {
      const r = await cache.enrollExecutor("h", {
        id, name: id, labels: {}, capacity: 1, certFingerprint: "fp" as CertThumbprint, certIssuedAt: 0, certExpiresAt: T0 * 2, hmacKey: Buffer.alloc(32, 1), now: T0,
      });
      expect(r.ok).toBe(true);
    }
  });
  afterEach(async () => {
    await cache.close();
    await other.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it("the first heartbeat and every change of status or bundle version are written at once", async () => {
    await cache.recordHeartbeat("ex_1", "ready", T0 + 1_000, 1);
    expect(await other.getExecutor("ex_1")).toMatchObject({ status: "ready", lastSeenAt: T0 + 1_000 });
    await cache.recordHeartbeat("ex_1", "draining", T0 + 2_000, 1);
    expect(await other.getExecutor("ex_1")).toMatchObject({ status: "draining", lastSeenAt: T0 + 2_000 });
    await cache.recordHeartbeat("ex_1", "draining", T0 + 3_000, 2);
    expect(await other.getExecutor("ex_1")).toMatchObject({ status: "draining", lastSeenAt: T0 + 3_000 });
  });

  it("a plain refresh waits (another connection sees the older time), this process's reads see it, and it lands within deferMs", async () => {
    await cache.recordHeartbeat("ex_1", "ready", T0 + 1_000, 1);
    await cache.recordHeartbeat("ex_1", "ready", T0 + 2_000, 1);
    await cache.recordHeartbeat("ex_1", "ready", T0 + 3_000); // no version: the same as before
    expect((await other.getExecutor("ex_1"))?.lastSeenAt).toBe(T0 + 1_000);
    // A read through the controller's own store flushes first.
    expect((await cache.getExecutor("ex_1"))?.lastSeenAt).toBe(T0 + 3_000);
    expect((await other.getExecutor("ex_1"))?.lastSeenAt).toBe(T0 + 3_000);

    await cache.recordHeartbeat("ex_1", "ready", T0 + 4_000, 1);
    expect((await other.getExecutor("ex_1"))?.lastSeenAt).toBe(T0 + 3_000);
    await new Promise((r) => setTimeout(r, 500));
    expect((await other.getExecutor("ex_1"))?.lastSeenAt).toBe(T0 + 4_000);
  });

  it("a change written through supersedes a deferred refresh, and a later flush cannot undo it", async () => {
    await cache.recordHeartbeat("ex_2", "ready", T0 + 1_000);
    await cache.recordHeartbeat("ex_2", "ready", T0 + 2_000); // deferred
    await cache.recordHeartbeat("ex_2", "draining", T0 + 3_000); // written now
    expect(await other.getExecutor("ex_2")).toMatchObject({ status: "draining", lastSeenAt: T0 + 3_000 });
    await new Promise((r) => setTimeout(r, 500));
    expect(await other.getExecutor("ex_2")).toMatchObject({ status: "draining", lastSeenAt: T0 + 3_000 });
  });

  it("closing the store writes what is deferred", async () => {
    await cache.recordHeartbeat("ex_1", "ready", T0 + 1_000);
    await cache.recordHeartbeat("ex_1", "ready", T0 + 9_000);
    await cache.close();
    expect((await other.getExecutor("ex_1"))?.lastSeenAt).toBe(T0 + 9_000);
    inner = new SqliteStore(join(dir, "tether.db"), KEK());
    cache = new ExecutorCache(inner);
  });
});

describe("LastSeenCoalescer", () => {
  it("a deferred write that fails is kept and written with a later tick; the error is reported once per batch", async () => {
    const writes: [string, number][] = [];
    const errors: unknown[] = [];
    let failing = false;
    const c = new LastSeenCoalescer({
      deferMs: 20, tickMs: 10, onError: (e) => errors.push(e),
      write: async (id, h) => {
        if (failing) throw new Error("store down");
        writes.push([id, h.now]);
      },
    });
    await c.record("a", { status: "ready", now: 1, version: null });
    await c.record("b", { status: "ready", now: 1, version: null });
    failing = true;
    await c.record("a", { status: "ready", now: 2, version: null });
    await c.record("b", { status: "ready", now: 2, version: null });
    await new Promise((r) => setTimeout(r, 80));
    expect(c.pending()).toBe(2);
    expect(errors.length).toBeGreaterThanOrEqual(1);
    expect(errors.length).toBeLessThan(20); // once per tick, not once per row
    failing = false;
    await new Promise((r) => setTimeout(r, 80));
    expect(c.pending()).toBe(0);
    expect(writes).toEqual([["a", 1], ["b", 1], ["a", 2], ["b", 2]]);
    await c.close();
  });

  it("a change whose write fails is written through again by the next heartbeat", async () => {
    const writes: [string, string][] = [];
    let failing = true;
    const c = new LastSeenCoalescer({
      deferMs: 1_000, tickMs: 100,
      write: async (id, h) => {
        if (failing) throw new Error("store down");
        writes.push([id, h.status]);
      },
    });
    await expect(c.record("a", { status: "ready", now: 1, version: null })).rejects.toThrow("store down");
    failing = false;
    await c.record("a", { status: "ready", now: 2, version: null });
    expect(writes).toEqual([["a", "ready"]]);
    expect(c.pending()).toBe(0);
    await c.close();
  });
});
