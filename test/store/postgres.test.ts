/**
 * The PostgreSQL store: the contract every backend passes (one database for this file,
 * emptied between tests; two handles are two pools, as two replicas), then what is
 * PostgreSQL's own — migrations raced by replicas and refused when newer, nonce batches,
 * the races of §8 with more contenders, change notifications across handles and the
 * feed's recovery, outages answered 503 then recovered from, keys at rest under the KEK.
 */
import { randomBytes, randomUUID } from "node:crypto";
import pg from "pg";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { SoleProcessDuties, type Change } from "../../controller/store/changes.ts";
import { KeyEncryptor } from "../../controller/store/key-encryption.ts";
import { PostgresChangeFeed } from "../../controller/store/postgres/change-feed.ts";
import { LEASE_CANDIDATES_SQL } from "../../controller/store/postgres/dispatch.ts";
import { LATEST_SCHEMA_VERSION, migratePostgres, SchemaTooNewError } from "../../controller/store/postgres/migrations.ts";
import { openPostgresStore, type PostgresStoreHandle } from "../../controller/store/postgres/open.ts";
import { redactStoreUrl } from "../../controller/store/store-url.ts";
import { isPostgresOutage } from "../../controller/store/postgres/outage.ts";
import { createPostgresPool } from "../../controller/store/postgres/pool.ts";
import type { NewCa } from "../../controller/store/trust-types.ts";
import type { Store } from "../../controller/store/types.ts";
import { isTetherError } from "../../shared/errors.ts";
import type { CaFingerprint, CertThumbprint } from "../../shared/fingerprint.ts";
import { describePostgres, freshDatabase, withAdmin } from "../support/postgres.ts";
import { storeContract, T0 } from "./contract.ts";

const MIN = 60_000;
const tp = (s: string) => s as CertThumbprint;
const kek = new KeyEncryptor(randomBytes(32));

type Db = Awaited<ReturnType<typeof freshDatabase>>;

/** Every table of migration 1 but schema_migrations, emptied; the bundle version back to 0. */
async function emptyTables(url: string): Promise<void> {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  try {
    await c.query(`TRUNCATE enrollment_tokens, executors, nonces, api_tokens, tasks, task_selector_pairs, jwt_keys, cas, certificates,
      controller_settings RESTART IDENTITY`);
    await c.query(`UPDATE trust_bundle SET version = 0`);
  } finally {
    await c.end();
  }
}

