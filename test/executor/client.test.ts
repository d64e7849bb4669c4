/** The executor HTTP client against a stand-in controller over real TLS. */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { randomBytes } from "node:crypto";
import { createServer } from "node:net";
import { TetherError } from "../../shared/errors.ts";
import { HEADER_TIMESTAMP } from "../../shared/hmac.ts";
import { ExecutorClient, TransportError } from "../../executor/client.ts";
import { certInfo } from "../../executor/certificate.ts";
import { newKeyAndCsr } from "../../executor/csr.ts";
import { createTestCa, type TestCa } from "../support/ca.ts";
import { startFakeController, wireError, type FakeController } from "./fake-controller.ts";

const ID = "ex_client1";
const hmacKey = randomBytes(32);
let ca: TestCa;
let fake: FakeController;

async function creds(jwt = "jwt-a") {
  const { keyPem, csrPem } = await newKeyAndCsr("ed25519");
  return { executorId: ID, keyPem, certPem: await ca.issueForCsr(csrPem, ID), trustPem: ca.certPem, hmacKey, jwt };
}

beforeAll(async () => {
  ca = await createTestCa();
  fake = await startFakeController({ ...(await ca.serverCert()), caPem: ca.certPem }, () => ({ status: 200, body: {} }));
  fake.hmacKey = hmacKey;
  fake.executorId = ID;
});
afterAll(async () => fake?.close());

describe("ExecutorClient", () => {
  it("signs exactly the bytes and the target it sends, with mTLS, and sends the JWT only where asked", async () => {
    const c = new ExecutorClient({ baseUrl: fake.url });
    const cr = await creds();
    c.setCredentials(cr);
    fake.requests.length = 0;
    const body = { status: "ready", note: "ünïcödé ✓", n: 1 };
    await c.call("POST", `/v1/executors/${ID}/heartbeat?x=1&y=%20`, body, "jwt");
    await c.renew(undefined);
    await c.reregister();
    const [hb, renew, rereg] = fake.requests;
    expect(hb!.hmacOk).toBe(true);
    expect(hb!.url).toBe(`/v1/executors/${ID}/heartbeat?x=1&y=%20`);
    expect(hb!.body.toString("utf8")).toBe(JSON.stringify(body));
    expect(hb!.headers.authorization).toBe("Bearer jwt-a");
    expect(hb!.certFingerprint).toBe(certInfo(cr.certPem).fingerprint);
    expect(renew).toMatchObject({ hmacOk: true, url: `/v1/executors/${ID}/renew`, json: {} });
    expect(renew!.headers.authorization).toBeUndefined();
    expect(rereg).toMatchObject({ hmacOk: true, url: `/v1/executors/${ID}/reregister`, json: {} });
    expect(rereg!.headers.authorization).toBeUndefined();
    expect(new Set(fake.requests.map((r) => r.headers["x-tether-nonce"])).size).toBe(3);
    await c.close();
  });

  it("turns wire errors into TetherError (status, code, message, server_time, Retry-After)", async () => {
    const c = new ExecutorClient({ baseUrl: fake.url });
    c.setCredentials(await creds());
    fake.handler = () => wireError(401, "CLOCK_SKEW", { server_time: "2030-01-01T00:00:00Z" });
    const e1 = await c.heartbeat({ status: "ready", running: 0, capacity: 1, leases: [] }).catch((e) => e);
    expect(e1).toBeInstanceOf(TetherError);
    expect(e1).toMatchObject({ status: 401, code: "CLOCK_SKEW", details: { server_time: "2030-01-01T00:00:00Z" } });
    fake.handler = () => wireError(429, "RATE_LIMITED", {}, { "retry-after": "4" });
    const e2 = await c.renew(undefined).catch((e) => e);
    expect(e2).toMatchObject({ status: 429, code: "RATE_LIMITED", headers: { "retry-after": "4" } });
    fake.handler = () => ({ status: 200, body: {} });
    await c.close();
  });

  it("applies the measured clock offset to the signed timestamp", async () => {
    const c = new ExecutorClient({ baseUrl: fake.url });
    c.setCredentials(await creds());
    c.clockOffsetMs = 600_000;
    fake.requests.length = 0;
    await c.heartbeat({ status: "ready", running: 0, capacity: 1, leases: [] });
    const ts = Number(fake.requests[0]!.headers[HEADER_TIMESTAMP]);
    expect(ts - Date.now()).toBeGreaterThan(590_000);
    expect(fake.requests[0]!.hmacOk).toBe(true);
    await c.close();
  });

  it("reports an unreachable controller as a TransportError", async () => {
    const port = await new Promise<number>((resolve) => {
      const s = createServer().listen(0, "127.0.0.1", () => {
        const p = (s.address() as { port: number }).port;
        s.close(() => resolve(p));
      });
    });
    const c = new ExecutorClient({ baseUrl: `https://127.0.0.1:${port}` });
    c.setCredentials(await creds());
    const e = await c.renew(undefined).catch((x) => x);
    expect(e).toBeInstanceOf(TransportError);
    expect(e.code).toBe("ECONNREFUSED");
    await c.close();
  });

  it("refuses a controller whose certificate does not chain to the trusted CA", async () => {
    const other = await createTestCa();
    const c = new ExecutorClient({ baseUrl: fake.url });
    c.setCredentials({ ...(await creds()), trustPem: other.certPem });
    await expect(c.renew(undefined)).rejects.toBeInstanceOf(TransportError);
    await c.close();
  });

  it("swapping to a renewed certificate does not break a request in flight", async () => {
    const c = new ExecutorClient({ baseUrl: fake.url });
    const a = await creds("jwt-a");
    const b = await creds("jwt-b");
    const genA = c.setCredentials(a);
    fake.handler = (r) => ({ status: 200, body: { seen: r.certFingerprint }, delayMs: r.json?.slow ? 700 : 0 });
    fake.requests.length = 0;
    const slow = c.call<{ seen: string }>("POST", `/v1/executors/${ID}/heartbeat`, { slow: true }, "jwt");
    await new Promise((r) => setTimeout(r, 150)); // the slow request is on the wire
    const genB = c.setCredentials(b);
    expect(genB).toBeGreaterThan(genA);
    const fast = await c.call<{ seen: string }>("POST", `/v1/executors/${ID}/heartbeat`, {}, "jwt");
    const done = await slow;
    expect(done.data.seen).toBe(certInfo(a.certPem).fingerprint);
    expect(done.generation).toBe(genA);
    expect(done.jwt).toBe("jwt-a");
    expect(fast.data.seen).toBe(certInfo(b.certPem).fingerprint);
    expect(fast.jwt).toBe("jwt-b");
    expect(fake.requests.map((r) => r.headers.authorization)).toEqual(["Bearer jwt-a", "Bearer jwt-b"]);
    fake.handler = () => ({ status: 200, body: {} });
    await c.close();
  });

  it("a JWT-only change keeps the agent (no new TLS connection)", async () => {
    const c = new ExecutorClient({ baseUrl: fake.url });
    const a = await creds("jwt-1");
    const g = c.setCredentials(a);
    expect(c.setCredentials({ ...a, jwt: "jwt-2" })).toBe(g);
    c.setJwt("jwt-3");
    expect(c.credentials?.jwt).toBe("jwt-3");
    expect(c.generation).toBe(g);
    await c.close();
  });
});
