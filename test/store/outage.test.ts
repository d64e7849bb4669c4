/**
 * A store that cannot be written or read fails closed, as one error: 503 UNAVAILABLE
 * with Retry-After (controller/store/unavailable.ts), and leaves nothing half-written.
 * Made to fail for real: another connection holding SQLite's write lock past the busy
 * timeout, and a full disk (a small tmpfs; skipped where mount is not permitted).
 */
import { join } from "node:path";
import Database from "better-sqlite3";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { openStore, type StoreHandle } from "../../controller/store/open-store.ts";
import { DB_FILE } from "../../controller/store/sqlite/sqlite-store.ts";
import { isTetherError, type TetherError } from "../../shared/errors.ts";
import type { CertThumbprint } from "../../shared/fingerprint.ts";
import { canMountTmpfs, mountTmpfs } from "../support/full-disk.ts";
import { tempDir } from "../support/temp-dir.ts";
import { T0 } from "./contract.ts";

const BUSY_MS = 100;

async function unavailable(p: Promise<unknown>): Promise<TetherError> {
  const e = await p.then(() => undefined, (err: unknown) => err);
  if (!isTetherError(e)) throw new Error(`expected 503 UNAVAILABLE, got ${e === undefined ? "success" : String(e)}`);
  expect({ status: e.status, code: e.code, retryAfter: e.headers?.["retry-after"] }).toEqual({ status: 503, code: "UNAVAILABLE", retryAfter: "5" });
  return e;
}

const newExecutor = (id: string) => ({
  id, name: id, labels: {}, capacity: 1, certFingerprint: "fp" as CertThumbprint, certIssuedAt: T0, certExpiresAt: T0 + 1, hmacKey: Buffer.alloc(32, 1), now: T0,
});

async function seed(h: StoreHandle): Promise<void> {
  await h.store.insertEnrollmentToken({ id: "enr_1", tokenHash: "h_1", createdAt: T0, expiresAt: T0 + 3_600_000, maxUses: 10, uses: 0, revokedAt: null, labels: {} });
  expect((await h.store.enrollExecutor("h_1", newExecutor("ex_1"))).ok).toBe(true);
  await h.store.insertApiToken({ id: "tok_1", name: "t", role: "admin", tokenHash: "ah_1", createdAt: T0, createdBy: "test", expiresAt: null, revokedAt: null, lastUsedAt: null, lastUsedIp: null });
}

describe("store outage: another connection holds the write lock past the busy timeout", () => {
  let dir: string;
  let h: StoreHandle;
  let other: Database.Database;
  beforeEach(async () => {
    dir = tempDir();
    h = await openStore({ dataDir: dir, create: true, busyTimeoutMs: BUSY_MS });
    await seed(h);
    other = new Database(join(dir, DB_FILE));
  });
  afterEach(async () => {
    if (other.inTransaction) other.exec("ROLLBACK");
    other.close();
    await h.close();
  });

  it("every write answers 503 UNAVAILABLE with Retry-After; reads still answer; nothing is written; all works after", async () => {
    other.exec("BEGIN EXCLUSIVE");
    // The writes every executor or operator request makes somewhere on its way.
    await unavailable(h.store.rememberNonce("ex_1", "nonce-aaaaaaaaaaaaaaaa", T0 + 600_000));
    await unavailable(h.store.recordHeartbeat("ex_1", "ready", T0));
    await unavailable(h.store.enrollExecutor("h_1", newExecutor("ex_2")));
    await unavailable(h.store.touchApiToken("tok_1", "127.0.0.1", T0));
    await unavailable(h.store.bumpEpoch("ex_1"));
    await unavailable(h.tasks.insertTask({ id: "t_1", kind: "noop", payload: null, selector: {}, timeoutS: 60, maxAttempts: 1, submittedBy: null, now: T0 }));
    await unavailable(h.store.ping());
    // A group commit of several writes fails as a whole.
    const batch = ["nonce-bbbbbbbbbbbbbbbb", "nonce-cccccccccccccccc"].map((n) => h.store.rememberNonce("ex_1", n, T0 + 600_000));
    for (const p of batch) await unavailable(p);
    // WAL readers are not blocked by a writer: the guards' reads still answer.
    expect((await h.store.getExecutorAuth("ex_1"))?.epoch).toBe(1);
    other.exec("ROLLBACK");

    await h.store.ping();
    expect(await h.store.rememberNonce("ex_1", "nonce-aaaaaaaaaaaaaaaa", T0 + 600_000)).toBe(true);
    expect(await h.store.rememberNonce("ex_1", "nonce-bbbbbbbbbbbbbbbb", T0 + 600_000)).toBe(true);
    expect((await h.store.enrollExecutor("h_1", newExecutor("ex_2"))).ok).toBe(true);
    expect(await h.store.bumpEpoch("ex_1")).toBe(2); // the refused bump left no trace
    expect(other.pragma("integrity_check", { simple: true })).toBe("ok");
  });

  it("errors that are not an outage pass unchanged (a bug stays a 500, a conflict stays a conflict)", async () => {
    await expect(h.store.bumpEpoch("ex_nope")).rejects.toThrow("unknown executor ex_nope");
    const dup = await h.store.insertEnrollmentToken({ id: "enr_1", tokenHash: "h_x", createdAt: T0, expiresAt: T0, maxUses: 1, uses: 0, revokedAt: null, labels: {} }).catch((e: unknown) => e);
    expect(isTetherError(dup)).toBe(false);
    expect((dup as { code?: string }).code).toMatch(/^SQLITE_CONSTRAINT/);
  });
});

describe.skipIf(!canMountTmpfs)("store outage: the disk is full", () => {
  it("writes answer 503 UNAVAILABLE, a group commit fails whole, and after space returns the database is intact", async () => {
    const disk = mountTmpfs(8);
    const dataDir = join(disk.dir, "data");
    const h = await openStore({ dataDir, create: true, busyTimeoutMs: BUSY_MS });
    await seed(h);
    const raw = new Database(join(dataDir, DB_FILE));
    // With the WAL emptied every write must grow it: no reused WAL pages hide the full disk.
    raw.pragma("wal_checkpoint(TRUNCATE)");
    disk.fill();
    const payload = { pad: "q".repeat(100_000) };
    await unavailable(h.tasks.insertTask({ id: "t_big", kind: "noop", payload, selector: {}, timeoutS: 60, maxAttempts: 1, submittedBy: null, now: T0 }));
    await unavailable(h.store.enrollExecutor("h_1", newExecutor("ex_full")));
    const nonces = Array.from({ length: 50 }, (_, i) => `nonce-full-${String(i).padStart(10, "0")}`);
    const batch = nonces.map((n) => h.store.rememberNonce("ex_1", n, T0 + 600_000));
    for (const p of batch) await unavailable(p);
    disk.free();

    expect(raw.pragma("integrity_check", { simple: true })).toBe("ok");
    expect(raw.prepare("SELECT count(*) AS n FROM nonces").get()).toEqual({ n: 0 });
    expect(raw.prepare("SELECT count(*) AS n FROM executors WHERE id = 'ex_full'").get()).toEqual({ n: 0 });
    expect(await h.store.rememberNonce("ex_1", nonces[0]!, T0 + 600_000)).toBe(true);
    expect((await h.store.enrollExecutor("h_1", newExecutor("ex_full"))).ok).toBe(true);
    raw.close();
    await h.close();
  });
});
