/**
 * The opening gate (controller/http/opening-gate.ts) on a real controller over real TLS:
 * a connection beyond `maxConnectionsOpening` waits unread for its turn and is then
 * served; a connection that opens and says nothing holds its slot for OPENING_SLOT_MS at
 * most; the sources waiting are taken in turn (many stalled connections from one address
 * do not hold up another address); and a controller stops promptly with connections
 * still waiting.
 */
import { afterEach, describe, expect, it } from "vitest";
import { connect as tcpConnect, type Socket } from "node:net";
import { connect as tlsConnect } from "node:tls";
import { OPENING_SLOT_MS } from "../../controller/http/opening-gate.ts";
import { startTestController, type TestController } from "../support/controller.ts";
import { parseRaw } from "../support/raw-http.ts";

let tc: TestController | undefined;
const sockets: Socket[] = [];
afterEach(async () => {
  for (const s of sockets.splice(0)) s.destroy();
  await tc?.close();
  tc = undefined;
});

/** A TCP connection that never starts TLS: it holds a slot when its turn comes. */
function stalled(port: number, localAddress = "127.0.0.1"): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const s = tcpConnect({ port, host: "127.0.0.1", localAddress }, () => resolve(s));
    s.on("error", reject);
    sockets.push(s);
  });
}

/** GET /healthz on a new TLS connection: the status and how long it took from the TCP connect. */
function healthz(port: number, localAddress = "127.0.0.1"): Promise<{ status?: number; ms: number }> {
  return new Promise((resolve, reject) => {
    const t0 = Date.now();
    let text = "";
    const raw = tcpConnect({ port, host: "127.0.0.1", localAddress });
    const s = tlsConnect({ socket: raw, servername: "localhost", rejectUnauthorized: false }, () =>
      s.write("GET /healthz HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n"),
    );
    s.on("data", (d: Buffer) => (text += d.toString("utf8")));
    s.on("error", reject);
    s.on("close", () => resolve({ status: parseRaw(text).status, ms: Date.now() - t0 }));
  });
}

describe("the opening gate", () => {
  it("a connection past the cap waits its turn and is served; a stalled one holds the slot for OPENING_SLOT_MS at most", async () => {
    tc = await startTestController({ maxConnectionsOpening: 1 });
    await stalled(tc.c.port);
    const r = await healthz(tc.c.port);
    expect(r.status).toBe(200);
    expect(r.ms).toBeGreaterThanOrEqual(OPENING_SLOT_MS - 250);
    expect(r.ms).toBeLessThan(OPENING_SLOT_MS + 2_000);
  });

  it("takes the waiting sources in turn: four stalled connections from 127.0.0.1 hold up 127.0.0.2 for one slot, not four", async () => {
    tc = await startTestController({ maxConnectionsOpening: 1, maxConnectionsPerAddress: 0 });
    for (let i = 0; i < 4; i++) await stalled(tc.c.port);
    await new Promise((r) => setTimeout(r, 100)); // all four accepted (one opening, three waiting) before the other source arrives
    const r = await healthz(tc.c.port, "127.0.0.2");
    expect(r.status).toBe(200);
    expect(r.ms).toBeLessThan(2 * OPENING_SLOT_MS); // first come first served alone would be ~4 slots
  });

  it("on shutdown, connections still waiting are closed at once, never opened, and the controller stops", async () => {
    // The one opening (a handshake that never comes) ends at the TLS handshake timeout, as before the gate.
    tc = await startTestController({ maxConnectionsOpening: 1, tlsHandshakeTimeoutMs: 1_000 });
    await stalled(tc.c.port);
    const waiting = [await stalled(tc.c.port), await stalled(tc.c.port)];
    await new Promise((r) => setTimeout(r, 100));
    const t0 = Date.now();
    const closedAt = waiting.map((s) => new Promise<number>((r) => s.once("close", () => r(Date.now() - t0))));
    const stopped = tc.close();
    tc = undefined;
    for (const ms of await Promise.all(closedAt)) expect(ms).toBeLessThan(500);
    await stopped;
  });
});
