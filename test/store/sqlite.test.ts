/**
 * The embedded SQLite store: the contract every backend passes, on real files (two
 * handles on one file stand for two processes), then what is SQLite's own — the
 * factory, the dispatch index and its query plan, upgrades, group commit, keys at rest.
 */
import { existsSync, readFileSync, rmSync } from "node:fs";
import { tempDir } from "../support/temp-dir.ts";
import { join } from "node:path";
import Database from "better-sqlite3";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { openStore, type StoreHandle } from "../../controller/store/open-store.ts";
import { DB_FILE } from "../../controller/store/sqlite/sqlite-store.ts";
import { ELIGIBLE_EXECUTOR_SQL, LEASE_CANDIDATES_SQL } from "../../controller/store/sqlite/dispatch.ts";
import { migrate, migrations } from "../../controller/store/sqlite/migrations.ts";
import { storeContract, T0 } from "./contract.ts";
import type { CertThumbprint } from "../../shared/fingerprint.ts";
/** Stores keep certificate thumbprints opaque; short stand-ins keep these tests readable. */
const tp = (s: string) => s as CertThumbprint;


storeContract("sqlite", async () => {
  const dir = tempDir();
  return {
    open: () => openStore({ dataDir: dir, create: true }),
    destroy: async () => rmSync(dir, { recursive: true, force: true }),
  };
});

