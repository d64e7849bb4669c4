/**
 * Every error in the contract's shape (PROTOCOL §1), also the ones answered before a
 * request reaches a route: Node's HTTP parser (`clientError`), fastify's router, an
 * unknown `Expect`, a server that is closing, and JSON nested deep enough to overflow
 * recursive code downstream. Raw TLS sockets, so the exact bytes can be sent and read.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startTestController, type TestController } from "../support/controller.ts";
import { openTls, rawExchange, untilClosed, type RawResponse } from "../support/raw-http.ts";
import { executorCall, register, HEARTBEAT, type Enrolled } from "../support/wire.ts";

let tc: TestController;
let admin: string;
let ex: Enrolled;
beforeAll(async () => {
  tc = await startTestController();
  admin = (await tc.c.ctx.apiTokens.create({ name: "shape-admin", role: "admin" }, "test", { via: "test" })).token;
  ex = await register(tc.url, tc.caPem, await tc.createToken());
});
afterAll(async () => {
  await ex?.client.close();
  await tc?.close();
});

/** Status and code of a contract-shaped error, after checking the shape itself. */
function shaped(r: RawResponse): [number | undefined, string | undefined] {
  expect(r.headers["content-type"], r.text.slice(0, 300)).toMatch(/^application\/json/);
  expect(Object.keys(r.json ?? {}), r.text.slice(0, 300)).toEqual(["error"]);
  expect(typeof r.json.error.message).toBe("string");
  return [r.status, r.json.error.code];
}

const nested = (depth: number) => `${"[".repeat(depth)}${"]".repeat(depth)}`;

describe("errors Node or fastify answer before a route runs", () => {
  it("headers over 16 KiB → 431 HEADERS_TOO_LARGE, connection closed", async () => {
    const r = await rawExchange(tc.c.port, `GET /healthz HTTP/1.1\r\nhost: x\r\nx-big: ${"a".repeat(20_000)}\r\n\r\n`);
    expect(shaped(r)).toEqual([431, "HEADERS_TOO_LARGE"]);
    expect(r.closed).toBe(true);
  });

  it("a request line over 16 KiB → 431 HEADERS_TOO_LARGE", async () => {
    const r = await rawExchange(tc.c.port, `GET /${"a".repeat(20_000)} HTTP/1.1\r\nhost: x\r\n\r\n`);
    expect(shaped(r)).toEqual([431, "HEADERS_TOO_LARGE"]);
  });

  it("a path parameter over 100 characters → 414 URI_TOO_LONG", async () => {
    const r = await rawExchange(tc.c.port, `POST /v1/executors/${"a".repeat(200)}/heartbeat HTTP/1.1\r\nhost: x\r\ncontent-length: 0\r\nconnection: close\r\n\r\n`);
    expect(shaped(r)).toEqual([414, "URI_TOO_LONG"]);
  });

  it("malformed percent-encoding in the path (FST_ERR_BAD_URL) → 400 INVALID_REQUEST", async () => {
    const r = await rawExchange(tc.c.port, `POST /v1/executors/%zz/heartbeat HTTP/1.1\r\nhost: x\r\ncontent-length: 0\r\nconnection: close\r\n\r\n`);
    expect(shaped(r)).toEqual([400, "INVALID_REQUEST"]);
    expect(r.json.error.message).not.toContain("%zz");
  });

  it.each([
    ["a non-numeric Content-Length", "POST /healthz HTTP/1.1\r\nhost: x\r\ncontent-length: abc\r\n\r\n"],
    ["a garbage request line", "GARBAGE\r\n\r\n"],
    ["both Content-Length and Transfer-Encoding", "POST /v1/executors/register HTTP/1.1\r\nhost: x\r\ncontent-length: 3\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n"],
    ["a broken chunk size", "POST /v1/executors/register HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n"],
    ["a NUL in a header value", "GET /healthz HTTP/1.1\r\nhost: x\r\nx-a: b\0c\r\n\r\n"],
  ])("malformed framing (%s) → 400 INVALID_REQUEST, connection closed", async (_name, request) => {
    const r = await rawExchange(tc.c.port, request);
    expect(shaped(r)).toEqual([400, "INVALID_REQUEST"]);
    expect(r.headers.connection).toBe("close");
    expect(r.closed).toBe(true);
  });

  it("an HTTP/1.1 request without Host is answered by the routes, not with a bare 400", async () => {
    const ok = await rawExchange(tc.c.port, "GET /healthz HTTP/1.1\r\nconnection: close\r\n\r\n");
    expect([ok.status, ok.json]).toEqual([200, { status: "ok" }]);
    const missing = await rawExchange(tc.c.port, "GET /nowhere HTTP/1.1\r\nconnection: close\r\n\r\n");
    expect(shaped(missing)).toEqual([404, "NOT_FOUND"]);
  });

  it.each(["CONNECT", "PROPFIND"])("a %s request (no route takes it) → 404 NOT_FOUND", async (method) => {
    const r = await rawExchange(tc.c.port, `${method} /.well-known/jwks.json HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n`);
    expect(shaped(r)).toEqual([404, "NOT_FOUND"]);
  });

  it("an Expect other than 100-continue → 417 EXPECTATION_FAILED", async () => {
    const r = await rawExchange(tc.c.port, "GET /healthz HTTP/1.1\r\nhost: x\r\nexpect: teapot\r\nconnection: close\r\n\r\n");
    expect(shaped(r)).toEqual([417, "EXPECTATION_FAILED"]);
  });
});

