/**
 * Live events (PROTOCOL §10.1) with a real WebSocket client (`ws`) over real TLS:
 * tickets (single use, 30 s, bound to their API token), first-frame authentication
 * with the socket kept open after a failure, 3 failures → 4401, events for a
 * registration, a revocation and a task's progress, a revoked token's socket closed
 * within 1 s, and a viewer's stream checked against every secret minted here.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from "vitest";
import WebSocket from "ws";
import { startTestController, type TestController } from "../support/controller.ts";
import { executorCall, register, WireClient, type Enrolled } from "../support/wire.ts";
import type { CreatedApiToken, Role } from "../../shared/wire/operator.ts";

type Frame = Record<string, any>;

let tc: TestController;
let anon: WireClient;
const opened: Enrolled[] = [];
const sockets: Conn[] = [];
/** Every secret this file mints or receives: none may appear in any frame. */
const secrets: string[] = [];
const frames: string[] = [];

const bearer = (t: string) => ({ authorization: `Bearer ${t}` });

/** A WebSocket with its frames collected, and its close code. */
class Conn {
  readonly received: Frame[] = [];
  readonly closed: Promise<{ code: number; at: number }>;
  private waiters: (() => void)[] = [];
  constructor(readonly ws: WebSocket) {
    ws.on("message", (data) => {
      const text = data.toString();
      frames.push(text);
      this.received.push(JSON.parse(text) as Frame);
      for (const w of this.waiters.splice(0)) w();
    });
    this.closed = new Promise((resolve) => ws.on("close", (code) => resolve({ code, at: Date.now() })));
  }

  static async open(clientCert?: { cert: string; key: string }): Promise<Conn> {
    const ws = new WebSocket(tc.url.replace(/^https/, "wss") + "/api/v1/events", { ca: tc.caPem, ...clientCert });
    const c = new Conn(ws);
    sockets.push(c);
    await new Promise<void>((resolve, reject) => {
      ws.once("open", () => resolve());
      ws.once("error", reject);
    });
    return c;
  }

  send(frame: unknown): void {
    this.ws.send(typeof frame === "string" ? frame : JSON.stringify(frame));
  }

