/** The executor cache in front of a store: HMAC keys read once per executor, misses never cached. */
import { rmSync } from "node:fs";
import { tempDir } from "../support/temp-dir.ts";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { ExecutorCache } from "../../controller/store/executor-cache.ts";
import { KeyEncryptor } from "../../controller/store/key-encryption.ts";
import { SqliteStore } from "../../controller/store/sqlite/sqlite-store.ts";
import { DataVersionFeed } from "../../controller/store/sqlite/data-version-feed.ts";
import type { CertThumbprint } from "../../shared/fingerprint.ts";
/** Stores keep certificate thumbprints opaque; short stand-ins keep these tests readable. */
const tp = (s: string) => s as CertThumbprint;

describe("ExecutorCache", () => {
  let dir: string;
  let inner: SqliteStore;

  beforeEach(() => {
    dir = tempDir("tether-hmac-cache-");
    inner = new SqliteStore(join(dir, "tether.db"), new KeyEncryptor(Buffer.alloc(32, 3)));
  });
  afterEach(async () => {
    await inner.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it("reads an executor's key from the store once, then answers from memory; unknown executors are asked again", async () => {
    const key = Buffer.alloc(32, 8);
    await inner.insertEnrollmentToken({ id: "enr", tokenHash: "h", createdAt: 0, expiresAt: Date.now() + 60_000, maxUses: 2, uses: 0, revokedAt: null, labels: {} });
    const cached = new ExecutorCache(inner);
    // Writes go through the wrapper to the store.
    expect(await cached.enrollExecutor("h", { id: "ex_1", name: "one", labels: {}, capacity: 1, certFingerprint: tp("fp"), certIssuedAt: 0, certExpiresAt: 1, hmacKey: key, now: Date.now() })).toMatchObject({ ok: true });
    const reads = vi.spyOn(inner, "getHmacKeys");
    expect((await cached.getHmacKeys("ex_1"))?.current).toEqual(key);
    expect((await cached.getHmacKeys("ex_1"))?.current).toEqual(key);
    expect(await cached.getHmacKeys("ex_2")).toBeUndefined();
    expect(await cached.getHmacKeys("ex_2")).toBeUndefined();
    expect(reads.mock.calls.map(([id]) => id)).toEqual(["ex_1", "ex_2", "ex_2"]);
    expect((await cached.getExecutor("ex_1"))?.name).toBe("one");
    // A rotation through the cache evicts: the next read sees the new key and the previous one.
    const next = Buffer.alloc(32, 9);
    await cached.rotateHmacKey("ex_1", next, Date.now() + 60_000);
    expect(await cached.getHmacKeys("ex_1")).toMatchObject({ current: next, previous: key });
    expect(reads.mock.calls.map(([id]) => id)).toEqual(["ex_1", "ex_2", "ex_2", "ex_1"]);
  });

  it("auth state is answered from memory until another connection commits (PRAGMA data_version): a revocation there counts at the next read", async () => {
    await inner.insertEnrollmentToken({ id: "enr", tokenHash: "h", createdAt: 0, expiresAt: Date.now() + 60_000, maxUses: 2, uses: 0, revokedAt: null, labels: {} });
    const feed = new DataVersionFeed(inner.db);
    const cached = new ExecutorCache(inner, feed);
    await cached.enrollExecutor("h", { id: "ex_1", name: "one", labels: {}, capacity: 1, certFingerprint: tp("fp"), certIssuedAt: 0, certExpiresAt: 1, hmacKey: Buffer.alloc(32, 8), now: Date.now() });
    const reads = vi.spyOn(inner, "getExecutorAuth");
    expect((await cached.getExecutorAuth("ex_1"))?.revoked).toBe(false);
    expect((await cached.getExecutorAuth("ex_1"))?.revoked).toBe(false);
    expect(reads).toHaveBeenCalledTimes(1);
    // Writes through this connection do not move data_version: they evict through the cache.
    await cached.setDrain("ex_1", true);
    expect((await cached.getExecutorAuth("ex_1"))?.drain).toBe(true);
    expect(reads).toHaveBeenCalledTimes(2);
    // Another connection (what the CLI on --data-dir is) revokes: the next read goes to the store.
    const cli = new SqliteStore(join(dir, "tether.db"), new KeyEncryptor(Buffer.alloc(32, 3)));
    try {
      expect(await cli.revokeExecutor("ex_1", Date.now())).toBe(true);
    } finally {
      await cli.close();
    }
    expect((await cached.getExecutorAuth("ex_1"))?.revoked).toBe(true);
    expect(reads).toHaveBeenCalledTimes(3);
    // Without the feed the same cache would have answered the stale state from memory.
    const blind = new ExecutorCache(inner);
    expect((await blind.getExecutorAuth("ex_1"))?.revoked).toBe(true);
    const cli2 = new SqliteStore(join(dir, "tether.db"), new KeyEncryptor(Buffer.alloc(32, 3)));
    try {
      cli2.db.prepare("UPDATE executors SET revoked_at = NULL WHERE id = ?").run("ex_1");
    } finally {
      await cli2.close();
    }
    expect((await blind.getExecutorAuth("ex_1"))?.revoked).toBe(true);
    expect((await cached.getExecutorAuth("ex_1"))?.revoked).toBe(false);
  });

  it("a data_version that cannot be read makes the feed not live: the cache steps aside and the store's own error surfaces", async () => {
    const feed = new DataVersionFeed(inner.db);
    const cached = new ExecutorCache(inner, feed);
    expect(feed.live()).toBe(true);
    await inner.close();
    expect(feed.live()).toBe(false);
    await expect(cached.getExecutorAuth("ex_1")).rejects.toThrow();
    inner = new SqliteStore(join(dir, "tether.db"), new KeyEncryptor(Buffer.alloc(32, 3)));
  });
});