describePostgres("postgres store", () => {
  let db: Db;
  const opened: PostgresStoreHandle[] = [];
  /** A handle on this file's database: another replica's pool. */
  const open = async (o: { listen?: boolean; keys?: KeyEncryptor; create?: boolean } = {}) => {
    const h = await openPostgresStore({ url: db.url, keys: o.keys ?? kek, create: o.create ?? true, listen: o.listen });
    opened.push(h);
    return h;
  };

  beforeAll(async () => {
    db = await freshDatabase();
  });
  afterAll(async () => {
    for (const h of opened.splice(0)) await h.close();
    await db?.drop();
  });

  storeContract("postgres", async () => ({
    open: async () => ({ ...(await openPostgresStore({ url: db.url, keys: kek, create: true })), duties: new SoleProcessDuties() }),
    destroy: () => emptyTables(db.url),
  }));

  describe("its own", () => {
    afterEach(async () => {
      for (const h of opened.splice(0)) await h.close();
      await emptyTables(db.url);
    });

    describe("migrations", () => {
      it("three pools racing on an empty database migrate it once", async () => {
        const fresh = await freshDatabase();
        const pools = [0, 1, 2].map(() => createPostgresPool(fresh.url));
        try {
          const results = await Promise.all(pools.map((p) => migratePostgres(p)));
          expect(results.map((r) => r.applied).sort()).toEqual([[], [], [LATEST_SCHEMA_VERSION]].sort());
          const rows = await pools[0]!.query(`SELECT version FROM schema_migrations`);
          expect(rows.rows).toEqual([{ version: 1 }]);
          expect(await migratePostgres(pools[1]!)).toEqual({ applied: [] });
        } finally {
          for (const p of pools) await p.end();
          await fresh.drop();
        }
      });

      it("a schema newer than the code is refused; without create, an empty database is refused without its password", async () => {
        const fresh = await freshDatabase();
        const withPassword = fresh.url.replace("//postgres@", "//postgres:s3cret-pw@");
        try {
          const empty = await openPostgresStore({ url: withPassword, keys: kek, create: false }).then(() => "opened", (e: Error) => e.message);
          expect(empty).toMatch(/^no controller state in postgres:\/\/postgres:…@/);
          expect(empty).not.toContain("s3cret-pw");
          const h = await openPostgresStore({ url: fresh.url, keys: kek, create: true });
          await h.pool.query(`INSERT INTO schema_migrations (version, name, applied_at) VALUES (99, 'from the future', 0)`);
          await h.close();
          const pool = createPostgresPool(fresh.url);
          await expect(migratePostgres(pool)).rejects.toThrow(SchemaTooNewError);
          await pool.end();
          await expect(openPostgresStore({ url: fresh.url, keys: kek, create: true })).rejects.toThrow(/schema is at version 99, newer than this tether knows \(1\)/);
          await expect(openPostgresStore({ url: fresh.url, keys: kek, create: false })).rejects.toThrow(/newer than this tether knows/);
        } finally {
          await fresh.drop();
        }
      });

      it("an unreachable server is a clear error naming the redacted URL", async () => {
        const e = await openPostgresStore({ url: "postgres://u:pw-secret@127.0.0.1:1/nope", keys: kek, create: true }).then(() => undefined, (x: Error) => x);
        expect(e?.message).toMatch(/^cannot reach PostgreSQL at postgres:\/\/u:…@127\.0\.0\.1:1\/nope/);
        expect(e?.message).not.toContain("pw-secret");
        expect(redactStoreUrl("postgres://db/x?user=a&password=p&x=1")).toBe("postgres://db/x?user=a&password=…&x=1");
      });
    });

    describe("the races of §8, harder", () => {
      it("nonces: twice in one batch, exactly the first is accepted; accepted by A, refused by B", async () => {
        const a = await open();
        const b = await open();
        const same = await Promise.all([1, 2, 3].map(() => a.store.rememberNonce("ex_n", "batched-nonce-AAAAAAA", T0 + MIN)));
        expect(same).toEqual([true, false, false]);
        const mixed = await Promise.all([
          a.store.rememberNonce("ex_n", "mixed-1-AAAAAAAAAAAAA", T0 + MIN),
          a.store.rememberNonce("ex_m", "mixed-1-AAAAAAAAAAAAA", T0 + MIN),
          a.store.rememberNonce("ex_n", "batched-nonce-AAAAAAA", T0 + MIN),
        ]);
        expect(mixed).toEqual([true, true, false]);
        expect(await b.store.rememberNonce("ex_n", "mixed-1-AAAAAAAAAAAAA", T0 + MIN)).toBe(false);
        // 200 distinct nonces at once through both handles: every one accepted, each once.
        const many = await Promise.all(Array.from({ length: 200 }, (_, i) => (i % 2 ? a : b).store.rememberNonce("ex_x", `many-${i}-AAAAAAAAAAAA`, T0 + MIN)));
        expect(many.every(Boolean)).toBe(true);
        const again = await Promise.all(Array.from({ length: 200 }, (_, i) => (i % 2 ? b : a).store.rememberNonce("ex_x", `many-${i}-AAAAAAAAAAAA`, T0 + MIN)));
        expect(again.some(Boolean)).toBe(false);
      });

      it("a single-use token raced by 10 enrollments on two handles enrolls exactly one", async () => {
        const a = await open();
        const b = await open();
        await token(a.store, "enr_race", 1);
        const results = await Promise.all(Array.from({ length: 10 }, (_, i) => enroll(i % 2 ? b.store : a.store, "enr_race", `ex_r${i}`)));
        expect(results.filter((r) => r.ok)).toHaveLength(1);
        expect(await b.store.listExecutors()).toHaveLength(1);
      });

      it("bootstraps raced on two handles: one CA, one JWT key, one admin token", async () => {
        const a = await open();
        const b = await open();
        const [cas, jwts, admins] = await Promise.all([
          Promise.all(Array.from({ length: 10 }, (_, i) => (i % 2 ? b : a).cas.insertCa(newCa(`ca_b${i}`), { state: "active", onlyIfEmpty: true }))),
          Promise.all(Array.from({ length: 10 }, (_, i) => (i % 2 ? b : a).jwtKeys.insertJwtKey(newJwt(`kid${i}`), { state: "active", onlyIfEmpty: true }))),
          Promise.all(Array.from({ length: 10 }, (_, i) => (i % 2 ? b : a).store.insertApiToken(apiToken(`tok_${i}`), { onlyIfNoActiveAdmin: true }))),
        ]);
        expect([cas, jwts, admins].map((r) => r.filter(Boolean).length)).toEqual([1, 1, 1]);
        expect((await a.cas.trustBundle()).cas).toHaveLength(1);
        expect(await b.jwtKeys.jwtKeys()).toHaveLength(1);
      });

      it("50 tasks leased concurrently by 4 executors through two handles: each exactly once; capacity holds across handles", async () => {
        const a = await open();
        const b = await open();
        const ids = ["ex_l0", "ex_l1", "ex_l2", "ex_l3"];
        for (const id of ids) await executor(a.store, id, 64);
        for (let i = 0; i < 50; i++) await a.tasks.insertTask(newTask(`t${i}`));
        const seen: string[] = [];
        for (let round = 0; round < 10 && seen.length < 50; round++) {
          const got = await Promise.all(ids.flatMap((id) => [lease(a, id, 4), lease(b, id, 4)]));
          for (const ts of got) seen.push(...ts.map((t) => t.id));
        }
        expect(seen).toHaveLength(50);
        expect(new Set(seen).size).toBe(50);
        // One executor of capacity 5 asking through both handles at once gets 5, not 10.
        await executor(a.store, "ex_cap", 5);
        for (let i = 0; i < 20; i++) await a.tasks.insertTask(newTask(`c${i}`));
        const both = await Promise.all([lease(a, "ex_cap", 5), lease(b, "ex_cap", 5), lease(a, "ex_cap", 5), lease(b, "ex_cap", 5)]);
        expect(both.flat()).toHaveLength(5);
      });
    });

    describe("dispatch", () => {
      it("the candidate query probes the pair index per label and reads the queue by index: never a scan of the backlog", async () => {
        const h = await open();
        await executor(h.store, "ex_plan", 64);
        await h.pool.query(`UPDATE executors SET labels = '{"pool":"mine","zone":"a"}' WHERE id = 'ex_plan'`);
        await h.pool.query(`INSERT INTO tasks (id, kind, payload, selector, selector_size, timeout_s, max_attempts, status, created_at, updated_at)
          SELECT 'b' || i, 'noop', 'null', CASE WHEN i % 2 = 0 THEN '{"gpu":"yes"}' ELSE '{"pool":"mine","zone":"b"}' END,
            CASE WHEN i % 2 = 0 THEN 1 ELSE 2 END, 60, 3, 'queued', 0, 0 FROM generate_series(1, 20000) i`);
        await h.pool.query(`ANALYZE`); // real statistics must not change the plan
        const plan = (await h.pool.query<{ "QUERY PLAN": string }>(`EXPLAIN ${LEASE_CANDIDATES_SQL}`, ["ex_plan", 64, 64])).rows.map((r) => r["QUERY PLAN"]).join("\n");
        expect(plan).toMatch(/Index Cond: \(\(key = l\.key\) AND \(value = l\.value\)\)/);
        expect(plan).toMatch(/Index Scan using tasks_plain_queue on tasks/);
        expect(plan).not.toMatch(/Seq Scan on (tasks|task_selector_pairs)/);
        await h.tasks.insertTask({ ...newTask("t_match"), selector: { zone: "a" } });
        expect((await lease(h, "ex_plan", 64)).map((t) => t.id)).toEqual(["t_match"]);
      });
    });

    describe("change notifications", () => {
      it("every write another replica caches reaches the other handle's feed within 1 s", async () => {
        const listener = await open({ listen: true });
        const writer = await open();
        expect(listener.changes.live()).toBe(true);
        expect(writer.changes.live()).toBe(false);
        const got: Change[] = [];
        listener.changes.subscribe((c) => got.push(c));
        const expectChange = async (write: () => Promise<unknown>, change: Change) => {
          got.length = 0;
          const t = Date.now();
          await write();
          while (!got.some((c) => JSON.stringify(c) === JSON.stringify(change))) {
            if (Date.now() - t > 1000) throw new Error(`no ${JSON.stringify(change)} within 1 s (got ${JSON.stringify(got)})`);
            await new Promise((r) => setTimeout(r, 5));
          }
        };
        await executor(writer.store, "ex_c", 4);
        const ex = { kind: "executor", id: "ex_c" } as const;
        await expectChange(() => writer.store.revokeExecutor("ex_c", T0), ex);
        await expectChange(() => writer.store.bumpEpoch("ex_c"), ex);
        await expectChange(() => writer.store.setDrain("ex_c", true), ex);
        await expectChange(() => writer.store.rotateHmacKey("ex_c", Buffer.alloc(32, 7), T0 + MIN), ex);
        await expectChange(() => writer.store.rotateCertificate("ex_c", { certFingerprint: tp("fp2"), certIssuedAt: T0, certExpiresAt: T0 + 1, prevCertGraceUntil: T0 + MIN }), ex);
        await expectChange(() => writer.store.confirmCertificate("ex_c", tp("fp2")), ex);
        await expectChange(() => writer.cas.insertCa(newCa("ca_1"), { state: "active" }), { kind: "trust" });
        await expectChange(() => writer.cas.insertCa(newCa("ca_2"), { state: "prepared" }), { kind: "trust" });
        await expectChange(() => writer.cas.activateCa("ca_2", T0), { kind: "trust" });
        await expectChange(() => writer.cas.removeCa("ca_1", T0), { kind: "trust" });
        await expectChange(() => writer.jwtKeys.insertJwtKey(newJwt("k1"), { state: "active" }), { kind: "trust" });
        await expectChange(() => writer.jwtKeys.insertJwtKey(newJwt("k2"), { state: "next" }), { kind: "trust" });
        await expectChange(() => writer.jwtKeys.promoteJwtKey("k2", T0), { kind: "trust" });
        await expectChange(() => writer.jwtKeys.removeJwtKey("k1"), { kind: "trust" });
        await expectChange(() => writer.tasks.insertTask(newTask("t_n")), { kind: "tasks" });
        await expectChange(() => writer.tasks.cancelTask("t_n", T0), { kind: "tasks" });
        await expectChange(() => writer.store.writeSettings({ heartbeat_s: "5" }, T0), { kind: "settings" });
        // A requeue.
        await executor(writer.store, "ex_q", 4);
        await writer.tasks.insertTask(newTask("t_q"));
        expect(await lease(writer, "ex_q", 1)).toHaveLength(1);
        await expectChange(() => writer.tasks.requeueExecutorLeases("ex_q", "gone", T0), { kind: "tasks" });
        // Nothing is sent for a write that changed nothing (notifications arrive in commit order).
        got.length = 0;
        expect(await writer.store.revokeExecutor("ex_c", T0)).toBe(false);
        await writer.tasks.insertTask(newTask("t_marker"));
        await waitFor(() => got.length > 0, 1000, "the marker");
        expect(got).toEqual([{ kind: "tasks" }]);
      });

      it("the feed is not live once its backend is terminated, reconnects, resyncs, and delivers again", async () => {
        const listener = await open({ listen: true });
        const writer = await open();
        const feed = listener.changes;
        if (!(feed instanceof PostgresChangeFeed)) throw new Error("a listening handle has a PostgresChangeFeed");
        let resyncs = 0;
        feed.onResync(() => resyncs++);
        const got: Change[] = [];
        feed.subscribe((c) => got.push(c));
        const pid = await feed.backendPid();
        expect(pid).toBeTypeOf("number");
        await withAdmin((c) => c.query(`SELECT pg_terminate_backend($1)`, [pid]));
        await waitFor(() => !feed.live(), 1000, "the feed to notice");
        await waitFor(() => feed.live() && resyncs === 1, 3000, "the feed to come back");
        expect(await feed.backendPid()).not.toBe(pid);
        await writer.store.writeSettings({ x: "1" }, T0);
        await waitFor(() => got.some((c) => c.kind === "settings"), 1000, "a change after the resync");
      });

      it("a handle that does not listen has a feed that is never live", async () => {
        const h = await open({ listen: false });
        expect(h.changes.live()).toBe(false);
      });
    });

    describe("outages", () => {
      it("a statement whose backend is terminated answers 503; while connections are refused everything does; then it recovers", async () => {
        const h = await open();
        await executor(h.store, "ex_o", 4);
        expect(await h.store.rememberNonce("ex_o", "before-outage-AAAAAAA", T0 + MIN)).toBe(true);
        // A revocation waits on a row lock another session holds; its backend is terminated under it.
        await withAdmin(async (admin) => {
          const holder = new pg.Client({ connectionString: db.url });
          await holder.connect();
          try {
            await holder.query(`BEGIN`);
            await holder.query(`SELECT 1 FROM executors WHERE id = 'ex_o' FOR UPDATE`);
            const pending = settle(h.store.revokeExecutor("ex_o", T0));
            await waitForAsync(async () => (await admin.query(`SELECT 1 FROM pg_stat_activity WHERE datname = $1 AND wait_event_type = 'Lock'`, [db.name])).rowCount === 1, 2000, "the revocation to wait");
            await admin.query(`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND application_name = 'tether-controller'`, [db.name]);
            expectUnavailable(await pending);
            await holder.query(`ROLLBACK`);
          } finally {
            await holder.end();
          }
          // The database refuses connections: every kind of call is a 503, none a success or another error.
          await admin.query(`ALTER DATABASE "${db.name}" ALLOW_CONNECTIONS false`);
          try {
            await admin.query(`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1`, [db.name]);
            await new Promise((r) => setTimeout(r, 50));
            const calls = [
              h.store.ping(), h.store.getExecutorAuth("ex_o"), h.store.rememberNonce("ex_o", "during-outage-AAAAAAA", T0 + MIN),
              h.store.recordHeartbeat("ex_o", "ready", T0), h.store.revokeExecutor("ex_o", T0), h.tasks.leaseTasks(leaseReq("ex_o", 1)),
              h.cas.trustBundle(), h.jwtKeys.jwtKeys(), h.store.insertApiToken(apiToken("tok_o"), { onlyIfNoActiveAdmin: true }),
            ].map(settle);
            for (const c of calls) expectUnavailable(await c);
          } finally {
            await admin.query(`ALTER DATABASE "${db.name}" ALLOW_CONNECTIONS true`);
          }
        });
        await h.store.ping();
        expect(await h.store.rememberNonce("ex_o", "before-outage-AAAAAAA", T0 + MIN)).toBe(false);
        expect(await h.store.rememberNonce("ex_o", "during-outage-AAAAAAA", T0 + MIN)).toBe(true);
        expect(await h.store.revokeExecutor("ex_o", T0)).toBe(true);
      });

      it("classifies errors: connection-level ones are outages, SQL errors are not", () => {
        const withCode = (code: string, message = "x") => Object.assign(new Error(message), { code });
        for (const e of [withCode("ECONNREFUSED"), withCode("57P01"), withCode("08006"), withCode("53300"), withCode("40P01"),
          new Error("Connection terminated unexpectedly"), new Error("timeout exceeded when trying to connect"),
          new AggregateError([withCode("ECONNREFUSED")], "connect"), new Error("wrapped", { cause: withCode("57P03") })]) {
          expect(isPostgresOutage(e), e.message).toBe(true);
        }
        for (const e of [withCode("23505"), withCode("42P01"), withCode("22P02"), new Error("unknown executor ex_1"), "57P01"]) {
          expect(isPostgresOutage(e), String(e)).toBe(false);
        }
      });
    });

    describe("keys at rest", () => {
      it("are stored encrypted; another KEK cannot open them and says so (not an outage)", async () => {
        const h = await open();
        const hmac = Buffer.from("0123456789abcdef0123456789abcdef");
        await token(h.store, "enr_k", 1);
        expect((await enroll(h.store, "enr_k", "ex_k", hmac)).ok).toBe(true);
        await h.cas.insertCa(newCa("ca_k"), { state: "active" });
        await h.jwtKeys.insertJwtKey(newJwt("kid_k"), { state: "active" });
        const raw = await h.pool.query<{ n: number; hit: boolean }>(
          `SELECT length(hmac_key_enc) AS n, position($1::bytea IN hmac_key_enc) > 0 AS hit FROM executors WHERE id = 'ex_k'`, [hmac]);
        expect(raw.rows[0]).toEqual({ n: 1 + 12 + 16 + 32, hit: false });
        expect((await h.store.getHmacKeys("ex_k"))?.current).toEqual(hmac);

        const wrong = await open({ keys: new KeyEncryptor(randomBytes(32)) });
        for (const attempt of [wrong.cas.caPrivateKey("ca_k"), wrong.jwtKeys.jwtPrivateKey("kid_k"), wrong.store.getHmacKeys("ex_k")].map(settle)) {
          const e = await attempt;
          expect(isTetherError(e)).toBe(false);
          expect((e as Error).message).toMatch(/^cannot decrypt .*: the key-encryption key does not open it/);
        }
      });
    });
  });
});

