/**
 * The controller's metrics (PROTOCOL §9.1) after real traffic: a real controller with
 * `metricsListen`, executors registered through the real /register, authenticated
 * heartbeats, rejected requests, tasks leased and completed over mTLS, operator calls —
 * then /metrics scraped over plain HTTP and read with a strict parser of the text format
 * and with `promtool check metrics`. Values are checked as deltas between two scrapes.
 */
import { closeSync, openSync, readSync, writeSync } from "node:fs";
import { join } from "node:path";
import Database from "better-sqlite3";
import { request } from "undici";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { NONCE_COUNT_REUSE_MS } from "../../controller/metrics/gauges.ts";
import { DB_FILE } from "../../controller/store/sqlite/sqlite-store.ts";
import { startTestController, type TestController } from "../support/controller.ts";
import { executorCall, HEARTBEAT, newKeyAndCsr, register, WireClient, type Enrolled } from "../support/wire.ts";
import { havePromtool, parseExposition, promtoolCheck, sampleValue, type Family } from "../support/prom-text.ts";
import { daemonRuns, testDaemonOptions, untilEvent } from "../support/daemon.ts";
import { readStatus } from "../../executor/status.ts";
import { ExecutorMetrics } from "../../executor/metrics.ts";
import { NoWork } from "../../executor/work.ts";
import { ExitCode } from "../../executor/exit-codes.ts";

const code = (r: { json: any }) => r.json?.error?.code;
const hb = (id: string) => `/v1/executors/${id}/heartbeat`;

async function scrapeText(url: string): Promise<{ status: number; contentType: string; text: string }> {
  const res = await request(url);
  return { status: res.statusCode, contentType: String(res.headers["content-type"]), text: await res.body.text() };
}

async function scrape(tc: TestController): Promise<Map<string, Family>> {
  const r = await scrapeText(tc.c.metricsUrl!);
  expect(r.status).toBe(200);
  return parseExposition(r.text);
}

/** `name{labels}` in `m`, 0 when the series is absent (a counter not yet incremented). */
const v = (m: Map<string, Family>, name: string, labels: Record<string, string> = {}) => sampleValue(m, name, labels) ?? 0;

let tc: TestController;
let anon: WireClient;
let admin: string;
const enrolled: Enrolled[] = [];
/** Everything that must never appear in a label: ids, tokens, keys. */
const secretsAndIds: string[] = [];

beforeAll(async () => {
  tc = await startTestController({ metricsListen: { host: "127.0.0.1", port: 0 } });
  anon = new WireClient(tc.url, tc.caPem);
  const created = await tc.c.ctx.apiTokens.create({ name: "metrics-admin", role: "admin" }, "test", { via: "test" });
  admin = created.token;
  secretsAndIds.push(admin, created.id);
});
afterAll(async () => {
  for (const e of enrolled) await e.client.close();
  await anon?.close();
  await tc?.close();
});

async function enroll(name: string): Promise<Enrolled> {
  const token = await tc.createToken();
  const e = await register(tc.url, tc.caPem, token, { name });
  enrolled.push(e);
  secretsAndIds.push(token, e.id, e.jwt, e.hmacKey.toString("base64url"));
  return e;
}

const operator = (method: string, path: string, body?: unknown) =>
  anon.send(method, path, { headers: { authorization: `Bearer ${admin}` }, ...(body === undefined ? {} : { body: JSON.stringify(body) }) });

describe("the metrics listener", () => {
  it("is off unless asked for", async () => {
    const plain = await startTestController();
    try {
      expect(plain.c.metricsUrl).toBeUndefined();
    } finally {
      await plain.close();
    }
  });

  it("serves GET /metrics in the Prometheus text format over plain HTTP, and nothing else", async () => {
    expect(tc.c.metricsUrl).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/metrics$/);
    const r = await scrapeText(tc.c.metricsUrl!);
    expect(r.status).toBe(200);
    expect(r.contentType).toBe("text/plain; version=0.0.4; charset=utf-8");
    const base = tc.c.metricsUrl!.replace(/\/metrics$/, "");
    expect((await request(`${base}/`)).statusCode).toBe(404);
    expect((await request(`${base}/metrics`, { method: "POST", body: "x" })).statusCode).toBe(405);
    // …and the TLS API does not serve it.
    expect([(await anon.send("GET", "/metrics")).status]).toEqual([404]);
  });
});

