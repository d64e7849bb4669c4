/**
 * No client can fill the disk through audit.log (docs/security.md, "Audit volume"):
 * rejections are aggregated per source and kind, the file is rotated at its cap, and
 * a legitimate event after a flood is still written. Real controller, real TLS.
 */
import { existsSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { Agent, request } from "undici";
import { afterAll, describe, expect, it } from "vitest";
import { auditFileName } from "../../controller/domain/audit.ts";
import { startTestController, type TestController } from "../support/controller.ts";
import { newKeyAndCsr, register, WireClient } from "../support/wire.ts";

type Line = Record<string, unknown> & { event: string; count?: number; aggregated?: boolean };
const readLines = (dir: string, file = "audit.log"): Line[] =>
  existsSync(join(dir, file)) ? readFileSync(join(dir, file), "utf8").split("\n").filter(Boolean).map((l) => JSON.parse(l)) : [];
/** How many rejections the lines stand for: a first line is one, an aggregated line its `count`. */
const represented = (lines: Line[]) => lines.reduce((n, l) => n + (l.aggregated ? (l.count ?? 0) : 1), 0);

/** Sends `n` requests, `inFlight` at a time, and counts the statuses. */
async function flood(n: number, inFlight: number, send: (i: number) => Promise<number>): Promise<Record<number, number>> {
  const statuses: Record<number, number> = {};
  let next = 0;
  await Promise.all(Array.from({ length: inFlight }, async () => {
    while (next < n) {
      const s = await send(next++);
      statuses[s] = (statuses[s] ?? 0) + 1;
    }
  }));
  return statuses;
}

const controllers: TestController[] = [];
const clients: { close(): Promise<void> }[] = [];
afterAll(async () => {
  for (const c of clients) await c.close();
  for (const t of controllers) await t.close().catch(() => {});
});

describe("a flood of rejections from one source", () => {
  it("10,000 requests without a certificate, 300 operator auth failures and 300 /register 429s are a handful of lines with the right counts", async () => {
    // A long window, so that a slow machine does not close it before the checks below.
    const tc = await startTestController({ registerBurst: 1, registerPerSecond: 0.001, auditWindowMs: 600_000 });
    controllers.push(tc);
    const anon = new WireClient(tc.url, tc.caPem);
    clients.push(anon);
    const t0 = Date.now();
    // First of its kind, so its details are written: a path id that is not an executor id
    // is never echoed, and the raw path never is.
    expect((await anon.send("POST", "/v1/executors/not%20an.id!/heartbeat", { body: "{}" })).status).toBe(401);
    const guard = await flood(10_000, 32, async (i) =>
      (await anon.send("POST", `/v1/executors/ex_flood${i % 3}/heartbeat`, { body: "{}" })).status);
    expect(guard).toEqual({ 401: 10_000 });
    const operator = await flood(300, 16, async () =>
      (await anon.send("GET", "/api/v1/executors", { headers: { authorization: "Bearer tet_pat_guessing" } })).status);
    expect(operator).toEqual({ 401: 300 });
    const { csrPem } = await newKeyAndCsr();
    const body = JSON.stringify({ enrollment_token: "tet_enr_" + "A".repeat(43), csr_pem: csrPem });
    const reg = await flood(301, 16, async () => (await anon.send("POST", "/v1/executors/register", { body })).status);
    expect(reg).toEqual({ 401: 1, 429: 300 });
    const floodSeconds = (Date.now() - t0) / 1000;

    // While the window is open: the first of each kind only.
    const during = readLines(tc.dataDir);
    const guardLines = during.filter((l) => l.event === "guard.rejected");
    expect(guardLines).toHaveLength(1);
    expect(guardLines[0]).toMatchObject({ source: "127.0.0.1", code: "CERT_REQUIRED", reason: "no certificate", path: "/v1/executors/:id/heartbeat" });
    expect(guardLines[0]).not.toHaveProperty("executor_id");
    expect(during.filter((l) => l.event === "operator.auth_failed")).toHaveLength(1);
    expect(during.filter((l) => l.event === "register.rate_limited")).toHaveLength(1);
    expect(readFileSync(join(tc.dataDir, "audit.log"), "utf8")).not.toMatch(/not an\.id|not%20an/);

    // The window closes (here: at shutdown): one more line per kind, carrying the count.
    await tc.c.close();
    const after = readLines(tc.dataDir);
    const g = after.filter((l) => l.event === "guard.rejected");
    expect(g).toHaveLength(2);
    expect(g[1]).toMatchObject({ aggregated: true, count: 10_000, source: "127.0.0.1", code: "CERT_REQUIRED", reason: "no certificate" });
    expect(represented(g)).toBe(10_001);
    expect(represented(after.filter((l) => l.event === "operator.auth_failed"))).toBe(300);
    expect(represented(after.filter((l) => l.event === "register.rate_limited"))).toBe(300);
    expect(after.length).toBeLessThanOrEqual(12);
    console.log(`flood: ${10_000 + 300 + 301 + 1} requests in ${floodSeconds.toFixed(1)} s → ${after.length} audit lines, ${statSync(join(tc.dataDir, "audit.log")).size} bytes`);
  }, 120_000);
});

describe("the file is capped", () => {
  it("rejections from 200 sources rotate audit.log within its cap; a registration after the flood is still written", async () => {
    const cap = 8 * 1024;
    const tc = await startTestController({ auditMaxBytes: cap, auditMaxFiles: 3, auditWindowMs: 600_000 });
    controllers.push(tc);
    // Linux routes all of 127/8 to loopback: each local address is its own source.
    for (let s = 2; s < 202; s++) {
      const agent = new Agent({ localAddress: `127.0.1.${s - 1}`, connect: { ca: tc.caPem } });
      for (let i = 0; i < 20; i++) {
        const res = await request(`${tc.url}/v1/executors/ex_x/heartbeat`, { method: "POST", dispatcher: agent, body: "{}", headers: { "content-type": "application/json" } });
        await res.body.text();
        expect(res.statusCode).toBe(401);
      }
      await agent.close();
    }
    const sizes = () => [0, 1, 2, 3].map((i) => (existsSync(join(tc.dataDir, auditFileName(i))) ? statSync(join(tc.dataDir, auditFileName(i))).size : -1));
    const last = readLines(tc.dataDir).find((l) => l.event === "guard.rejected" && l.source === "127.0.1.200" && !l.aggregated);
    expect(last).toMatchObject({ executor_id: "ex_x", code: "CERT_REQUIRED" }); // a well-formed id is written
    const before = sizes();
    expect(before[3]).toBe(-1); // three files at most
    for (const s of before.slice(0, 3)) expect(s).toBeLessThanOrEqual(cap);
    expect(before[1]).toBeGreaterThan(0); // it did rotate

    const ex = await register(tc.url, tc.caPem, await tc.createToken(), { name: "after-the-flood" });
    clients.push(ex.client);
    expect(readLines(tc.dataDir).some((l) => l.event === "executor.registered" && l.executor_id === ex.id)).toBe(true);
    await tc.c.close();
    for (const s of sizes().slice(0, 3)) expect(s).toBeLessThanOrEqual(cap);
    expect(sizes()[3]).toBe(-1);
  }, 120_000);
});