describe("sqlite store", () => {
  let dir: string;
  let h: StoreHandle;
  let raw: Database.Database;

  beforeEach(async () => {
    dir = tempDir();
    h = await openStore({ dataDir: dir, create: true });
    raw = new Database(join(dir, DB_FILE));
  });
  afterEach(async () => {
    raw.close();
    await h.close();
    rmSync(dir, { recursive: true, force: true });
  });

  async function executor(id: string, labels: Record<string, string>): Promise<void> {
    await h.store.insertEnrollmentToken({ id: `enr_${id}`, tokenHash: `h_${id}`, createdAt: T0, expiresAt: T0 + 3_600_000, maxUses: 1, uses: 0, revokedAt: null, labels: {} });
    const r = await h.store.enrollExecutor(`h_${id}`, {
      id, name: id, labels, capacity: 64, certFingerprint: tp("fp"), certIssuedAt: T0, certExpiresAt: T0 + 1, hmacKey: Buffer.alloc(32, 5), now: T0,
    });
    expect(r.ok).toBe(true);
  }
  const task = (id: string, selector: Record<string, string>) =>
    h.tasks.insertTask({ id, kind: "noop", payload: null, selector, timeoutS: 60, maxAttempts: 3, submittedBy: null, now: T0 });
  const lease = (executorId: string) =>
    h.tasks.leaseTasks({ executorId, epoch: 1, max: 64, aliveSince: T0, leaseExpiresAt: T0 + 60_000, now: T0, newLeaseId: () => `lease_${Math.random()}` });
  const plan = (sql: string, params: Record<string, unknown>) =>
    (raw.prepare(`EXPLAIN QUERY PLAN ${sql}`).all(params) as { detail: string }[]).map((r) => r.detail);

  describe("openStore", () => {
    it("with create: false refuses a data dir without state, and writes nothing there", async () => {
      const empty = join(tempDir(), "data");
      await expect(openStore({ dataDir: empty, create: false })).rejects.toThrow(`no controller state in ${empty}`);
      expect(existsSync(empty)).toBe(false);
      rmSync(join(empty, ".."), { recursive: true, force: true });
      const reopened = await openStore({ dataDir: dir, create: false });
      await reopened.close();
    });

    it("refuses a store URL it has no backend for", async () => {
      await expect(openStore({ dataDir: dir, url: "mysql://tether:secret@db/tether", create: true })).rejects.toThrow(/unsupported store "mysql:\/\/tether:…@db\/tether"/);
    });

    it("with background duties, runs and stops the WAL checkpointer", async () => {
      const errors: string[] = [];
      const bg = await openStore({ dataDir: dir, create: false, background: { checkpointIntervalMs: 20, onError: (m) => errors.push(m) } });
      await bg.store.rememberNonce("ex_a", "nonce-bg-AAAAAAAAAAA", T0);
      await new Promise((r) => setTimeout(r, 100));
      await bg.close(); // resolves only once the checkpointer's thread has stopped
      expect(errors).toEqual([]);
    });
  });

  describe("dispatch", () => {
    it("the candidate query walks indexes only: plain tasks by (status, selector_size), the others from the executor's label pairs", async () => {
      for (let i = 0; i < 20; i++) await executor(`ex_q${i}`, { pool: "mine", zone: "a" });
      for (let i = 0; i < 2000; i++) await task(`t_${i}`, i % 3 ? { gpu: "yes" } : i % 2 ? { pool: "mine", zone: "b" } : {});
      raw.exec("ANALYZE"); // real statistics must not change the plan
      const steps = plan(LEASE_CANDIDATES_SQL, { executorId: "ex_q0", limit: 64 });
      expect(steps).toContain("SEARCH tasks USING INDEX tasks_plain_queue (status=? AND selector_size=?)");
      // Label pairs are counted in the pair index; only the tasks that match are read.
      const matched = steps.filter((s) => / (e|l|p|m|t)( |$)|GROUP BY/.test(s));
      expect(matched).toEqual([
        "CO-ROUTINE m",
        "SEARCH e USING INDEX sqlite_autoindex_executors_1 (id=?)",
        expect.stringMatching(/^SCAN l VIRTUAL TABLE/),
        "SEARCH p USING PRIMARY KEY (key=? AND value=?)",
        "USE TEMP B-TREE FOR GROUP BY",
        "SCAN m",
        "SEARCH t USING INDEX sqlite_autoindex_tasks_1 (id=?)",
      ]);
      expect(steps.filter((s) => /^SCAN (tasks|t|p|e|executors|task_selector_pairs)\b/.test(s))).toEqual([]);
      expect(plan(ELIGIBLE_EXECUTOR_SQL, { executorId: "ex_q0", epoch: 1, aliveSince: T0 })).toEqual([
        "SEARCH e USING INDEX sqlite_autoindex_executors_1 (id=?)",
        "CORRELATED SCALAR SUBQUERY 1",
        "SEARCH t USING COVERING INDEX tasks_executor (executor_id=? AND status=?)",
      ]);
    });

    it("the pair index holds exactly the pairs of queued tasks through every transition", async () => {
      const pairs = () => raw.prepare(`SELECT task_id, key, value FROM task_selector_pairs ORDER BY task_id, key`).all();
      const expected = () =>
        raw.prepare(`SELECT t.id AS task_id, j.key, j.value FROM tasks t, json_each(t.selector) j WHERE t.status = 'queued' ORDER BY t.id, j.key`).all();
      await executor("ex_p", { a: "1", b: "2" });
      await task("t_ab", { a: "1", b: "2" });
      await task("t_a", { a: "1" });
      await task("t_c", { c: "3" });
      await task("t_plain", {});
      expect(pairs()).toHaveLength(4);
      expect(pairs()).toEqual(expected());
      const leased = await lease("ex_p");
      expect(leased.map((t) => t.id)).toEqual(["t_ab", "t_a", "t_plain"]);
      expect(pairs()).toEqual(expected());
      expect(pairs()).toHaveLength(1);
      await h.tasks.failLease(leased[0]?.leaseId ?? "", "ex_p", 1, "retry", true, T0);
      expect(pairs()).toEqual(expected());
      await h.tasks.cancelTask("t_c", T0);
      await h.tasks.requeueExecutorLeases("ex_p", "gone", T0);
      expect(pairs()).toEqual(expected());
      expect(pairs()).toHaveLength(3);
      expect(() => raw.prepare(`UPDATE tasks SET selector = '{}' WHERE id = 't_a'`).run()).toThrow(/selector cannot change/);
    });

    it("an existing database is upgraded: the dispatch index is built from the tasks already there", async () => {
      const old = join(tempDir(), "data");
      const v3 = await openStore({ dataDir: old, create: true }).then(async (s) => {
        await s.close();
        return new Database(join(old, DB_FILE));
      });
      // Rebuild it as it was before migration 4.
      v3.exec(`DROP TABLE tasks; DROP TABLE task_selector_pairs; DELETE FROM schema_migrations WHERE version IN (3, 4)`); // later migrations (5: executors) stay applied
      migrate(v3, migrations.slice(0, 3));
      const insert = v3.prepare(`INSERT INTO tasks (id, kind, payload, selector, timeout_s, max_attempts, status, created_at, updated_at)
                                 VALUES (?, 'noop', 'null', ?, 60, 3, ?, 0, 0)`);
      insert.run("t_leased", '{"pool":"p"}', "leased");
      insert.run("t_wrong", '{"pool":"q"}', "queued");
      insert.run("t_pool", '{"pool":"p"}', "queued");
      insert.run("t_plain", "{}", "queued");
      v3.close();
      const upgraded = await openStore({ dataDir: old, create: false });
      try {
        const db = new Database(join(old, DB_FILE), { readonly: true });
        expect(db.prepare(`SELECT id, selector_size FROM tasks ORDER BY rowid`).all()).toEqual([
          { id: "t_leased", selector_size: 1 }, { id: "t_wrong", selector_size: 1 }, { id: "t_pool", selector_size: 1 }, { id: "t_plain", selector_size: 0 },
        ]);
        expect(db.prepare(`SELECT task_id FROM task_selector_pairs ORDER BY task_id`).pluck().all()).toEqual(["t_pool", "t_wrong"]);
        db.close();
        await upgraded.store.insertEnrollmentToken({ id: "enr", tokenHash: "h", createdAt: T0, expiresAt: T0 + 1, maxUses: 1, uses: 0, revokedAt: null, labels: {} });
        await upgraded.store.enrollExecutor("h", { id: "ex_u", name: "u", labels: { pool: "p" }, capacity: 8, certFingerprint: tp("fp"), certIssuedAt: T0, certExpiresAt: T0, hmacKey: Buffer.alloc(32), now: T0 });
        const got = await upgraded.tasks.leaseTasks({ executorId: "ex_u", epoch: 1, max: 8, aliveSince: T0, leaseExpiresAt: T0, now: T0, newLeaseId: () => `l_${Math.random()}` });
        expect(got.map((t) => t.id)).toEqual(["t_pool", "t_plain"]);
      } finally {
        await upgraded.close();
        rmSync(join(old, ".."), { recursive: true, force: true });
      }
    });
  });

  it("group commit: a nonce is in the database, for every other connection, when its promise settles", async () => {
    const seen = raw.prepare(`SELECT COUNT(*) FROM nonces WHERE nonce = ?`).pluck();
    const pending = [h.store.rememberNonce("ex_a", "nonce-gc-1-AAAAAAAAA", T0), h.store.rememberNonce("ex_a", "nonce-gc-2-AAAAAAAAA", T0)];
    expect(seen.get("nonce-gc-1-AAAAAAAAA")).toBe(0); // queued for the end of this turn, not yet written
    expect(await pending[0]).toBe(true);
    expect(seen.get("nonce-gc-1-AAAAAAAAA")).toBe(1);
    expect(seen.get("nonce-gc-2-AAAAAAAAA")).toBe(1);
    expect(await pending[1]).toBe(true);
  });

  it("HMAC keys are stored encrypted: neither the database nor its WAL holds the key", async () => {
    const key = Buffer.from("0123456789abcdef0123456789abcdef");
    await h.store.insertEnrollmentToken({ id: "enr_k", tokenHash: "hk", createdAt: T0, expiresAt: T0 + 1, maxUses: 1, uses: 0, revokedAt: null, labels: {} });
    await h.store.enrollExecutor("hk", { id: "ex_k", name: "k", labels: {}, capacity: 1, certFingerprint: tp("fp"), certIssuedAt: T0, certExpiresAt: T0, hmacKey: key, now: T0 });
    for (const f of [DB_FILE, `${DB_FILE}-wal`]) {
      const path = join(dir, f);
      if (existsSync(path)) expect(readFileSync(path).includes(key), f).toBe(false);
    }
    expect(raw.prepare(`SELECT length(hmac_key_enc) FROM executors WHERE id = 'ex_k'`).pluck().get()).toBe(1 + 12 + 16 + 32);
    expect((await h.store.getHmacKeys("ex_k"))?.current).toEqual(key);
  });
});
