/**
 * Network bounds (docs/security.md "Network bounds, TLS and error shapes") over real
 * sockets, with small limits so each takes well under a second: connection caps in
 * total and per source address, the TLS handshake timeout, header and request
 * timeouts (a trickled /register body), and the /register body limit.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { TLSSocket } from "node:tls";
import { startTestController, type TestController } from "../support/controller.ts";
import { openTcp, openTls, rawExchange, untilClosed } from "../support/raw-http.ts";
import { executorCall, newKeyAndCsr, register, HEARTBEAT } from "../support/wire.ts";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const opened: TestController[] = [];
afterAll(async () => {
  for (const t of opened) await t.close();
});
async function controller(overrides: Parameters<typeof startTestController>[0]): Promise<TestController> {
  const tc = await startTestController(overrides);
  opened.push(tc);
  return tc;
}

/** Resolves with how the connection attempt ended: "secure" (handshake done) or the error. */
function attempt(port: number): Promise<{ outcome: string; socket?: TLSSocket }> {
  return openTls(port).then(
    (socket) => ({ outcome: "secure", socket }),
    (e: NodeJS.ErrnoException) => ({ outcome: e.code ?? e.message }),
  );
}

describe("connection caps", () => {
  it("the (N+1)th connection from one address is closed before TLS; a slot frees when one closes", async () => {
    const tc = await controller({ maxConnectionsPerAddress: 3 });
    const first = await Promise.all([attempt(tc.c.port), attempt(tc.c.port), attempt(tc.c.port)]);
    expect(first.map((a) => a.outcome)).toEqual(["secure", "secure", "secure"]);
    const over = await attempt(tc.c.port);
    expect(over.outcome).not.toBe("secure");
    first[0]!.socket!.destroy();
    await sleep(100);
    const again = await attempt(tc.c.port);
    expect(again.outcome).toBe("secure");
    for (const a of [...first, again]) a.socket?.destroy();
  });

  it("the global cap closes connections past it, whatever their address", async () => {
    const tc = await controller({ maxConnections: 2 });
    const held = await Promise.all([attempt(tc.c.port), attempt(tc.c.port)]);
    expect(held.map((a) => a.outcome)).toEqual(["secure", "secure"]);
    expect((await attempt(tc.c.port)).outcome).not.toBe("secure");
    for (const a of held) a.socket?.destroy();
  });
});

describe("timeouts", () => {
  let tc: TestController;
  beforeAll(async () => {
    tc = await controller({ tlsHandshakeTimeoutMs: 300, headersTimeoutMs: 300, requestTimeoutMs: 600 });
  });

  it("a TCP connection that never starts the TLS handshake is closed within the handshake timeout", async () => {
    const r = await untilClosed(await openTcp(tc.c.port), 5_000);
    expect(r.closed).toBe(true);
    expect(r.ms).toBeLessThan(1_500);
    expect(r.text).toBe("");
  });

  it("a TLS connection that sends no request → 408 REQUEST_TIMEOUT, closed", async () => {
    const r = await untilClosed(await openTls(tc.c.port), 5_000);
    expect(r.closed).toBe(true);
    expect(r.ms).toBeLessThan(1_500);
    expect([r.status, r.json?.error?.code]).toEqual([408, "REQUEST_TIMEOUT"]);
  });

  it("a trickled /register body is cut off with 408 REQUEST_TIMEOUT and nothing is registered", async () => {
    const before = (await tc.c.ctx.executors.list()).length;
    const { csrPem } = await newKeyAndCsr();
    const body = JSON.stringify({ enrollment_token: await tc.createToken(), csr_pem: csrPem });
    const s = await openTls(tc.c.port);
    const answer = untilClosed(s, 5_000);
    s.write(`POST /v1/executors/register HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: ${body.length}\r\n\r\n`);
    let i = 0;
    const trickle = setInterval(() => s.writable && i < body.length && s.write(body[i++]!), 50);
    const r = await answer;
    clearInterval(trickle);
    expect([r.status, r.json?.error?.code]).toEqual([408, "REQUEST_TIMEOUT"]);
    expect(r.headers.connection).toBe("close");
    expect(r.ms).toBeLessThan(2_000);
    expect((await tc.c.ctx.executors.list()).length).toBe(before);
  });

  it("the request timeout bounds receiving a request, not answering it: a long poll outlives it", async () => {
    const e = await register(tc.url, tc.caPem, await tc.createToken());
    const r = await executorCall(e, "POST", `/v1/executors/${e.id}/leases`, { max: 1, wait_s: 1 });
    expect([r.status, r.json]).toEqual([200, { leases: [] }]);
    await e.client.close();
  });

  it("a keep-alive connection idle for longer than the header and request timeouts still serves the next request", async () => {
    const e = await register(tc.url, tc.caPem, await tc.createToken());
    expect((await executorCall(e, "POST", `/v1/executors/${e.id}/heartbeat`, HEARTBEAT)).status).toBe(200);
    await sleep(1_000);
    expect((await executorCall(e, "POST", `/v1/executors/${e.id}/heartbeat`, HEARTBEAT)).status).toBe(200);
    await e.client.close();
  });
});

describe("body limits", () => {
  let tc: TestController;
  beforeAll(async () => {
    tc = await controller({});
  });
  const registerRequest = (body: string) =>
    `POST /v1/executors/register HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`;

  it("a 17 KiB /register body → 413 PAYLOAD_TOO_LARGE in the contract's shape, connection closed", async () => {
    const body = JSON.stringify({ enrollment_token: "tet_enr_x", csr_pem: "A".repeat(17 * 1024) }).slice(0, 17 * 1024);
    const r = await rawExchange(tc.c.port, registerRequest(body));
    expect([r.status, r.json?.error?.code]).toEqual([413, "PAYLOAD_TOO_LARGE"]);
    expect(Object.keys(r.json)).toEqual(["error"]);
    expect(r.headers.connection).toBe("close");
  });

  it("the largest legitimate /register body (a 16,384-character CSR field with CRLF lines) is not refused for its size", async () => {
    const end = "-----END CERTIFICATE REQUEST-----\r\n";
    let pem = "-----BEGIN CERTIFICATE REQUEST-----\r\n";
    while (pem.length + 66 + end.length <= 16_384) pem += `${"A".repeat(64)}\r\n`;
    pem += "A".repeat(16_384 - pem.length - end.length) + end;
    const body = JSON.stringify({ enrollment_token: `tet_enr_${"A".repeat(248)}`, csr_pem: pem, name: "n".repeat(64), capacity: 1024 });
    expect(body.length).toBeGreaterThan(17_000);
    const r = await rawExchange(tc.c.port, registerRequest(body));
    expect([r.status, r.json?.error?.code]).toEqual([401, "ENROLLMENT_DENIED"]);
  });

  it("other executor routes keep the 64 KiB limit of PROTOCOL §1", async () => {
    const e = await register(tc.url, tc.caPem, await tc.createToken());
    const padded = (n: number) => JSON.stringify({ ...HEARTBEAT, pad: "x".repeat(n) });
    const ok = await executorCall(e, "POST", `/v1/executors/${e.id}/heartbeat`, padded(60 * 1024));
    expect(ok.status).toBe(200);
    const big = await executorCall(e, "POST", `/v1/executors/${e.id}/heartbeat`, padded(64 * 1024));
    expect([big.status, big.json?.error?.code]).toEqual([413, "PAYLOAD_TOO_LARGE"]);
    await e.client.close();
  });
});
