/**
 * TLS session resumption across controller restarts and replicas (docs/security.md "TLS
 * session resumption"), over real TLS with certificates from the real /register path:
 * a ticket from before a restart (same data dir) or from another replica (PostgreSQL)
 * resumes — `isSessionReused()` on the client — and the connection is served; the
 * ticket keys are stored sealed; and a resumed connection, which presents the client
 * certificate of its original handshake, is refused exactly as a full handshake would be
 * by the trust, time and revocations of NOW: an expired certificate, a CA that left the
 * bundle, a revoked executor, another executor's path.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { readFileSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { inspect } from "node:util";
import { connect } from "node:tls";
import { signRequestHeaders } from "../../shared/hmac.ts";
import { newNonce } from "../../shared/random.ts";
import { KeyEncryptor, KEK_FILE } from "../../controller/store/key-encryption.ts";
import { TICKET_KEYS_SETTING, TlsTicketKeys } from "../../controller/domain/trust/tls-ticket-keys.ts";
import { startTestController, type TestController } from "../support/controller.ts";
import { register, type Enrolled } from "../support/wire.ts";
import { parseRaw } from "../support/raw-http.ts";
import { tempDir } from "../support/temp-dir.ts";
import { describePostgres, freshDatabase } from "../support/postgres.ts";

const opened: TestController[] = [];
afterAll(async () => {
  for (const tc of opened.reverse()) await tc.close().catch(() => undefined);
});

async function controller(overrides: Parameters<typeof startTestController>[0] = {}): Promise<TestController> {
  const tc = await startTestController(overrides);
  opened.push(tc);
  return tc;
}

async function enroll(tc: TestController): Promise<Enrolled> {
  const e = await register(tc.url, tc.caPem, await tc.createToken());
  await e.client.close(); // these tests open their own connections
  return e;
}

interface Exchange {
  /** The client resumed the session it offered (no certificate exchange, no signatures). */
  reused: boolean;
  status?: number;
  code?: string;
  json: any;
  /** The latest session the server sent (to resume next time). */
  session?: Buffer;
}

/**
 * One signed executor request (mTLS + JWT + HMAC) on a new TLS connection to `port`,
 * offering `session`; `as` signs for another executor's path (the certificate stays e's).
 */
function exchange(port: number, e: Enrolled, caPem: string, session?: Buffer, path = `/v1/executors/${e.id}/heartbeat`, as = e): Promise<Exchange> {
  return new Promise((resolve, reject) => {
    const body = JSON.stringify({ status: "ready", running: 0, capacity: 2, leases: [] });
    const sig = signRequestHeaders(as.hmacKey, { method: "POST", target: path, executorId: as.id, body }, newNonce);
    const headers = { host: "localhost", authorization: `Bearer ${as.jwt}`, "content-type": "application/json", "content-length": String(Buffer.byteLength(body)), connection: "close", ...sig };
    const raw = `POST ${path} HTTP/1.1\r\n${Object.entries(headers).map(([k, v]) => `${k}: ${v}`).join("\r\n")}\r\n\r\n${body}`;
    let latest: Buffer | undefined;
    let reused = false;
    let text = "";
    const s = connect({ host: "127.0.0.1", port, servername: "localhost", ca: caPem, cert: e.certPem, key: e.keyPem, session }, () => {
      reused = s.isSessionReused();
      s.write(raw);
    });
    s.on("session", (x: Buffer) => (latest = x));
    s.on("data", (d: Buffer) => (text += d.toString("utf8")));
    s.on("error", reject);
    s.on("close", () => {
      const r = parseRaw(text);
      resolve({ reused, status: r.status, code: r.json?.error?.code, json: r.json, session: latest });
    });
  });
}

/** A session from a first, full handshake that was served (200). */
async function firstSession(tc: TestController, e: Enrolled): Promise<Buffer> {
  const first = await exchange(tc.c.port, e, tc.caPem);
  expect([first.reused, first.status]).toEqual([false, 200]);
  expect(first.session).toBeDefined();
  return first.session!;
}

async function adminToken(tc: TestController): Promise<string> {
  return (await tc.c.ctx.apiTokens.create({ name: "resumption-admin", role: "admin" }, "test", { via: "test" })).token;
}

function operatorCall(tc: TestController, token: string, method: string, path: string, body?: unknown): Promise<{ status?: number; json: any; headers: Record<string, string> }> {
  return new Promise((resolve, reject) => {
    const raw = body === undefined ? "" : JSON.stringify(body);
    const s = connect({ host: "127.0.0.1", port: tc.c.port, servername: "localhost", rejectUnauthorized: false }, () =>
      s.write(`${method} ${path} HTTP/1.1\r\nhost: localhost\r\nauthorization: Bearer ${token}\r\nconnection: close\r\n${method === "POST" ? `content-type: application/json\r\ncontent-length: ${Buffer.byteLength(raw)}\r\n` : ""}\r\n${raw}`),
    );
    let text = "";
    s.on("data", (d: Buffer) => (text += d.toString("utf8")));
    s.on("error", reject);
    s.on("close", () => resolve(parseRaw(text)));
  });
}

