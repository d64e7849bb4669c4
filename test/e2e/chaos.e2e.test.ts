/**
 * Chaos, with real processes over real mTLS: the controller killed with SIGKILL while
 * registrations and heartbeats flow, frozen with SIGSTOP, gone for a while, and out of
 * disk. What was answered is never lost, no executor has to enroll again, and a store
 * that cannot write answers 503 and keeps no half-written state.
 *
 * TETHER_CHAOS_LONG=1 runs the outage at the full 60 s (the default here is
 * shorter, to keep `npm test` quick); docs/security.md has the figures of both.
 */
import { afterAll, describe, expect, it } from "vitest";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import Database from "better-sqlite3";
import { DB_FILE } from "../../controller/store/sqlite/sqlite-store.ts";
import { DEFAULT_BACKOFF, DEFAULT_REFUSED_RETRY as REFUSED } from "../../executor/backoff.ts";
import { canMountTmpfs, mountTmpfs } from "../support/full-disk.ts";
import { executorCall, HEARTBEAT, newKeyAndCsr, register, WireClient, type Enrolled } from "../support/wire.ts";
import { createToken, killAll, listExecutors, showExecutor, sleep, start, startController, startExecutor, tempDir, type Controller, type Proc } from "./harness.ts";

const LONG = process.env.TETHER_CHAOS_LONG === "1";
const code = (r: { json: any }) => r.json?.error?.code;

afterAll(async () => {
  await killAll();
});

/** `kill -9`, then the same command line again on the same data dir and port. */
async function crashAndRestart(ctl: Controller): Promise<void> {
  await ctl.proc.kill("SIGKILL");
  ctl.proc = start(ctl.args);
  await ctl.proc.waitFor(/listening on https:\/\/127\.0\.0\.1:\d+/, "the controller to listen again", 20_000);
}

function integrityCheck(dataDir: string): string {
  const db = new Database(join(dataDir, DB_FILE), { readonly: true, fileMustExist: true });
  try {
    return String(db.pragma("integrity_check", { simple: true }));
  } finally {
    db.close();
  }
}