// ---- helpers ---------------------------------------------------------------------

/** What a call rejected with (undefined when it succeeded), handled from the start. */
const settle = (p: Promise<unknown>): Promise<unknown> => p.then(() => undefined, (e: unknown) => e);

function expectUnavailable(e: unknown): void {
  if (!isTetherError(e)) throw new Error(`expected 503 UNAVAILABLE, got ${e === undefined ? "success" : String(e)}`);
  expect({ status: e.status, code: e.code }).toEqual({ status: 503, code: "UNAVAILABLE" });
}

async function waitFor(cond: () => boolean, timeoutMs: number, what: string): Promise<void> {
  return waitForAsync(async () => cond(), timeoutMs, what);
}

async function waitForAsync(cond: () => Promise<boolean>, timeoutMs: number, what: string): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

async function token(store: Store, id: string, maxUses: number): Promise<void> {
  await store.insertEnrollmentToken({ id, tokenHash: `hash-${id}`, createdAt: T0, expiresAt: T0 + 60 * MIN, maxUses, uses: 0, revokedAt: null, labels: {} });
}

function enroll(store: Store, tokenId: string, id: string, hmacKey = Buffer.alloc(32, 1), capacity = 1) {
  return store.enrollExecutor(`hash-${tokenId}`, {
    id, name: id, labels: {}, capacity, certFingerprint: tp(`fp-${id}`), certIssuedAt: T0, certExpiresAt: T0 + 60 * MIN, hmacKey, now: T0,
  });
}

