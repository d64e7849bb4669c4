/**
 * What the SQLite files on disk look like: private (0600: they hold task payloads and
 * encrypted keys), a WAL that shrinks again, and the writes an answer stands on synced
 * at their commit.
 */
import { chmodSync, existsSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import Database from "better-sqlite3";
import { describe, expect, it, vi } from "vitest";
import { openStore } from "../../controller/store/open-store.ts";
import { KeyEncryptor } from "../../controller/store/key-encryption.ts";
import { DB_FILE, SqliteStore, WAL_SIZE_LIMIT_BYTES } from "../../controller/store/sqlite/sqlite-store.ts";
import type { CertThumbprint } from "../../shared/fingerprint.ts";
import { tempDir } from "../support/temp-dir.ts";
import { T0 } from "./contract.ts";

const mode = (path: string) => statSync(path).mode & 0o777;

async function enroll(store: { insertEnrollmentToken: SqliteStore["insertEnrollmentToken"]; enrollExecutor: SqliteStore["enrollExecutor"] }, id: string) {
  await store.insertEnrollmentToken({ id: `enr_${id}`, tokenHash: `h_${id}`, createdAt: T0, expiresAt: T0 + 3_600_000, maxUses: 1, uses: 0, revokedAt: null, labels: {} });
  return store.enrollExecutor(`h_${id}`, {
    id, name: id, labels: {}, capacity: 1, certFingerprint: "fp" as CertThumbprint, certIssuedAt: T0, certExpiresAt: T0 + 1, hmacKey: Buffer.alloc(32, 1), now: T0,
  });
}

describe("sqlite files", () => {
  it("the database, its WAL and its shared-memory file are 0600, also when umask would allow more", async () => {
    const dir = tempDir();
    const old = process.umask(0o022);
    try {
      const h = await openStore({ dataDir: dir, create: true });
      expect((await enroll(h.store, "ex_files1")).ok).toBe(true);
      for (const f of [DB_FILE, `${DB_FILE}-wal`, `${DB_FILE}-shm`]) {
        expect(existsSync(join(dir, f)), f).toBe(true);
        expect(mode(join(dir, f)), f).toBe(0o600);
      }
      await h.close();
    } finally {
      process.umask(old);
    }
  });

  it("files an older version left 0644 are brought to 0600 when the store opens", async () => {
    const dir = tempDir();
    const h = await openStore({ dataDir: dir, create: true });
    await h.close();
    writeFileSync(join(dir, `${DB_FILE}-wal`), "");
    for (const f of [DB_FILE, `${DB_FILE}-wal`]) chmodSync(join(dir, f), 0o644);
    const again = await openStore({ dataDir: dir, create: false });
    for (const f of [DB_FILE, `${DB_FILE}-wal`, `${DB_FILE}-shm`]) expect(mode(join(dir, f)), f).toBe(0o600);
    await again.close();
  });

  it("bounds the WAL: journal_size_limit is set, and an idle controller truncates it to zero", async () => {
    const dir = tempDir();
    const errors: string[] = [];
    const h = await openStore({
      dataDir: dir, create: true,
      background: { checkpointIntervalMs: 50, truncateWhenIdleMs: 300, onError: (m) => errors.push(m) },
    });
    const raw = new Database(join(dir, DB_FILE));
    expect(raw.pragma("journal_size_limit", { simple: true })).toBe(-1); // per connection: the store's own is set below
    for (let i = 0; i < 400; i++) {
      await h.tasks.insertTask({ id: `t_${i}`, kind: "noop", payload: { pad: "p".repeat(4000) }, selector: {}, timeoutS: 60, maxAttempts: 1, submittedBy: null, now: T0 });
    }
    const wal = join(dir, `${DB_FILE}-wal`);
    expect(statSync(wal).size).toBeGreaterThan(1_000_000);
    const deadline = Date.now() + 10_000;
    while (statSync(wal).size > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    expect(statSync(wal).size).toBe(0);
    expect(raw.prepare("SELECT count(*) AS n FROM tasks").get()).toEqual({ n: 400 });
    raw.close();
    await h.close();
    expect(errors).toEqual([]);
    const s = new SqliteStore(join(dir, DB_FILE), new KeyEncryptor(Buffer.alloc(32, 1)));
    expect(s.db.pragma("journal_size_limit", { simple: true })).toBe(WAL_SIZE_LIMIT_BYTES);
    await s.close();
  });

  it("registrations, revocations and credential rotations commit with synchronous=FULL; the connection stays NORMAL", async () => {
    const dir = tempDir();
    const s = new SqliteStore(join(dir, DB_FILE), new KeyEncryptor(Buffer.alloc(32, 1)));
    const pragma = vi.spyOn(s.db, "pragma");
    const syncDuring = (fn: () => Promise<unknown>) => async () => {
      pragma.mockClear();
      await fn();
      return pragma.mock.calls.map((c) => c[0]).filter((c) => c.startsWith("synchronous"));
    };
    const FULL_THEN_NORMAL = ["synchronous = FULL", "synchronous = NORMAL"];
    expect(await syncDuring(() => enroll(s, "ex_d1"))()).toEqual(FULL_THEN_NORMAL); // the enrollment; its token insert is plain
    expect(await syncDuring(() => s.revokeExecutor("ex_d1", T0))()).toEqual(FULL_THEN_NORMAL);
    expect(await syncDuring(() => s.bumpEpoch("ex_d1"))()).toEqual(FULL_THEN_NORMAL);
    expect(await syncDuring(() => s.rememberNonce("ex_d1", "nonce-aaaaaaaaaaaaaaaa", T0 + 1))()).toEqual([]);
    expect(await syncDuring(() => s.recordHeartbeat("ex_d1", "ready", T0))()).toEqual([]);
    pragma.mockRestore();
    expect(s.db.pragma("synchronous", { simple: true })).toBe(1); // NORMAL
    await s.close();
  });
});