describe("deeply nested JSON", () => {
  const submit = (payload: string) =>
    rawExchange(tc.c.port, post("/api/v1/tasks", `{"kind":"command","payload":{"argv":["true"],"x":${payload}}}`, { authorization: `Bearer ${admin}` }));

  it.each([4_000, 20_000])("a task payload nested %i deep → 400 INVALID_REQUEST, and the controller still answers", async (depth) => {
    const r = await submit(nested(depth));
    expect(shaped(r)).toEqual([400, "INVALID_REQUEST"]);
    expect(r.json.error.message).toMatch(/64 levels/);
    const health = await rawExchange(tc.c.port, "GET /healthz HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n");
    expect(health.status).toBe(200);
  });

  it("nesting inside strings does not count; 60 levels are accepted", async () => {
    const r = await submit(`{"s":"${"[".repeat(5_000)}","deep":${nested(60)}}`);
    expect(r.status, r.body.slice(0, 300)).toBe(201);
  });

  it("on an executor route the guards still come first, then the depth → 400 INVALID_REQUEST", async () => {
    const anon = await rawExchange(tc.c.port, post(`/v1/executors/${ex.id}/heartbeat`, nested(4_000)));
    expect(shaped(anon)).toEqual([401, "CERT_REQUIRED"]);
    const r = await executorCall(ex, "POST", `/v1/executors/${ex.id}/heartbeat`, `{"status":"ready","running":0,"capacity":2,"leases":[],"x":${nested(4_000)}}`);
    expect([r.status, r.json?.error?.code]).toEqual([400, "INVALID_REQUEST"]);
    const ok = await executorCall(ex, "POST", `/v1/executors/${ex.id}/heartbeat`, HEARTBEAT);
    expect(ok.status).toBe(200);
  });
});

describe("while the server closes", () => {
  it("a request that arrives during shutdown → 503 UNAVAILABLE in the contract's shape", async () => {
    const closing = await startTestController();
    const s = await openTls(closing.c.port);
    const answer = untilClosed(s);
    s.write("GET /healthz HTTP/1.1\r\nhost: x\r\n"); // headers not finished: the connection is busy, not idle
    await new Promise((r) => setTimeout(r, 100));
    const closed = closing.close();
    await new Promise((r) => setTimeout(r, 100));
    s.write("\r\n");
    const r = await answer;
    await closed;
    expect(shaped(r)).toEqual([503, "UNAVAILABLE"]);
    expect(r.headers["retry-after"]).toBeDefined();
  });
});

function post(path: string, body: string, headers: Record<string, string> = {}): string {
  const extra = Object.entries(headers).map(([k, v]) => `${k}: ${v}\r\n`).join("");
  return `POST ${path} HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\n${extra}connection: close\r\n\r\n${body}`;
}