describe("after real traffic", () => {
  it("a registration counts one success and one executor certificate; a denied token counts one denial", async () => {
    const before = await scrape(tc);
    const e = await enroll("m-one");
    const { csrPem } = await newKeyAndCsr();
    const denied = await anon.send("POST", "/v1/executors/register", { body: JSON.stringify({ enrollment_token: "tet_enr_" + "x".repeat(40), csr_pem: csrPem }) });
    expect([denied.status, code(denied)]).toEqual([401, "ENROLLMENT_DENIED"]);
    const after = await scrape(tc);
    expect(v(after, "tether_registrations_total", { result: "success" }) - v(before, "tether_registrations_total", { result: "success" })).toBe(1);
    expect(v(after, "tether_registrations_total", { result: "denied" }) - v(before, "tether_registrations_total", { result: "denied" })).toBe(1);
    expect(v(after, "tether_certificates_issued_total", { profile: "executor" }) - v(before, "tether_certificates_issued_total", { profile: "executor" })).toBe(1);
    // The controller's own server certificate was issued at the first start.
    expect(v(after, "tether_certificates_issued_total", { profile: "server" })).toBe(1);
    const reg = { route: "/v1/executors/register" };
    expect(v(after, "tether_http_requests_total", { ...reg, code: "201" }) - v(before, "tether_http_requests_total", { ...reg, code: "201" })).toBe(1);
    expect(v(after, "tether_http_requests_total", { ...reg, code: "401" }) - v(before, "tether_http_requests_total", { ...reg, code: "401" })).toBe(1);
    expect(e.id).toMatch(/^ex_/);
  });

  it("a replayed nonce counts exactly one NONCE_REPLAY rejection, and nothing else", async () => {
    const e = enrolled[0] ?? (await enroll("m-replay"));
    const before = await scrape(tc);
    const nonce = "metrics-replay-" + Date.now();
    expect((await executorCall(e, "POST", hb(e.id), HEARTBEAT, { nonce })).status).toBe(200);
    const again = await executorCall(e, "POST", hb(e.id), HEARTBEAT, { nonce });
    expect([again.status, code(again)]).toEqual([409, "NONCE_REPLAY"]);
    const after = await scrape(tc);
    const rejections = (m: Map<string, Family>) =>
      Object.fromEntries(m.get("tether_guard_rejections_total")!.samples.map((s) => [s.labels.code, s.value]));
    const delta = Object.fromEntries(Object.entries(rejections(after)).map(([c, n]) => [c, n - (rejections(before)[c] ?? 0)]));
    expect(delta).toMatchObject({ NONCE_REPLAY: 1, SIGNATURE_INVALID: 0, CERT_REQUIRED: 0, TOKEN_INVALID: 0 });
    expect(Object.values(delta).reduce((x, y) => x + y, 0)).toBe(1);
    // The request metrics carry the route's pattern and the status, both answers counted.
    const route = { route: "/v1/executors/:id/heartbeat" };
    expect(v(after, "tether_http_requests_total", { ...route, code: "200" }) - v(before, "tether_http_requests_total", { ...route, code: "200" })).toBe(1);
    expect(v(after, "tether_http_requests_total", { ...route, code: "409" }) - v(before, "tether_http_requests_total", { ...route, code: "409" })).toBe(1);
    expect(v(after, "tether_http_request_duration_seconds_count", route) - v(before, "tether_http_request_duration_seconds_count", route)).toBe(2);
    expect(v(after, "tether_http_request_duration_seconds_bucket", { ...route, le: "+Inf" })).toBe(v(after, "tether_http_request_duration_seconds_count", route));
  });

  it("other rejections count under their own code: no certificate, a bad signature, an operator without a valid token", async () => {
    const e = enrolled[0]!;
    const before = await scrape(tc);
    const noCert = await executorCall(e, "POST", hb(e.id), HEARTBEAT, { client: anon });
    expect(code(noCert)).toBe("CERT_REQUIRED");
    const badSig = await executorCall({ ...e, hmacKey: Buffer.alloc(32, 7) }, "POST", hb(e.id), HEARTBEAT);
    expect(code(badSig)).toBe("SIGNATURE_INVALID");
    const noToken = await anon.send("GET", "/api/v1/executors", { headers: { authorization: "Bearer tet_pat_nope" } });
    expect(code(noToken)).toBe("UNAUTHENTICATED");
    const after = await scrape(tc);
    for (const c of ["CERT_REQUIRED", "SIGNATURE_INVALID", "UNAUTHENTICATED"]) {
      expect(v(after, "tether_guard_rejections_total", { code: c }) - v(before, "tether_guard_rejections_total", { code: c }), c).toBe(1);
    }
  });

  it("tether_executors counts executors by the status the API reports", async () => {
    const live = await enroll("m-live");
    const gone = await enroll("m-gone");
    expect((await executorCall(live, "POST", hb(live.id), { ...HEARTBEAT, status: "draining" })).status).toBe(200);
    expect((await operator("POST", `/api/v1/executors/${gone.id}/revoke`)).status).toBe(200);
    const listed = (await operator("GET", "/api/v1/executors")).json.executors as { status: string }[];
    const byApi: Record<string, number> = { ready: 0, draining: 0, suspect: 0, offline: 0, revoked: 0 };
    for (const x of listed) byApi[x.status]!++;
    expect(byApi.revoked).toBeGreaterThanOrEqual(1);
    expect(byApi.draining).toBeGreaterThanOrEqual(1);
    const m = await scrape(tc);
    const gauge = Object.fromEntries(m.get("tether_executors")!.samples.map((s) => [s.labels.status, s.value]));
    expect(gauge).toEqual(byApi);
    expect(m.get("tether_executors")!.type).toBe("gauge");
  });

  it("tether_tasks counts tasks by status; leases and completions are counted by route pattern", async () => {
    const worker = await enroll("m-worker");
    for (let i = 0; i < 3; i++) expect((await operator("POST", "/api/v1/tasks", { kind: "noop", payload: { i } })).status).toBe(201);
    const leased = await executorCall(worker, "POST", `/v1/executors/${worker.id}/leases`, { max: 2, wait_s: 0 });
    expect(leased.status).toBe(200);
    const [first, second] = leased.json.leases as { lease_id: string; task_id: string }[];
    secretsAndIds.push(first!.lease_id, first!.task_id, second!.lease_id, second!.task_id);
    const before = await scrape(tc);
    expect((await executorCall(worker, "POST", `/v1/executors/${worker.id}/leases/${first!.lease_id}/complete`, { result: {} })).status).toBe(200);
    const stale = await executorCall(worker, "POST", `/v1/executors/${worker.id}/leases/lease_unknown/complete`, { result: {} });
    expect(code(stale)).toBe("STALE_LEASE");
    const after = await scrape(tc);
    const tasks = Object.fromEntries(after.get("tether_tasks")!.samples.map((s) => [s.labels.status, s.value]));
    const byApi: Record<string, number> = { queued: 0, leased: 0, succeeded: 0, failed: 0, cancelled: 0 };
    for (const t of (await operator("GET", "/api/v1/tasks")).json.tasks as { status: string }[]) byApi[t.status]!++;
    expect(tasks).toEqual(byApi);
    expect(tasks).toMatchObject({ queued: 1, leased: 1, succeeded: 1 });
    const complete = { route: "/v1/executors/:id/leases/:lease_id/complete" };
    expect(v(after, "tether_http_requests_total", { ...complete, code: "200" }) - v(before, "tether_http_requests_total", { ...complete, code: "200" })).toBe(1);
    expect(v(after, "tether_http_requests_total", { ...complete, code: "409" }) - v(before, "tether_http_requests_total", { ...complete, code: "409" })).toBe(1);
  });

  it("a request that matches no route is counted as \"unmatched\", never by its path", async () => {
    const before = await scrape(tc);
    const path = "/no/such/" + enrolled[0]!.id;
    expect((await anon.send("GET", path)).status).toBe(404);
    const after = await scrape(tc);
    const u = { route: "unmatched", code: "404" };
    expect(v(after, "tether_http_requests_total", u) - v(before, "tether_http_requests_total", u)).toBe(1);
  });

  it("tether_nonces_stored is what the replay store holds; the CA gauges are the CA set's", async () => {
    // Counted at most once a minute (the count reads the whole store): an earlier scrape's
    // count may be served, never more than the store holds; a minute later, a fresh one.
    const earlier = v(await scrape(tc), "tether_nonces_stored");
    expect(earlier).toBeLessThanOrEqual(await tc.c.ctx.store.nonceCount());
    vi.useFakeTimers({ toFake: ["Date"] });
    let m: Awaited<ReturnType<typeof scrape>>;
    try {
      vi.setSystemTime(Date.now() + NONCE_COUNT_REUSE_MS + 1000);
      m = await scrape(tc);
    } finally {
      vi.useRealTimers();
    }
    expect(v(m, "tether_nonces_stored")).toBe(await tc.c.ctx.store.nonceCount());
    expect(v(m, "tether_nonces_stored")).toBeGreaterThan(0);
    const active = tc.c.ctx.cas.records().find((r) => r.state === "active")!;
    expect(v(m, "tether_ca_expiry_timestamp_seconds", { fingerprint: active.fingerprint, state: "active" })).toBe(Math.floor(active.notAfter / 1000));
    expect(v(m, "tether_trust_bundle_version")).toBe(tc.c.ctx.cas.version());
    expect(sampleValue(m, "tether_ca_adoption_pending")).toBe(0);
  });

  // .ci/run installs promtool; without it every scrape here is still read by the strict parser.
  it.skipIf(!havePromtool())("the exposition passes promtool check metrics (the reference parser and linter)", async () => {
    const { text } = await scrapeText(tc.c.metricsUrl!);
    const r = promtoolCheck(text);
    expect(r, r.output).toEqual({ status: 0, output: "" });
  });

  it("has every series of PROTOCOL §9.1 with its type", async () => {
    const m = await scrape(tc);
    const want: Record<string, string> = {
      tether_executors: "gauge", tether_http_requests_total: "counter", tether_http_request_duration_seconds: "histogram",
      tether_guard_rejections_total: "counter", tether_registrations_total: "counter", tether_certificates_issued_total: "counter",
      tether_ca_expiry_timestamp_seconds: "gauge", tether_trust_bundle_version: "gauge", tether_ca_adoption_pending: "gauge",
      tether_nonces_stored: "gauge", tether_tasks: "gauge", tether_lease_reclaims_total: "counter", tether_store_errors_total: "counter",
    };
    const got = Object.fromEntries(Object.keys(want).map((name) => [name, m.get(name)?.type]));
    expect(got).toEqual(want);
    expect(v(m, "tether_lease_reclaims_total")).toBe(0);
    expect(v(m, "tether_store_errors_total")).toBe(0);
  });

  it("no label value carries an executor id, a lease or task id, a token, a key or a raw path", async () => {
    const { text } = await scrapeText(tc.c.metricsUrl!);
    const m = parseExposition(text);
    const values = [...m.values()].flatMap((f) => f.samples.flatMap((s) => Object.values(s.labels)));
    expect(secretsAndIds.length).toBeGreaterThan(10);
    for (const secret of secretsAndIds) expect(text.includes(secret), `exposition holds ${secret.slice(0, 12)}…`).toBe(false);
    const routes = new Set([...m.values()].flatMap((f) => f.samples.map((s) => s.labels.route).filter((r): r is string => r !== undefined)));
    expect(routes.size).toBeGreaterThan(4);
    for (const route of routes) {
      // A declared pattern: parameters appear as :name, never as values.
      expect(route === "unmatched" || /^\/[A-Za-z0-9_./:-]*$/.test(route), route).toBe(true);
      expect(route).not.toMatch(/(ex|lease|task)_[A-Za-z0-9_-]{6,}|tet_|\/no\/such/);
      expect(route === "unmatched" || declared(route), route).toBe(true);
    }
    for (const value of values) expect(value).not.toMatch(/tet_(enr|pat)_|ex_[A-Za-z0-9_-]{8,}|eyJ/);
  });

  it("tether_ca_adoption_pending counts the live executors a prepared CA waits for, as GET /api/v1/ca does", async () => {
    expect((await operator("POST", "/api/v1/ca/rotate")).status).toBe(201);
    const status = (await operator("GET", "/api/v1/ca")).json as { trust_bundle_version: number; cas: { state: string; pending: string[]; fingerprint_sha256: string }[] };
    const prepared = status.cas.find((c) => c.state === "prepared")!;
    expect(prepared.pending.length).toBeGreaterThan(0);
    let m = await scrape(tc);
    expect(sampleValue(m, "tether_ca_adoption_pending")).toBe(prepared.pending.length);
    expect(v(m, "tether_trust_bundle_version")).toBe(status.trust_bundle_version);
    expect(sampleValue(m, "tether_ca_expiry_timestamp_seconds", { fingerprint: prepared.fingerprint_sha256, state: "prepared" })).toBeGreaterThan(Date.now() / 1000);
    // One of them adopts it (reports the new version in a heartbeat): one fewer pending.
    const adopter = enrolled.find((e) => prepared.pending.includes(e.id))!;
    const r = await executorCall(adopter, "POST", hb(adopter.id), { ...HEARTBEAT, trust_bundle_version: status.trust_bundle_version });
    expect(r.status).toBe(200);
    m = await scrape(tc);
    expect(sampleValue(m, "tether_ca_adoption_pending")).toBe(prepared.pending.length - 1);
  });
});