const auditEvents = (tc: TestController) =>
  readFileSync(join(tc.dataDir, "audit.log"), "utf8").trim().split("\n").map((l) => JSON.parse(l) as { event: string } & Record<string, unknown>);

async function eventually<T>(fn: () => Promise<T | undefined>, what: string, timeoutMs = 10_000): Promise<T> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v !== undefined) return v;
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

describe("a ticket survives a controller restart", () => {
  it("resumes on the controller restarted on the same data dir, is served, and hands out a fresh ticket", async () => {
    const tc = await controller();
    const e = await enroll(tc);
    const session = await firstSession(tc, e);
    const before = tc.c.tlsTickets.current().name.toString("hex");
    await tc.restart();
    expect(tc.c.tlsTickets.current().name.toString("hex")).toBe(before);
    const resumed = await exchange(tc.c.port, e, tc.caPem, session);
    expect([resumed.reused, resumed.status]).toEqual([true, 200]);
    // A resumed connection gets a new ticket (under the current key), which resumes too.
    expect(resumed.session).toBeDefined();
    const again = await exchange(tc.c.port, e, tc.caPem, resumed.session);
    expect([again.reused, again.status]).toEqual([true, 200]);
  });

  it("a ticket the controller cannot decrypt (another controller's) is a full handshake, not a failure", async () => {
    const tc = await controller();
    const other = await controller();
    const e = await enroll(tc);
    const foreign = await firstSession(other, await enroll(other));
    const r = await exchange(tc.c.port, e, tc.caPem, foreign);
    expect([r.reused, r.status]).toEqual([false, 200]);
    expect((await exchange(tc.c.port, e, tc.caPem)).status).toBe(200); // and the controller is still there
  });
});

describe("the ticket keys at rest", () => {
  it("are sealed with the store's key-encryption key, bound to their use, and never printed", async () => {
    const tc = await controller();
    const ring = tc.c.tlsTickets;
    const key = ring.current();
    const secret = [key.hmac, key.aes];
    // Nowhere in the data dir in the clear (database, WAL, anything else).
    for (const f of readdirSync(tc.dataDir, { recursive: true, withFileTypes: true })) {
      if (!f.isFile()) continue;
      const bytes = readFileSync(join(f.parentPath, f.name));
      for (const s of secret) {
        expect(bytes.includes(s), f.name).toBe(false);
        expect(bytes.includes(Buffer.from(s.toString("base64"))), f.name).toBe(false);
        expect(bytes.includes(Buffer.from(s.toString("hex"))), f.name).toBe(false);
      }
    }
    const stored = (await tc.c.ctx.store.readSettings())[TICKET_KEYS_SETTING]!;
    const kek = KeyEncryptor.fromFile(join(tc.dataDir, KEK_FILE));
    const opened = JSON.parse(kek.decrypt(Buffer.from(stored, "base64"), "tether/tls-ticket-keys/v1").toString("utf8")) as { k: string }[];
    expect(Buffer.from(opened[0]!.k, "base64").subarray(16, 32).equals(key.hmac)).toBe(true);
    // Another AAD (another sealed value's) does not open it.
    expect(() => kek.decrypt(Buffer.from(stored, "base64"), "hmac")).toThrow();
    expect(inspect(ring)).toBe("TlsTicketKeys { keys: 1 }");
    expect(JSON.stringify({ ring })).toBe('{"ring":{"keys":1}}');
  });
});