async function executor(store: Store, id: string, capacity: number): Promise<void> {
  const tokenId = `enr_${randomUUID()}`;
  await token(store, tokenId, 1);
  expect((await enroll(store, tokenId, id, Buffer.alloc(32, 1), capacity)).ok).toBe(true);
}

const newTask = (id: string) => ({ id, kind: "noop", payload: { id }, selector: {}, timeoutS: 60, maxAttempts: 3, submittedBy: null, now: T0 });

const leaseReq = (executorId: string, max: number) => ({
  executorId, epoch: 1, max, aliveSince: T0 - MIN, leaseExpiresAt: T0 + 10 * MIN, now: T0, newLeaseId: () => `lease_${randomUUID()}`,
});
const lease = (h: PostgresStoreHandle, executorId: string, max: number) => h.tasks.leaseTasks(leaseReq(executorId, max));

function newCa(id: string): NewCa {
  return {
    id, certPem: `cert-${id}`, fingerprint: `fp-${id}` as CaFingerprint, keyType: "ed25519", notBefore: T0 - MIN, notAfter: T0 + 600 * MIN,
    crossCertPem: null, privateKey: Buffer.from(`key-of-${id}`), now: T0,
  };
}

const newJwt = (kid: string) => ({ kid, signsFrom: T0, publicKey: Buffer.from(`pub-${kid}`), privateKey: Buffer.from(`priv-${kid}`), now: T0 });

const apiToken = (id: string) => ({
  id, name: id, role: "admin" as const, tokenHash: `hash-${id}`, createdAt: T0, createdBy: "test", expiresAt: null, revokedAt: null,
  lastUsedAt: null, lastUsedIp: null,
});