describe("chaos (e2e)", () => {
  it("kill -9 of the controller while registrations and heartbeats flow loses nothing that was answered", async () => {
    const ctl = await startController({ heartbeat: "10s" });
    const caPem = readFileSync(ctl.caFile, "utf8");
    const token = createToken(ctl.dataDir, ["--uses", "1000", "--ttl", "1h"]);
    const csrs = await Promise.all(Array.from({ length: 60 }, () => newKeyAndCsr()));
    const seed = await Promise.all(Array.from({ length: 4 }, () => register(ctl.url, caPem, token)));
    const registered = new Map<string, string>(); // executor id → its certificate, from every 201
    const beats: { e: Enrolled; timestamp: string; nonce: string }[] = []; // every heartbeat answered 200
    let stop = false;
    let sent = 0;
    const anon = new WireClient(ctl.url, caPem);

    const registrations = (async () => {
      for (const { csrPem } of csrs) {
        if (stop) return;
        sent++;
        const r = await anon
          .send("POST", "/v1/executors/register", { body: JSON.stringify({ enrollment_token: token, csr_pem: csrPem }) })
          .catch(() => undefined); // no answer: the controller died under it
        if (r?.status === 201) registered.set(r.json.executor_id, r.json.certificate_pem);
      }
    })();
    const heartbeats = seed.map(async (e, i) => {
      for (let n = 0; !stop; n++) {
        sent++;
        const timestamp = String(Date.now());
        const nonce = `chaos-${i}-${n}-${Math.random().toString(36).slice(2, 12)}`.padEnd(16, "x");
        const r = await executorCall(e, "POST", `/v1/executors/${e.id}/heartbeat`, HEARTBEAT, { timestamp, nonce }).catch(() => undefined);
        if (r?.status === 200) beats.push({ e, timestamp, nonce });
        else if (r === undefined) await sleep(20);
      }
    });
    await sleep(1500);
    await crashAndRestart(ctl);
    stop = true;
    await Promise.all([registrations, ...heartbeats]);
    await anon.close();
    expect(registered.size).toBeGreaterThan(0);
    expect(beats.length).toBeGreaterThan(0);

    // Every 201 has its executor, and every accepted nonce is still refused.
    const known = new Set(listExecutors(ctl.dataDir).map((x) => x.id));
    for (const id of registered.keys()) expect(known.has(id), `executor ${id} answered 201`).toBe(true);
    for (const { e, timestamp, nonce } of beats) {
      const replay = await executorCall(e, "POST", `/v1/executors/${e.id}/heartbeat`, HEARTBEAT, { timestamp, nonce });
      expect([replay.status, code(replay)], `nonce ${nonce}`).toEqual([409, "NONCE_REPLAY"]);
    }
    // The seeded executors carry on with their credentials: nothing had to enroll again.
    for (const e of seed) expect((await executorCall(e, "POST", `/v1/executors/${e.id}/heartbeat`, HEARTBEAT)).status).toBe(200);
    expect(integrityCheck(ctl.dataDir)).toBe("ok");
    for (const e of seed) await e.client.close();
    await ctl.stop();
    expect(integrityCheck(ctl.dataDir)).toBe("ok");
    console.info(`[chaos] kill -9: ${sent} requests, ${registered.size} registrations and ${beats.length} heartbeats answered before the kill, all kept`);
  }, 90_000);

  it("SIGSTOP/SIGCONT of the controller for longer than the heartbeat interval re-enrolls no executor", async () => {
    const ctl = await startController({ heartbeat: "1s" });
    const token = createToken(ctl.dataDir, ["--uses", "2"]);
    const daemons: Proc[] = [0, 1].map(() => startExecutor(ctl, join(tempDir(), "state"), ["--token", token]));
    const ids = await Promise.all(daemons.map(async (d) => (await d.waitForEvent("ready", 20_000)).executor_id as string));
    const hbBefore = daemons.map((d) => d.count("heartbeat"));
    expect(ctl.proc.child.kill("SIGSTOP")).toBe(true);
    await sleep(5_000); // 5 heartbeat intervals: past "suspect", short of the daemons' request timeout
    expect(ctl.proc.child.kill("SIGCONT")).toBe(true);
    await Promise.all(daemons.map((d, i) => d.waitFor(() => d.count("heartbeat") >= hbBefore[i]! + 3, "heartbeats to flow again", 20_000)));
    for (const [i, d] of daemons.entries()) {
      expect(d.count("enrolled"), "enrolled once").toBe(1);
      expect(d.count("reenrolling")).toBe(0);
      expect(d.child.exitCode).toBeNull();
      expect(showExecutor(ctl.dataDir, ids[i]!)).toMatchObject({ id: ids[i], epoch: 1, status: "ready" });
    }
    expect(listExecutors(ctl.dataDir)).toHaveLength(2);
    await Promise.all(daemons.map((d) => d.kill("SIGTERM")));
    await ctl.stop();
  }, 90_000);

  it(`a controller outage (${LONG ? 60 : 20} s): daemons retry refused connections every 0.5–1.5 s for ${REFUSED.windowMs / 1000} s, then back off toward the cap; all return promptly`, async () => {
    const CAP_MS = DEFAULT_BACKOFF.capMs;
    const outageMs = LONG ? 60_000 : 20_000;
    const ctl = await startController({ heartbeat: "1s" });
    const token = createToken(ctl.dataDir, ["--uses", "3"]);
    const daemons: Proc[] = [0, 1, 2].map(() => startExecutor(ctl, join(tempDir(), "state"), ["--token", token]));
    await Promise.all(daemons.map((d) => d.waitForEvent("ready", 20_000)));
    await ctl.stop();
    await sleep(outageMs);
    const back = Date.now();
    ctl.proc = start(ctl.args);
    await ctl.proc.waitFor(/listening on/, "the controller to return", 20_000);
    const listening = Date.now() - back;
    await Promise.all(daemons.map((d) => d.waitForEvent("contact.restored", CAP_MS + 10_000)));
    const returned = Date.now() - back;
    const flat = (ms: number) => ms >= REFUSED.minMs && ms < REFUSED.maxMs;
    for (const d of daemons) {
      const delays = d.logs().filter((l) => l.event === "retrying" && l.what === "heartbeat").map((l) => l.delay_ms as number);
      // Nothing listens (ECONNREFUSED): short flat retries while the outage is young — many of them, none longer.
      expect(delays.length).toBeGreaterThanOrEqual(Math.min(outageMs, REFUSED.windowMs) / REFUSED.maxMs - 2);
      expect(delays.slice(0, 8).every(flat), JSON.stringify(delays)).toBe(true);
      expect(Math.max(...delays)).toBeLessThanOrEqual(CAP_MS);
      // Past the window, the usual exponential backoff: the delays grow beyond the flat range.
      if (outageMs > REFUSED.windowMs + 5_000) expect(delays.at(-1)!).toBeGreaterThan(REFUSED.maxMs * 2);
      else expect(delays.every(flat), JSON.stringify(delays)).toBe(true);
      expect(d.count("enrolled")).toBe(1);
    }
    // Back within a flat retry of the controller listening (a long outage: within one cap interval).
    expect(returned).toBeLessThan(outageMs > REFUSED.windowMs ? CAP_MS + 5_000 : listening + REFUSED.maxMs + 3_000);
    console.info(`[chaos] outage ${outageMs / 1000} s: all ${daemons.length} daemons back ${(returned / 1000).toFixed(1)} s after the controller was started (listening after ${(listening / 1000).toFixed(1)} s)`);
    await Promise.all(daemons.map((d) => d.kill("SIGTERM")));
    await ctl.stop();
  }, (LONG ? 60 : 20) * 1000 + 120_000);

  it.skipIf(!canMountTmpfs)("disk full on the data dir: 503 UNAVAILABLE with Retry-After, nothing half-written, and it recovers", async () => {
    const disk = mountTmpfs(16);
    const dataDir = join(disk.dir, "data");
    const ctl = await startController({ dataDir, heartbeat: "10s" });
    const caPem = readFileSync(ctl.caFile, "utf8");
    const e = await register(ctl.url, caPem, createToken(dataDir, ["--uses", "5"]));
    const spare = createToken(dataDir, ["--uses", "1"]); // made now: with the disk full, the CLI could not write it
    expect((await executorCall(e, "POST", `/v1/executors/${e.id}/heartbeat`, HEARTBEAT)).status).toBe(200);
    // The WAL reuses the space it already has, so a filling disk shows once the WAL must grow: start
    // from an empty one (what the controller's checkpointer does itself after 30 s without writes).
    const side = new Database(join(dataDir, DB_FILE));
    side.pragma("wal_checkpoint(TRUNCATE)");
    side.close();
    disk.fill();
    const refused = await executorCall(e, "POST", `/v1/executors/${e.id}/heartbeat`, HEARTBEAT);
    expect([refused.status, code(refused)]).toEqual([503, "UNAVAILABLE"]);
    expect(Number(refused.headers["retry-after"])).toBeGreaterThan(0);
    const { csrPem } = await newKeyAndCsr();
    const anon = new WireClient(ctl.url, caPem);
    const reg = await anon.send("POST", "/v1/executors/register", { body: JSON.stringify({ enrollment_token: spare, csr_pem: csrPem }) });
    expect([reg.status, code(reg)]).toEqual([503, "UNAVAILABLE"]);
    // Space again: everything works, and the database is whole.
    disk.free();
    expect((await executorCall(e, "POST", `/v1/executors/${e.id}/heartbeat`, HEARTBEAT)).status).toBe(200);
    // The refused registration consumed nothing: the same token enrolls now.
    const again = await anon.send("POST", "/v1/executors/register", { body: JSON.stringify({ enrollment_token: spare, csr_pem: csrPem }) });
    expect(again.status).toBe(201);
    await anon.close();
    await e.client.close();
    await ctl.stop();
    expect(integrityCheck(dataDir)).toBe("ok");
  }, 90_000);
});