  /** The first frame (from `from` on) matching, within `ms`. */
  async next(match: (f: Frame) => boolean, ms = 1000, from = 0): Promise<Frame> {
    const deadline = Date.now() + ms;
    for (;;) {
      const f = this.received.slice(from).find(match);
      if (f) return f;
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`no matching frame within ${ms} ms; got ${JSON.stringify(this.received)}`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        this.waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
  }

  /** Sends an auth frame and returns the answer to it. */
  async auth(frame: unknown): Promise<Frame> {
    const from = this.received.length;
    this.send(frame);
    return this.next((f) => f.type === "auth-ok" || f.type === "auth-failed", 2000, from);
  }

  event(name: string, pred: (data: Frame) => boolean, ms = 1000): Promise<Frame> {
    return this.next((f) => f.type === "event" && f.event === name && pred(f.data), ms);
  }
}

async function apiToken(role: Role, name = `events-${role}-${secrets.length}`): Promise<CreatedApiToken> {
  const t = await tc.c.ctx.apiTokens.create({ name, role }, "test", { via: "test" });
  secrets.push(t.token);
  return t;
}

async function ticket(token: string): Promise<string> {
  const r = await anon.send("POST", "/api/v1/ws-tickets", { body: "{}", headers: bearer(token) });
  expect(r.status, r.text).toBe(201);
  expect(r.json.expires_in_s).toBe(30);
  expect(Object.keys(r.json).sort()).toEqual(["expires_in_s", "ticket"]);
  secrets.push(r.json.ticket);
  return r.json.ticket as string;
}

async function executor(labels: Record<string, string> = {}): Promise<Enrolled> {
  const token = await tc.createToken({ labels });
  secrets.push(token);
  const e = await register(tc.url, tc.caPem, token, { name: `ev-${opened.length}`, labels });
  opened.push(e);
  secrets.push(e.jwt, e.reg.hmac_key, e.hmacKey.toString("base64"), e.hmacKey.toString("hex"), e.keyPem);
  return e;
}

beforeAll(async () => {
  tc = await startTestController({ heartbeatIntervalSeconds: 1 });
  anon = new WireClient(tc.url, tc.caPem);
});

afterEach(() => {
  vi.useRealTimers();
});

afterAll(async () => {
  for (const s of sockets) s.ws.terminate();
  for (const e of opened) await e.client.close();
  await anon?.close();
  await tc?.close();
});

describe("tickets and first-frame authentication", () => {
  it("a ticket works once; a second use gets auth-failed and the socket survives it", async () => {
    const viewer = await apiToken("viewer");
    const t = await ticket(viewer.token);
    const a = await Conn.open();
    expect(await a.auth({ type: "auth", ticket: t })).toEqual({ type: "auth-ok", role: "viewer" });
    const b = await Conn.open();
    expect(await b.auth({ type: "auth", ticket: t })).toEqual({ type: "auth-failed" });
    // Still open: another try with a good credential succeeds.
    expect(b.ws.readyState).toBe(WebSocket.OPEN);
    expect(await b.auth({ type: "auth", ticket: await ticket(viewer.token) })).toEqual({ type: "auth-ok", role: "viewer" });
  });

  it("a token in the first frame works, for every role", async () => {
    for (const role of ["admin", "operator", "viewer"] as const) {
      const c = await Conn.open();
      expect(await c.auth({ type: "auth", token: (await apiToken(role)).token })).toEqual({ type: "auth-ok", role });
    }
  });

  it("an expired ticket (31 s), a garbage ticket and a revoked token's ticket get auth-failed", async () => {
    const op = await apiToken("operator");
    const c = await Conn.open();
    // Expired: only Date is faked, so the sockets and timers run as usual.
    const old = await ticket(op.token);
    vi.useFakeTimers({ toFake: ["Date"], now: Date.now() + 31_000 });
    expect(await c.auth({ type: "auth", ticket: old })).toEqual({ type: "auth-failed" });
    vi.useRealTimers();
    expect(await c.auth({ type: "auth", ticket: "tet_wst_" + "A".repeat(43) })).toEqual({ type: "auth-failed" });
    const d = await Conn.open();
    expect(await d.auth({ type: "auth", ticket: "garbage" })).toEqual({ type: "auth-failed" });
    const doomed = await apiToken("operator");
    const t = await ticket(doomed.token);
    expect((await anon.send("DELETE", `/api/v1/tokens/${doomed.id}`, { headers: bearer(op.token) })).status).toBe(403);
    const admin = await apiToken("admin");
    expect((await anon.send("DELETE", `/api/v1/tokens/${doomed.id}`, { headers: bearer(admin.token) })).status).toBe(200);
    const e = await Conn.open();
    expect(await e.auth({ type: "auth", ticket: t })).toEqual({ type: "auth-failed" });
    expect(await e.auth({ type: "auth", token: doomed.token })).toEqual({ type: "auth-failed" });
  });

  it("any other frame before auth-ok is a failed try; 3 failures close the socket with 4401", async () => {
    const c = await Conn.open();
    expect(await c.auth({ type: "subscribe" })).toEqual({ type: "auth-failed" });
    expect(await c.auth("not json")).toEqual({ type: "auth-failed" });
    expect(c.ws.readyState).toBe(WebSocket.OPEN);
    expect(await c.auth({ type: "auth", token: "tet_pat_" + "B".repeat(43) })).toEqual({ type: "auth-failed" });
    expect((await c.closed).code).toBe(4401);
  });

  it("an executor's connection (client certificate) cannot authenticate, even with a valid API token", async () => {
    const e = await executor();
    const c = await Conn.open({ cert: e.certPem, key: e.keyPem });
    expect(await c.auth({ type: "auth", token: (await apiToken("admin")).token })).toEqual({ type: "auth-failed" });
  });

  it("the route: a plain HTTP GET meets the API-token guard (401), and with a token is told to upgrade (426)", async () => {
    const r = await anon.send("GET", "/api/v1/events");
    expect(r.status).toBe(401);
    expect(r.json.error.code).toBe("UNAUTHENTICATED");
    const ok = await anon.send("GET", "/api/v1/events", { headers: bearer((await apiToken("viewer")).token) });
    expect(ok.status).toBe(426);
    expect(ok.json.error.code).toBe("INVALID_REQUEST");
    expect((await anon.send("POST", "/api/v1/ws-tickets", { body: "{}" })).status).toBe(401);
  });
});

describe("events", () => {
  it("a registration, a revocation and a task's progress arrive within 1 s", async () => {
    const admin = await apiToken("admin");
    const c = await Conn.open();
    expect((await c.auth({ type: "auth", token: admin.token })).type).toBe("auth-ok");

    const e = await executor({ pool: "events" });
    const reg = await c.event("executor.registered", (d) => d.executor_id === e.id);
    expect(reg.data).toEqual({ executor_id: e.id, name: expect.stringMatching(/^ev-/), labels: { pool: "events" }, epoch: 1, status: "ready" });
    expect(Number.isFinite(Date.parse(reg.at))).toBe(true);

    const sub = await anon.send("POST", "/api/v1/tasks", {
      body: JSON.stringify({ kind: "noop", payload: { n: 1 }, selector: { pool: "events" } }), headers: bearer(admin.token),
    });
    expect(sub.status, sub.text).toBe(201);
    const taskId = sub.json.id as string;
    await c.event("task.updated", (d) => d.task_id === taskId && d.status === "queued");
    const leased = await executorCall(e, "POST", `/v1/executors/${e.id}/leases`, { max: 1, wait_s: 0 });
    expect(leased.json.leases).toHaveLength(1);
    await c.event("task.updated", (d) => d.task_id === taskId && d.status === "leased" && d.executor_id === e.id);
    const leaseId = leased.json.leases[0].lease_id as string;
    expect((await executorCall(e, "POST", `/v1/executors/${e.id}/leases/${leaseId}/complete`, { result: { exit_code: 0 } })).status).toBe(200);
    const done = await c.event("task.updated", (d) => d.task_id === taskId && d.status === "succeeded");
    expect(done.data).not.toHaveProperty("payload");
    expect(done.data).not.toHaveProperty("result");

    const drained = await anon.send("POST", `/api/v1/executors/${e.id}/drain`, { body: "{}", headers: bearer(admin.token) });
    expect(drained.status).toBe(200);
    await c.event("executor.status", (d) => d.executor_id === e.id && d.drain === true);

    const revoked = await anon.send("POST", `/api/v1/executors/${e.id}/revoke`, { body: "{}", headers: bearer(admin.token) });
    expect(revoked.status).toBe(200);
    expect((await c.event("executor.revoked", (d) => d.executor_id === e.id)).data).toEqual({ executor_id: e.id });
  });

  it("a silent executor's status turns suspect by time", async () => {
    const viewer = await apiToken("viewer");
    const c = await Conn.open();
    expect((await c.auth({ type: "auth", token: viewer.token })).type).toBe("auth-ok");
    const e = await executor();
    // heartbeat interval 1 s: suspect after 3 s of silence, found by the next sweep.
    const f = await c.event("executor.status", (d) => d.executor_id === e.id && d.status === "suspect", 6000);
    expect(f.data.previous).toBe("ready");
  }, 10_000);

  it("a revoked API token's socket closes within 1 s (4401)", async () => {
    const op = await apiToken("operator");
    const c = await Conn.open();
    expect((await c.auth({ type: "auth", ticket: await ticket(op.token) })).type).toBe("auth-ok");
    const admin = await apiToken("admin");
    const r = await anon.send("DELETE", `/api/v1/tokens/${op.id}`, { headers: bearer(admin.token) });
    expect(r.status).toBe(200);
    const revokedAt = Date.now();
    const closed = await Promise.race([c.closed, new Promise<undefined>((resolve) => setTimeout(resolve, 1500))]);
    expect(closed, "closed").toBeDefined();
    expect(closed!.code).toBe(4401);
    expect(closed!.at - revokedAt).toBeLessThanOrEqual(1000);
  });

  it("a viewer's stream carries no secret minted in this file", async () => {
    const viewer = await apiToken("viewer");
    const c = await Conn.open();
    expect((await c.auth({ type: "auth", ticket: await ticket(viewer.token) })).type).toBe("auth-ok");
    const admin = await apiToken("admin");
    const e = await executor({ pool: "secrets" });
    await c.event("executor.registered", (d) => d.executor_id === e.id);
    const enr = await anon.send("POST", "/api/v1/enrollment-tokens", { body: "{}", headers: bearer(admin.token) });
    secrets.push(enr.json.token);
    const rot = await anon.send("POST", "/api/v1/ca/rotate", { body: "{}", headers: bearer(admin.token) });
    expect(rot.status, rot.text).toBe(201);
    await c.event("ca.rotated", (d) => d.phase === "prepared");
    await anon.send("POST", `/api/v1/executors/${e.id}/revoke`, { body: "{}", headers: bearer(admin.token) });
    await c.event("executor.revoked", (d) => d.executor_id === e.id);
    expect(frames.length).toBeGreaterThan(5);
    const all = frames.join("\n");
    for (const s of secrets) {
      expect(s.length).toBeGreaterThan(16);
      expect(all.includes(s), "a secret appeared in a frame").toBe(false);
    }
  });
});
