/**
 * A store that cannot be reached fails closed (PROTOCOL §5, docs/security.md "Store
 * failures and durability"): heartbeat, renew, /register and operator routes answer
 * 503 UNAVAILABLE with Retry-After — never a success, never 401/403 — and so does
 * GET /readyz; once the store is back everything works and nothing was half-written.
 * Made to fail for real: another connection holding SQLite's write lock past the busy
 * timeout, a full disk (a small tmpfs; skipped where mount is not permitted), and a
 * damaged database page under each table a guard reads (reads fail too).
 */
import { closeSync, openSync, readFileSync, readSync, writeSync } from "node:fs";
import { join } from "node:path";
import Database from "better-sqlite3";
import { afterAll, describe, expect, it } from "vitest";
import { DB_FILE } from "../../controller/store/sqlite/sqlite-store.ts";
import { startTestController, type TestController } from "../support/controller.ts";
import { canMountTmpfs, mountTmpfs } from "../support/full-disk.ts";
import { executorCall, HEARTBEAT, newKeyAndCsr, register, WireClient, type Enrolled, type Response } from "../support/wire.ts";

const open: { close(): Promise<void> }[] = [];
afterAll(async () => {
  for (const c of open.reverse()) await c.close().catch(() => {});
});

interface Fixture {
  tc: TestController;
  ex: Enrolled;
  anon: WireClient;
  admin: string;
  registerBody: string;
}

async function fixture(dataDir?: string): Promise<Fixture> {
  const tc = await startTestController({ storeBusyTimeoutMs: 150, ...(dataDir ? { dataDir } : {}) });
  open.push(tc);
  const ex = await register(tc.url, tc.caPem, await tc.createToken(), { name: "outage" });
  const anon = new WireClient(tc.url, tc.caPem);
  open.push(ex.client, anon);
  const admin = (await tc.c.ctx.apiTokens.create({ name: "outage-admin", role: "admin" }, "test", { via: "test" })).token;
  const { csrPem } = await newKeyAndCsr("P-256");
  // A single-use token: a registration refused for the outage must not have used it up.
  const registerBody = JSON.stringify({ enrollment_token: await tc.createToken({ maxUses: 1 }), csr_pem: csrPem, name: "late" });
  return { tc, ex, anon, admin, registerBody };
}

/** Every kind of route that needs the store, as the test sends it. */
function requests(f: Fixture): Record<string, () => Promise<Response>> {
  return {
    heartbeat: () => executorCall(f.ex, "POST", `/v1/executors/${f.ex.id}/heartbeat`, HEARTBEAT),
    renew: () => executorCall(f.ex, "POST", `/v1/executors/${f.ex.id}/renew`, {}),
    register: () => f.anon.send("POST", "/v1/executors/register", { body: f.registerBody }),
    operator: () => f.anon.send("GET", "/api/v1/executors", { headers: { authorization: `Bearer ${f.admin}` } }),
    readyz: () => f.anon.send("GET", "/readyz"),
  };
}

async function expectAllUnavailable(f: Fixture): Promise<void> {
  for (const [name, send] of Object.entries(requests(f))) {
    const r = await send();
    expect({ name, status: r.status, code: r.json?.error?.code, retryAfter: r.headers["retry-after"] }).toEqual({
      name, status: 503, code: "UNAVAILABLE", retryAfter: "5",
    });
  }
}

async function expectAllBack(f: Fixture): Promise<void> {
  const want = { heartbeat: 200, renew: 200, register: 201, operator: 200, readyz: 200 };
  for (const [name, send] of Object.entries(requests(f))) {
    const r = await send();
    expect({ name, status: r.status }, r.text).toEqual({ name, status: want[name as keyof typeof want] });
  }
}