describe("a resumed connection is checked with the trust of now (refused exactly as a full handshake)", () => {
  it("an expired client certificate → 401 CERT_REQUIRED", async () => {
    const tc = await controller({ certTtlSeconds: 3 });
    const e = await enroll(tc);
    const session = await firstSession(tc, e);
    const notAfter = Date.parse(e.reg.cert_expires_at);
    await new Promise((r) => setTimeout(r, Math.max(0, notAfter - Date.now()) + 200));
    const resumed = await exchange(tc.c.port, e, tc.caPem, session);
    expect([resumed.reused, resumed.status, resumed.code]).toEqual([true, 401, "CERT_REQUIRED"]);
    const full = await exchange(tc.c.port, e, tc.caPem);
    expect([full.reused, full.status, full.code]).toEqual([false, 401, "CERT_REQUIRED"]);
  });

  it("a revoked executor → 401 CERT_REVOKED", async () => {
    const tc = await controller();
    const e = await enroll(tc);
    const session = await firstSession(tc, e);
    const admin = await adminToken(tc);
    expect((await operatorCall(tc, admin, "POST", `/api/v1/executors/${e.id}/revoke`, {})).status).toBe(200);
    const resumed = await exchange(tc.c.port, e, tc.caPem, session);
    expect([resumed.reused, resumed.status, resumed.code]).toEqual([true, 401, "CERT_REVOKED"]);
    const full = await exchange(tc.c.port, e, tc.caPem);
    expect([full.reused, full.status, full.code]).toEqual([false, 401, "CERT_REVOKED"]);
  });

  it("a revocation made while the controller was down → 401 CERT_REVOKED after the restart", async () => {
    const tc = await controller();
    const e = await enroll(tc);
    const session = await firstSession(tc, e);
    await tc.c.ctx.executors.revoke(e.id, { via: "test" });
    await tc.restart();
    const resumed = await exchange(tc.c.port, e, tc.caPem, session);
    expect([resumed.reused, resumed.status, resumed.code]).toEqual([true, 401, "CERT_REVOKED"]);
  });

  it("executor A's resumed connection on executor B's path → 403 IDENTITY_MISMATCH", async () => {
    const tc = await controller();
    const a = await enroll(tc);
    const b = await enroll(tc);
    const session = await firstSession(tc, a);
    const resumed = await exchange(tc.c.port, a, tc.caPem, session, `/v1/executors/${b.id}/heartbeat`, b);
    expect([resumed.reused, resumed.status, resumed.code]).toEqual([true, 403, "IDENTITY_MISMATCH"]);
  });

  it("a certificate whose CA has left the bundle (retired by a rotation) → 401 CERT_REQUIRED, refused for its issuer", async () => {
    const tc = await controller({ certTtlSeconds: 4, serverCertTtlSeconds: 3, serverCertCheckMs: 250, caTtlSeconds: 240 });
    const admin = await adminToken(tc);
    const e = await enroll(tc);
    const session = await firstSession(tc, e);
    expect((await operatorCall(tc, admin, "POST", "/api/v1/ca/rotate", {})).status).toBe(201);
    expect((await operatorCall(tc, admin, "POST", "/api/v1/ca/activate", { force: true })).status).toBe(200);
    // The retired CA leaves the bundle once the last certificate it issued has expired (e's, the old server certificate).
    await eventually(async () => (tc.c.ctx.cas.records().length === 1 ? true : undefined), "the retired CA to leave the bundle");
    const resumed = await exchange(tc.c.port, e, tc.caPem, session);
    expect([resumed.reused, resumed.status, resumed.code]).toEqual([true, 401, "CERT_REQUIRED"]);
    // Refused because its issuer is no longer trusted (checked before its validity), not merely because it expired.
    const rejected = auditEvents(tc).filter((x) => x.event === "guard.rejected" && x.code === "CERT_REQUIRED");
    expect(rejected.map((x) => x.reason)).toContain("untrusted issuer");
  }, 20_000);
});

describePostgres("replicas share the ticket keys (PostgreSQL)", () => {
  let db: { url: string; drop(): Promise<void> };
  beforeAll(async () => {
    db = await freshDatabase();
  });
  afterAll(async () => {
    for (const tc of opened.splice(0).reverse()) await tc.close().catch(() => undefined);
    await db.drop();
  });

  it("a ticket from replica A resumes on replica B, before and after A rotates the keys", async () => {
    const kekFile = join(tempDir(), "kek");
    const a = await controller({ storeUrl: db.url, kekFile });
    const b = await controller({ storeUrl: db.url, kekFile });
    expect(b.c.tlsTickets.current().name.equals(a.c.tlsTickets.current().name)).toBe(true);
    const e = await enroll(a);
    const fromA = await firstSession(a, e);
    const onB = await exchange(b.c.port, e, a.caPem, fromA);
    expect([onB.reused, onB.status]).toEqual([true, 200]);
    // A rotation (one replica writes; the other reads it on the change feed): the previous key still decrypts.
    const old = a.c.tlsTickets.current().name;
    const rotator = await TlsTicketKeys.open(a.c.ctx.store, KeyEncryptor.fromFile(kekFile), { rotationMs: 0 });
    expect(await rotator.rotateIfDue()).toBe(true);
    const fresh = rotator.current().name;
    for (const tc of [a, b]) await eventually(async () => (tc.c.tlsTickets.current().name.equals(fresh) ? true : undefined), "the replicas to take the new key");
    expect(b.c.tlsTickets.find(old)).toBeDefined();
    const oldTicket = await exchange(b.c.port, e, a.caPem, fromA);
    expect([oldTicket.reused, oldTicket.status]).toEqual([true, 200]);
    const newFromA = await exchange(a.c.port, e, a.caPem);
    const newOnB = await exchange(b.c.port, e, a.caPem, newFromA.session);
    expect([newOnB.reused, newOnB.status]).toEqual([true, 200]);
    // A revocation through B is enforced on A's resumed connections too.
    await b.c.ctx.executors.revoke(e.id, { via: "test" });
    const revoked = await eventually(async () => {
      const r = await exchange(a.c.port, e, a.caPem, newOnB.session);
      return r.status === 401 ? r : undefined;
    }, "A to refuse the revoked executor");
    expect([revoked.reused, revoked.code]).toEqual([true, "CERT_REVOKED"]);
  }, 30_000);
});