/** Route patterns the server declares (any method). */
function declared(route: string): boolean {
  return ["GET", "POST", "DELETE", "PUT", "PATCH"].some((method) => tc.c.app.hasRoute({ method: method as "GET", url: route }));
}

describe("a scrape while the store cannot be read", () => {
  it("still answers 200 with the counters and the gauges it could read, leaves the failed family empty and counts the store error", async () => {
    const own = await startTestController({ metricsListen: { host: "127.0.0.1", port: 0 }, storeBusyTimeoutMs: 150 });
    const e = await register(own.url, own.caPem, await own.createToken(), { name: "outage" });
    try {
      expect((await executorCall(e, "POST", hb(e.id), HEARTBEAT)).status).toBe(200);
      const before = await scrape(own);
      expect(v(before, "tether_executors", { status: "ready" })).toBe(1);
      // A damaged page under the executors table: reads of it fail (SQLITE_CORRUPT), the rest of the database is fine.
      const dbPath = join(own.dataDir, DB_FILE);
      const side = new Database(dbPath);
      side.pragma("wal_checkpoint(TRUNCATE)");
      const pageSize = side.pragma("page_size", { simple: true }) as number;
      const root = (side.prepare("SELECT rootpage FROM sqlite_master WHERE name = 'executors'").get() as { rootpage: number }).rootpage;
      const fd = openSync(dbPath, "r+");
      const saved = Buffer.alloc(pageSize);
      let during: { status: number; text: string };
      try {
        readSync(fd, saved, 0, pageSize, (root - 1) * pageSize);
        writeSync(fd, Buffer.alloc(pageSize, 0xee), 0, pageSize, (root - 1) * pageSize);
        // A write elsewhere makes the controller's connection drop its page cache.
        side.prepare("INSERT INTO nonces (executor_id, nonce, expires_at) VALUES ('ex_side', 'n-side-AAAAAAAAAAAA', 0)").run();
        during = await scrapeText(own.c.metricsUrl!);
      } finally {
        writeSync(fd, saved, 0, pageSize, (root - 1) * pageSize);
        side.prepare("INSERT INTO nonces (executor_id, nonce, expires_at) VALUES ('ex_side', 'n-side-BBBBBBBBBBBB', 0)").run();
        closeSync(fd);
        side.close();
      }
      expect(during.status).toBe(200);
      const m = parseExposition(during.text);
      expect(m.get("tether_executors")!.samples).toEqual([]); // unknown, not zero
      expect(m.get("tether_tasks")!.samples).toHaveLength(5);
      expect(sampleValue(m, "tether_nonces_stored")).toBeGreaterThan(0);
      expect(v(m, "tether_registrations_total", { result: "success" })).toBe(1);
      if (havePromtool()) expect(promtoolCheck(during.text).status).toBe(0);
      // Once the page is back, so is the family. The failed reads were counted as they failed: the counters of
      // a scrape are read while its gauges query the store, so they show in the next one.
      const back = await scrape(own);
      expect(v(back, "tether_executors", { status: "ready" })).toBe(1);
      expect(v(back, "tether_store_errors_total") - v(before, "tether_store_errors_total")).toBeGreaterThanOrEqual(1);
    } finally {
      await e.client.close();
      await own.close();
    }
  });
});