/** What an outage must not leave behind: a refusal in the audit log, or a half-written row. */
function expectNothingRefusedOrTorn(f: Fixture): void {
  const audit = readFileSync(join(f.tc.dataDir, "audit.log"), "utf8");
  expect(audit).not.toMatch(/"event":"(guard\.rejected|operator\.auth_failed|enrollment\.denied)"/);
  const db = new Database(join(f.tc.dataDir, DB_FILE), { readonly: true });
  try {
    expect(db.pragma("integrity_check", { simple: true })).toBe("ok");
    expect(db.prepare("SELECT count(*) AS n FROM executors WHERE name = 'late'").get()).toEqual({ n: 1 });
  } finally {
    db.close();
  }
}

describe("store outage: another connection holds the write lock past the busy timeout", () => {
  it("503 UNAVAILABLE with Retry-After everywhere, then everything works", async () => {
    const f = await fixture();
    expect((await f.anon.send("GET", "/readyz")).json).toEqual({ status: "ready" });
    const lock = new Database(join(f.tc.dataDir, DB_FILE));
    lock.exec("BEGIN EXCLUSIVE");
    try {
      await expectAllUnavailable(f);
      expect((await f.anon.send("GET", "/healthz")).status).toBe(200); // the process itself is fine
    } finally {
      lock.exec("ROLLBACK");
      lock.close();
    }
    await expectAllBack(f);
    expectNothingRefusedOrTorn(f);
  }, 60_000);
});

describe.skipIf(!canMountTmpfs)("store outage: the data dir's disk is full", () => {
  it("503 UNAVAILABLE with Retry-After everywhere, then everything works once space is back", async () => {
    const disk = mountTmpfs(16);
    const f = await fixture(join(disk.dir, "data"));
    // With the WAL emptied every write has to grow it.
    const db = new Database(join(f.tc.dataDir, DB_FILE));
    db.pragma("wal_checkpoint(TRUNCATE)");
    db.close();
    disk.fill();
    try {
      const r = requests(f);
      for (const name of ["heartbeat", "renew", "register", "operator"] as const) {
        const res = await r[name]();
        expect({ name, status: res.status, code: res.json?.error?.code, retryAfter: res.headers["retry-after"] }).toEqual({
          name, status: 503, code: "UNAVAILABLE", retryAfter: "5",
        });
      }
    } finally {
      disk.free();
    }
    await expectAllBack(f);
    expectNothingRefusedOrTorn(f);
  }, 60_000);
});

describe("store outage: a read fails (a damaged page under the table a guard reads)", () => {
  it("the mTLS guard, the operator guard and /register answer 503 UNAVAILABLE, never 401; all works once the page is back", async () => {
    const f = await fixture();
    const dbPath = join(f.tc.dataDir, DB_FILE);
    const side = new Database(dbPath);
    // Everything into the database file, so the pages read next come from there.
    side.pragma("wal_checkpoint(TRUNCATE)");
    const pageSize = side.pragma("page_size", { simple: true }) as number;
    const at = (table: string) => ((side.prepare("SELECT rootpage FROM sqlite_master WHERE name = ?").get(table) as { rootpage: number }).rootpage - 1) * pageSize;
    // A write elsewhere makes the controller's connection drop its page cache.
    let n = 0;
    const touch = () => side.prepare("INSERT INTO nonces (executor_id, nonce, expires_at) VALUES ('ex_side', ?, 0)").run(`n${n++}`);
    const fd = openSync(dbPath, "r+");
    try {
      const r = requests(f);
      for (const [table, name] of [["executors", "heartbeat"], ["api_tokens", "operator"], ["enrollment_tokens", "register"]] as const) {
        const saved = Buffer.alloc(pageSize);
        readSync(fd, saved, 0, pageSize, at(table));
        writeSync(fd, Buffer.alloc(pageSize, 0xee), 0, pageSize, at(table));
        touch();
        const res = await r[name]();
        writeSync(fd, saved, 0, pageSize, at(table));
        touch();
        expect({ table, name, status: res.status, code: res.json?.error?.code, retryAfter: res.headers["retry-after"] }).toEqual({
          table, name, status: 503, code: "UNAVAILABLE", retryAfter: "5",
        });
      }
    } finally {
      closeSync(fd);
      side.close();
    }
    await expectAllBack(f);
    expectNothingRefusedOrTorn(f);
  }, 60_000);
});
