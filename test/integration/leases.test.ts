/** Work dispatch over real TLS: leasing, fencing, heartbeat extension, cancellation and reclaim. */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startTestController, type TestController } from "../support/controller.ts";
import { executorCall, HEARTBEAT, register, type Enrolled } from "../support/wire.ts";

const code = (r: { json: any }) => r.json?.error?.code;
let tc: TestController;
const opened: Enrolled[] = [];

beforeAll(async () => {
  tc = await startTestController({ heartbeatIntervalSeconds: 1 });
});
afterAll(async () => {
  for (const e of opened) await e.client.close();
  await tc?.close();
});

async function executor(labels: Record<string, string> = {}): Promise<Enrolled> {
  const e = await register(tc.url, tc.caPem, await tc.createToken(), { labels });
  opened.push(e);
  return e;
}
const submit = (kind = "noop", selector: Record<string, string> = {}, extra: Record<string, unknown> = {}) =>
  tc.c.ctx.tasks.submit({ kind, payload: { n: 1 }, selector, ...extra }, { via: "test" });
const lease = (e: Enrolled, max = 1, wait_s = 0) => executorCall(e, "POST", `/v1/executors/${e.id}/leases`, { max, wait_s });
const complete = (e: Enrolled, leaseId: string, result: Record<string, unknown> = { ok: true }) =>
  executorCall(e, "POST", `/v1/executors/${e.id}/leases/${leaseId}/complete`, { result });
const fail = (e: Enrolled, leaseId: string, retryable: boolean) =>
  executorCall(e, "POST", `/v1/executors/${e.id}/leases/${leaseId}/fail`, { error: "boom", retryable });
const drainQueue = async () => {
  for (const t of await tc.c.ctx.tasks.list("queued", 1000)) await tc.c.ctx.tasks.cancel(t.id, { via: "test" });
};