describe("the executor daemon's metrics, against a real controller that goes away and comes back", () => {
  const daemons = daemonRuns();

  /** Polls `read` until `ok` holds. */
  async function eventually<T>(what: string, read: () => Promise<T>, ok: (v: T) => boolean, timeoutMs = 10_000): Promise<T> {
    const end = Date.now() + timeoutMs;
    for (;;) {
      const got = await read();
      if (ok(got)) return got;
      if (Date.now() > end) throw new Error(`timed out waiting for ${what} (last: ${JSON.stringify(got)})`);
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  it("ready follows the heartbeats; each failed attempt is counted by its code; a revocation ends the listener", async () => {
    const own = daemons.closeAfterEach(await startTestController({ heartbeatIntervalSeconds: 1 }));
    const token = await own.createToken();
    const opts = testDaemonOptions({ controllerUrl: own.url, caFilePem: own.caPem, token: () => token });
    const run = daemons.start(opts, new NoWork(), { metrics: new ExecutorMetrics({ host: "127.0.0.1", port: 0 }) });
    await untilEvent(run, "metrics.listening");
    const url: string = run.logs.find((l) => l.event === "metrics.listening")!.url;
    const read = async () => parseExposition(await (await request(url)).body.text());
    const ready = async () => sampleValue(await read(), "tether_executor_ready");
    await eventually("ready 1", ready, (r) => r === 1);
    const { status } = readStatus(opts.stateDir);
    const m = await read();
    expect(sampleValue(m, "tether_executor_cert_expiry_timestamp_seconds")).toBe(Math.floor(Date.parse(status.cert_expires_at!) / 1000));
    expect(sampleValue(m, "tether_executor_jwt_expiry_timestamp_seconds")).toBe(Math.floor(Date.parse(status.jwt_expires_at!) / 1000));
    expect(m.get("tether_executor_heartbeat_failures_total")!.samples).toEqual([]);

    // The controller stops: heartbeat attempts fail (connection refused), ready drops to 0.
    await own.c.close();
    await eventually("ready 0", ready, (r) => r === 0);
    const down = await eventually("a counted failure", read, (x) => x.get("tether_executor_heartbeat_failures_total")!.samples.length > 0);
    const failures = down.get("tether_executor_heartbeat_failures_total")!.samples;
    expect(failures.every((f) => /^[A-Z][A-Z0-9_]*$/.test(f.labels.code!) && f.value >= 1), JSON.stringify(failures)).toBe(true);
    if (havePromtool()) expect(promtoolCheck(await (await request(url)).body.text()).status).toBe(0);

    // Back on the same port: ready again; the failures stay counted.
    await own.restart();
    await eventually("ready 1 again", ready, (r) => r === 1, 20_000);

    // Revoked: the daemon exits 3 and its listener closes with it.
    await own.c.ctx.executors.revoke(run.daemon.executorId!, { via: "test" });
    expect(await run.done).toBe(ExitCode.REVOKED);
    await expect(request(url)).rejects.toThrow();
  }, 60_000);
});
