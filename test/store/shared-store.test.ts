/**
 * openStore on a shared PostgreSQL database, as replicas use it: the KEK file is created
 * only for an empty database and a wrong one is refused; the HMAC-key cache of one replica
 * drops a key another replica rotated (through the change feed), and reads the store on
 * every request while its feed is down; run-once duties are held by exactly one replica
 * and move when it goes.
 */
import { randomBytes } from "node:crypto";
import { existsSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, expect, it } from "vitest";
import { openStore, type StoreHandle } from "../../controller/store/open-store.ts";
import type { Duty } from "../../controller/store/changes.ts";
import type { CertThumbprint } from "../../shared/fingerprint.ts";
import { describePostgres, freshDatabase, withAdmin } from "../support/postgres.ts";
import { tempDir } from "../support/temp-dir.ts";

const until = async (cond: () => boolean | Promise<boolean>, what: string, ms = 10_000) => {
  const end = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
};

describePostgres("openStore on a shared PostgreSQL database", () => {
  let db: { name: string; url: string; drop(): Promise<void> };
  let kek: string;
  const handles: StoreHandle[] = [];
  const replica = async (dutyRetryMs = 200) => {
    const h = await openStore({
      dataDir: tempDir(), url: db.url, kekFile: kek, create: true,
      background: { checkpointIntervalMs: 1000, onError: () => undefined, dutyRetryMs },
    });
    handles.push(h);
    return h;
  };

  beforeAll(async () => {
    db = await freshDatabase();
    kek = join(tempDir(), "keys", "tether.kek");
  });
  afterAll(async () => {
    for (const h of handles) await h.close();
    await db.drop();
  });

  it("the first open of an empty database writes the KEK file (0600); the keys it protects refuse another KEK", async () => {
    const a = await replica();
    expect(statSync(kek).mode & 0o777).toBe(0o600);
    // Something encrypted under the KEK: a CA key (what the controller bootstraps).
    const { createCa } = await import("../../certs/ca.ts");
    const made = await createCa({ trustDomain: "tether.local", validitySeconds: 3600 });
    expect(await a.cas.insertCa(
      {
        id: made.id, certPem: made.ca.certPem, fingerprint: made.ca.fingerprintSha256, keyType: "ed25519",
        notBefore: made.ca.notBefore.getTime(), notAfter: made.ca.notAfter.getTime(), crossCertPem: null, privateKey: made.keyDer, now: Date.now(),
      },
      { state: "active", onlyIfEmpty: true },
    )).toBe(true);
    const wrong = join(tempDir(), "wrong.kek");
    writeFileSync(wrong, randomBytes(32).toString("base64") + "\n", { mode: 0o600 });
    await expect(openStore({ dataDir: tempDir(), url: db.url, kekFile: wrong, create: true })).rejects.toThrow(/cannot open the keys stored in the database/);
    const missing = join(tempDir(), "none", "tether.kek");
    await expect(openStore({ dataDir: tempDir(), url: db.url, kekFile: missing, create: true })).rejects.toThrow(/already holds keys/);
    expect(existsSync(missing)).toBe(false);
    await expect(openStore({ dataDir: tempDir(), url: db.url, create: true })).rejects.toThrow(/--kek-file is required/);
  });

  it("a key rotated through replica B leaves replica A's cache within 1 s; with A's feed down every read goes to the store", async () => {
    const [a, b] = [handles[0]!, await replica()];
    await a.store.insertEnrollmentToken({ id: "enr", tokenHash: "h", createdAt: 0, expiresAt: Date.now() + 60_000, maxUses: 1, uses: 0, revokedAt: null, labels: {} });
    const first = Buffer.alloc(32, 1);
    const enrolled = await a.store.enrollExecutor("h", {
      id: "ex_1", name: "one", labels: {}, capacity: 1, certFingerprint: "fp" as CertThumbprint, certIssuedAt: 0, certExpiresAt: Date.now() + 3600_000, hmacKey: first, now: Date.now(),
    });
    expect(enrolled.ok).toBe(true);
    await until(() => a.changes.live(), "A's change feed to be live");
    expect((await a.store.getHmacKeys("ex_1"))?.current).toEqual(first);

    const second = Buffer.alloc(32, 2);
    const t0 = Date.now();
    await b.store.rotateHmacKey("ex_1", second, Date.now() + 300_000);
    await until(async () => (await a.store.getHmacKeys("ex_1"))?.current.equals(second) === true, "A to see B's rotation", 1000);
    console.log(`[shared-store] B's HMAC rotation reached A's cache after ${Date.now() - t0} ms`);

    // A's listening connection is terminated: until the feed is back A must not answer from memory.
    const feed = a.changes as unknown as { backendPid(): Promise<number | undefined> };
    const pid = await feed.backendPid();
    expect(pid).toBeGreaterThan(0);
    await withAdmin((c) => c.query("SELECT pg_terminate_backend($1)", [pid]));
    await until(() => !a.changes.live(), "A's feed to report not live", 3000);
    const third = Buffer.alloc(32, 3);
    await b.store.rotateHmacKey("ex_1", third, Date.now() + 300_000);
    // Read at once, whatever the feed does meanwhile: the store's answer, not the cached pair.
    expect((await a.store.getHmacKeys("ex_1"))?.current).toEqual(third);
    await until(() => a.changes.live(), "A's feed to resync");
  });

  it("an executor's auth state cached by replica A follows an epoch bump and a revocation made through B within 1 s", async () => {
    const [a, b] = [handles[0]!, handles[1]!];
    await until(() => a.changes.live(), "A's change feed to be live");
    const before = (await a.store.getExecutorAuth("ex_1"))!;
    expect(before.revoked).toBe(false);
    // A write behind the stores' back (no notification) is not seen: A answers from memory.
    const { default: pg } = await import("pg");
    const direct = new pg.Client({ connectionString: db.url });
    await direct.connect();
    await direct.query("UPDATE executors SET epoch = epoch + 100 WHERE id = 'ex_1'");
    await direct.end();
    expect((await a.store.getExecutorAuth("ex_1"))?.epoch).toBe(before.epoch);

    const epoch = await b.store.bumpEpoch("ex_1");
    await until(async () => (await a.store.getExecutorAuth("ex_1"))?.epoch === epoch, "A to see B's epoch bump", 1000);
    const t0 = Date.now();
    expect(await b.store.revokeExecutor("ex_1", Date.now())).toBe(true);
    await until(async () => (await a.store.getExecutorAuth("ex_1"))?.revoked === true, "A to see B's revocation", 1000);
    console.log(`[shared-store] B's revocation reached A's cached auth state after ${Date.now() - t0} ms`);
  });

  it("each run-once duty is held by exactly one replica, and moves within the retry when its holder closes", async () => {
    const holders = () => {
      const all: Duty[] = [];
      for (const h of handles) all.push(...h.duties.held());
      return all.sort();
    };
    await until(() => holders().length === 4, "every duty to be held");
    expect(holders()).toEqual(["ca-schedule", "jwt-schedule", "prune-nonces", "reclaim"]);
    const holder = handles.find((h) => h.duties.held().length > 0)!;
    handles.splice(handles.indexOf(holder), 1);
    await holder.close();
    const t0 = Date.now();
    await until(() => holders().length === 4, "the duties to move", 5000);
    console.log(`[shared-store] duties moved ${Date.now() - t0} ms after their holder closed`);
    expect(holders()).toEqual(["ca-schedule", "jwt-schedule", "prune-nonces", "reclaim"]);
  });
});