describe("leases", () => {
  it("lease → complete → succeeded, with the result stored", async () => {
    await drainQueue();
    const e = await executor({ pool: "solo" });
    const t = await submit("noop", { pool: "solo" }, { timeout_s: 42 });
    const r = await lease(e);
    expect(r.status).toBe(200);
    expect(r.json.leases).toHaveLength(1);
    const l = r.json.leases[0];
    expect(l).toMatchObject({ task_id: t.id, kind: "noop", payload: { n: 1, timeout_s: 42 } });
    expect(Date.parse(l.expires_at)).toBeGreaterThan(Date.now());
    expect((await complete(e, l.lease_id, { exit_code: 0 })).status).toBe(200);
    const shown = await tc.c.ctx.tasks.show(t.id);
    expect(shown).toMatchObject({ status: "succeeded", attempts: 1, result: { exit_code: 0 } });
    const again = await complete(e, l.lease_id);
    expect([again.status, code(again)]).toEqual([409, "STALE_LEASE"]);
  });

  it("only tasks whose selector matches the executor's labels, within its capacity (2)", async () => {
    await drainQueue();
    const e = await executor({ gpu: "yes" });
    await submit("noop", { gpu: "no" });
    const match = [await submit("noop", { gpu: "yes" }), await submit("noop", {}), await submit("noop", { gpu: "yes" })];
    const r = await lease(e, 64);
    expect(r.json.leases.map((l: { task_id: string }) => l.task_id)).toEqual([match[0]!.id, match[1]!.id]);
    expect((await lease(e, 64)).json.leases).toHaveLength(0);
    for (const l of r.json.leases) await complete(e, l.lease_id);
    expect((await lease(e, 64)).json.leases.map((l: { task_id: string }) => l.task_id)).toEqual([match[2]!.id]);
  });

  it("a task is leased to one executor at a time under many concurrent pollers", async () => {
    await drainQueue();
    const pollers = await Promise.all(Array.from({ length: 10 }, () => executor({ pool: "race" })));
    const tasks = await Promise.all(Array.from({ length: 15 }, () => submit("noop", { pool: "race" })));
    const seen: string[] = [];
    for (let round = 0; round < 4; round++) {
      const results = await Promise.all(pollers.flatMap((p) => [lease(p, 2), lease(p, 2)]));
      for (const r of results) {
        expect(r.status).toBe(200);
        for (const l of r.json.leases) seen.push(l.task_id);
      }
    }
    expect(seen.length).toBe(new Set(seen).size);
    expect(new Set(seen)).toEqual(new Set(tasks.map((t) => t.id)));
  });

  it("complete or fail from another executor → 409 STALE_LEASE", async () => {
    await drainQueue();
    const a = await executor({ pool: "ab" });
    const b = await executor({ pool: "ab" });
    await submit("noop", { pool: "ab" });
    const l = (await lease(a)).json.leases[0];
    const r = await complete(b, l.lease_id);
    expect([r.status, code(r)]).toEqual([409, "STALE_LEASE"]);
    const f = await fail(b, l.lease_id, false);
    expect([f.status, code(f)]).toEqual([409, "STALE_LEASE"]);
    expect((await complete(a, l.lease_id)).status).toBe(200);
  });

  it("retryable failures requeue until max_attempts, then the task fails", async () => {
    await drainQueue();
    const e = await executor({ pool: "retry" });
    const t = await submit("noop", { pool: "retry" }, { max_attempts: 2 });
    const l1 = (await lease(e)).json.leases[0];
    expect((await fail(e, l1.lease_id, true)).status).toBe(200);
    expect((await tc.c.ctx.tasks.show(t.id)).status).toBe("queued");
    const l2 = (await lease(e)).json.leases[0];
    expect(l2.lease_id).not.toBe(l1.lease_id);
    expect((await fail(e, l2.lease_id, true)).status).toBe(200);
    expect(await tc.c.ctx.tasks.show(t.id)).toMatchObject({ status: "failed", attempts: 2 });
    const t2 = await submit("noop", { pool: "retry" });
    const l3 = (await lease(e)).json.leases[0];
    await fail(e, l3.lease_id, false);
    expect(await tc.c.ctx.tasks.show(t2.id)).toMatchObject({ status: "failed", attempts: 1, error: "boom" });
  });

  it("reregister (epoch + 1) returns the old epoch's leases; the old lease is then stale", async () => {
    await drainQueue();
    const e = await executor({ pool: "rr" });
    const t = await submit("noop", { pool: "rr" });
    const l = (await lease(e)).json.leases[0];
    const rr = await executorCall(e, "POST", `/v1/executors/${e.id}/reregister`, {});
    expect(rr.status).toBe(200);
    e.jwt = rr.json.jwt;
    expect(await tc.c.ctx.tasks.show(t.id)).toMatchObject({ status: "queued", attempts: 1 });
    const r = await complete(e, l.lease_id);
    expect([r.status, code(r)]).toEqual([409, "STALE_LEASE"]);
  });

  it("heartbeats extend listed leases and return cancelled or unknown ones in cancel_leases", async () => {
    await drainQueue();
    const e = await executor({ pool: "hb" });
    const keep = await submit("noop", { pool: "hb" });
    const stop = await submit("noop", { pool: "hb" });
    const ls = (await lease(e, 2)).json.leases as { lease_id: string; task_id: string }[];
    const keepLease = ls.find((l) => l.task_id === keep.id)!;
    const stopLease = ls.find((l) => l.task_id === stop.id)!;
    const before = (await tc.c.ctx.tasks.show(keep.id)).lease_expires_at!;
    await new Promise((r) => setTimeout(r, 1100));
    await tc.c.ctx.tasks.cancel(stop.id, { via: "test" });
    const hb = await executorCall(e, "POST", `/v1/executors/${e.id}/heartbeat`, { ...HEARTBEAT, running: 2, leases: [keepLease.lease_id, stopLease.lease_id, "lease_unknown"] });
    expect(hb.status).toBe(200);
    expect(hb.json.cancel_leases.sort()).toEqual([stopLease.lease_id, "lease_unknown"].sort());
    expect(Date.parse((await tc.c.ctx.tasks.show(keep.id)).lease_expires_at!)).toBeGreaterThan(Date.parse(before));
    expect((await tc.c.ctx.tasks.show(stop.id)).status).toBe("cancelled");
    const late = await complete(e, stopLease.lease_id);
    expect([late.status, code(late)]).toEqual([409, "STALE_LEASE"]);
  });

  it("a silent executor becomes suspect (no new leases), then offline: its leases are reclaimed", async () => {
    await drainQueue();
    const e = await executor({ pool: "silent" });
    const t = await submit("noop", { pool: "silent" });
    const l = (await lease(e)).json.leases[0];
    await submit("noop", { pool: "silent" });
    await new Promise((r) => setTimeout(r, 3300));
    expect((await tc.c.ctx.executors.show(e.id)).status).toBe("suspect");
    expect((await lease(e)).json.leases).toHaveLength(0);
    await new Promise((r) => setTimeout(r, 3200));
    expect((await tc.c.ctx.executors.show(e.id)).status).toBe("offline");
    await tc.c.ctx.tasks.reclaim();
    expect(await tc.c.ctx.tasks.show(t.id)).toMatchObject({ status: "queued", attempts: 1 });
    const stale = await complete(e, l.lease_id);
    expect([stale.status, code(stale)]).toEqual([409, "STALE_LEASE"]);
    // a heartbeat brings it back to ready, and it leases again
    expect((await executorCall(e, "POST", `/v1/executors/${e.id}/heartbeat`, HEARTBEAT)).status).toBe(200);
    expect((await tc.c.ctx.executors.show(e.id)).status).toBe("ready");
    expect((await lease(e)).json.leases).toHaveLength(1);
  }, 20_000);

  it("a long poll returns as soon as work arrives", async () => {
    await drainQueue();
    const e = await executor({ pool: "poll" });
    const started = Date.now();
    const pending = lease(e, 1, 10);
    await new Promise((r) => setTimeout(r, 300));
    const t = await submit("noop", { pool: "poll" });
    const r = await pending;
    expect(r.json.leases[0].task_id).toBe(t.id);
    expect(Date.now() - started).toBeLessThan(5000);
  });

  it("rejects bad lease requests with 400 INVALID_REQUEST", async () => {
    const e = await executor();
    for (const body of [{ max: 0, wait_s: 0 }, { max: 65, wait_s: 0 }, { max: 1, wait_s: 31 }, { max: 1 }]) {
      const r = await executorCall(e, "POST", `/v1/executors/${e.id}/leases`, body);
      expect([r.status, code(r)]).toEqual([400, "INVALID_REQUEST"]);
    }
  });

  it("at most 4 long polls of one executor wait at once: a fifth → 429 RATE_LIMITED with Retry-After", async () => {
    await drainQueue();
    const e = await executor({ pool: "capped" });
    const polls = Array.from({ length: 4 }, () => lease(e, 1, 2));
    await new Promise((r) => setTimeout(r, 300)); // let the four reach the controller and start waiting
    const fifth = await lease(e, 1, 2);
    expect([fifth.status, code(fifth)]).toEqual([429, "RATE_LIMITED"]);
    expect(fifth.headers["retry-after"]).toBe("1");
    for (const r of await Promise.all(polls)) expect([r.status, r.json.leases]).toEqual([200, []]);
    // once they have ended, polling works again
    expect((await lease(e, 1, 0)).status).toBe(200);
  });

  it("a controller shutdown ends waiting long polls at once instead of waiting for them", async () => {
    const own = await startTestController();
    const e = await register(own.url, own.caPem, await own.createToken());
    const pending = executorCall(e, "POST", `/v1/executors/${e.id}/leases`, { max: 1, wait_s: 30 });
    await new Promise((r) => setTimeout(r, 300));
    const started = Date.now();
    await own.close();
    expect(Date.now() - started).toBeLessThan(5000);
    const r = await pending.catch(() => undefined);
    if (r) expect(r.status === 200 ? r.json.leases : []).toEqual([]);
    await e.client.close();
  });
});
