/**
 * Several controllers on one PostgreSQL database (PROTOCOL §8), as real processes: two
 * replicas and three daemons given both URLs. Across replicas a nonce is accepted once,
 * a single-use token registers one executor, a long poll on one is woken by a submission
 * on the other, 200 tasks submitted alternately run exactly once, and a revocation made
 * through one is enforced by the other within 1 s. Then the replica the daemons use is
 * killed -9 mid-batch (they move on, nothing runs twice, its duties move), restarted
 * (no second CA), and the database refuses every connection for a while (503s, never
 * 401, then recovery with nothing lost).
 */
import { afterAll, beforeAll, expect, it } from "vitest";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import pg from "pg";
import { request } from "undici";
import { killAll, sleep, start, startController, tempDir, tether, type Controller, type Proc } from "./harness.ts";
import { executorCall, HEARTBEAT, register, WireClient, type Enrolled } from "../support/wire.ts";
import { describePostgres, freshDatabase, postgresAdminUrl } from "../support/postgres.ts";

interface TaskView {
  id: string;
  status: string;
  attempts: number;
  executor_id: string | null;
}

describePostgres("replicas on PostgreSQL (e2e)", () => {
  let db: { url: string; drop(): Promise<void> };
  let kek: string;
  let a: Controller;
  let b: Controller;
  let caPem: string;
  let admin: string;
  const daemons: Proc[] = [];
  const clients: WireClient[] = [];
  const work = tempDir();

  const storeArgs = () => ["--store", db.url, "--kek-file", kek];
  const replica = async (dataDir?: string) => {
    const c = await startController({ dataDir, heartbeat: "1s", args: [...storeArgs(), "--log-level", "info"] });
    // Printed after the "listening" line the harness waits for: under load it can arrive later.
    await c.proc.waitFor(/CA fingerprint SHA256:[0-9A-F:]{95}/, "the controller to print its CA fingerprint");
    return c;
  };
  const fingerprint = (c: Controller) => /CA fingerprint (SHA256:[0-9A-F:]+)/.exec(c.proc.stderr())?.[1];

  /** The operator API of one replica, with the admin token. */
  async function api<T = any>(c: Controller, method: "GET" | "POST", path: string, body?: unknown): Promise<{ status: number; json: T }> {
    const agent = new WireClient(c.url, caPem);
    try {
      const r = await agent.send(method, path, {
        body: body === undefined ? undefined : JSON.stringify(body), headers: { authorization: `Bearer ${admin}` },
      });
      return { status: r.status, json: r.json as T };
    } finally {
      await agent.close();
    }
  }

  const token = (extra: string[] = []) => {
    const r = tether(["token", "create", ...storeArgs(), ...extra]);
    if (r.status !== 0) throw new Error(`token create failed: ${r.stderr}`);
    return r.stdout.trim();
  };

  async function submit(c: Controller, argv: string[]): Promise<string> {
    const r = await api<{ id: string }>(c, "POST", "/api/v1/tasks", { kind: "command", payload: { argv } });
    expect(r.status).toBe(201);
    return r.json.id;
  }

  async function waitTasks(c: () => Controller, ids: string[], timeoutMs: number): Promise<TaskView[]> {
    const end = Date.now() + timeoutMs;
    for (;;) {
      const r = await api<{ tasks: TaskView[] }>(c(), "GET", "/api/v1/tasks?limit=1000");
      const views = ids.map((id) => r.json.tasks?.find((t) => t.id === id));
      if (views.every((v) => v && ["succeeded", "failed", "cancelled"].includes(v.status))) return views as TaskView[];
      if (Date.now() > end) throw new Error(`tasks unfinished: ${views.filter((v) => v?.status !== "succeeded").length} of ${ids.length}`);
      await sleep(250);
    }
  }

  /** Each task N appends "N" to `file`: how often each one ran. */
  function runsPerTask(file: string): Map<string, number> {
    const runs = new Map<string, number>();
    for (const line of readFileSync(file, "utf8").split("\n").filter(Boolean)) runs.set(line, (runs.get(line) ?? 0) + 1);
    return runs;
  }

  const registrations = (p: Proc) => (p.stderr().match(/"event":"enrolled"/g) ?? []).length;

  beforeAll(async () => {
    db = await freshDatabase();
    kek = join(tempDir(), "kek", "tether.kek");
    a = await replica();
    b = await replica();
    caPem = readFileSync(a.caFile, "utf8");
    const r = tether(["admin", "bootstrap", ...storeArgs()]);
    if (r.status !== 0) throw new Error(`admin bootstrap failed: ${r.stderr}`);
    admin = r.stdout.trim();
  }, 60_000);

  afterAll(async () => {
    for (const c of clients) await c.close();
    await killAll();
    await db?.drop();
  });

  it("the replicas share one CA; the first created the KEK file (0600)", async () => {
    expect(fingerprint(a)).toMatch(/^SHA256:/);
    expect(fingerprint(b)).toBe(fingerprint(a));
    expect(readFileSync(b.caFile, "utf8")).toBe(caPem);
    const { statSync } = await import("node:fs");
    expect(statSync(kek).mode & 0o777).toBe(0o600);
    const ca = await api(b, "GET", "/api/v1/ca");
    expect(ca.json.cas.map((c: { state: string }) => c.state)).toEqual(["active"]);
  });

  it("a replica with a wrong KEK, or none, refuses to start and creates nothing (never a second CA)", async () => {
    const { randomBytes } = await import("node:crypto");
    const wrong = join(tempDir(), "wrong.kek");
    writeFileSync(wrong, randomBytes(32).toString("base64") + "\n", { mode: 0o600 });
    const missing = join(tempDir(), "missing", "tether.kek");
    for (const [file, message] of [[wrong, /cannot open the keys stored in the database/], [missing, /already holds keys: copy the KEK file/]] as const) {
      const r = tether(["controller", "start", "--data-dir", join(tempDir(), "data"), "--listen", "127.0.0.1:0", "--store", db.url, "--kek-file", file], 30_000);
      expect(r.status, r.stderr).not.toBe(0);
      expect(r.stderr).toMatch(message);
    }
    const { existsSync } = await import("node:fs");
    expect(existsSync(missing)).toBe(false);
    expect((await api(a, "GET", "/api/v1/ca")).json.cas).toHaveLength(1);
  }, 60_000);

  it("operator commands act on the shared store with --store and --kek-file; `controller migrate` finds it up to date", () => {
    const list = tether(["executors", "list", ...storeArgs(), "--json"]);
    expect(list.status, list.stderr).toBe(0);
    expect(Array.isArray(JSON.parse(list.stdout))).toBe(true);
    const migrate = tether(["controller", "migrate", "--store", db.url, "--json"]);
    expect(migrate.status, migrate.stderr).toBe(0);
    expect(JSON.parse(migrate.stdout).applied).toEqual([]);
    const noKek = tether(["executors", "list", "--store", db.url]);
    expect(noKek.status).toBe(2);
    expect(noKek.stderr).toMatch(/--kek-file is required/);
  });

  let enrolled: Enrolled;
  it("a nonce accepted by replica A is refused by B (409 NONCE_REPLAY)", async () => {
    enrolled = await register(a.url, caPem, token(), { name: "wire-exec" });
    clients.push(enrolled.client);
    const onB = new WireClient(b.url, caPem, { certPem: enrolled.certPem, keyPem: enrolled.keyPem });
    clients.push(onB);
    const nonce = "replica-nonce-0001-abcdefgh";
    const first = await executorCall(enrolled, "POST", `/v1/executors/${enrolled.id}/heartbeat`, HEARTBEAT, { nonce });
    expect(first.status).toBe(200);
    const replay = await executorCall(enrolled, "POST", `/v1/executors/${enrolled.id}/heartbeat`, HEARTBEAT, { nonce, client: onB });
    expect([replay.status, replay.json?.error?.code]).toEqual([409, "NONCE_REPLAY"]);
    // B otherwise accepts the executor: a fresh nonce passes.
    expect((await executorCall(enrolled, "POST", `/v1/executors/${enrolled.id}/heartbeat`, HEARTBEAT, { client: onB })).status).toBe(200);
  });

  it("a single-use token raced on A and B registers exactly one executor", async () => {
    const before = (await api(a, "GET", "/api/v1/executors")).json.executors.length;
    const t = token(["--uses", "1"]);
    const results = await Promise.allSettled([a, b, a, b, a, b].map((c, i) => register(c.url, caPem, t, { name: `race-${i}` })));
    const won = results.filter((r) => r.status === "fulfilled");
    expect(won).toHaveLength(1);
    for (const r of results) {
      if (r.status === "rejected") expect(String(r.reason)).toMatch(/register failed: 401 .*ENROLLMENT_DENIED/);
      else clients.push(r.value.client);
    }
    expect((await api(b, "GET", "/api/v1/executors")).json.executors.length).toBe(before + 1);
  });

  it("three daemons given both URLs: a long poll on A is woken by a submission on B; 200 tasks submitted alternately run exactly once", async () => {
    for (let i = 0; i < 3; i++) {
      daemons.push(start([
        "executor", "run", "--controller", a.url, "--controller", b.url, "--ca-file", a.caFile, "--state-dir", join(tempDir(), "state"),
        "--token", token(), "--name", `daemon-${i}`, "--allow-command", "sh", "--capacity", "4", "--log-level", "debug",
      ]));
    }
    for (const d of daemons) await d.waitFor(/"event":"enrolled"/, "the daemon to register", 20_000);
    await sleep(1500); // every daemon is in its long poll (on A, its first URL)

    const probe = join(work, "probe.log");
    writeFileSync(probe, "");
    const t0 = Date.now();
    const id = await submit(b, ["sh", "-c", `echo probe >> ${probe}`]);
    let pickedUpMs = -1;
    for (;;) {
      const v = (await api<TaskView>(b, "GET", `/api/v1/tasks/${id}`)).json;
      if (v.status !== "queued") {
        pickedUpMs = Date.now() - t0;
        break;
      }
      if (Date.now() - t0 > 5000) break;
      await sleep(20);
    }
    console.log(`[replicas] a task submitted on B left the queue after ${pickedUpMs} ms (daemons long-polling on A)`);
    expect(pickedUpMs).toBeGreaterThanOrEqual(0);
    expect(pickedUpMs).toBeLessThan(1000);

    const out = join(work, "batch1.log");
    writeFileSync(out, "");
    const ids: string[] = [];
    for (let n = 0; n < 200; n++) ids.push(await submit(n % 2 ? b : a, ["sh", "-c", `echo ${n} >> ${out}`]));
    const views = await waitTasks(() => a, ids, 90_000);
    expect(views.filter((v) => v.status !== "succeeded")).toEqual([]);
    const runs = runsPerTask(out);
    expect(runs.size).toBe(200);
    expect([...runs.values()].every((n) => n === 1)).toBe(true);
  }, 150_000);

  it("`tether executors revoke` through B is enforced by A within 1 s", async () => {
    const revoke = tether(["executors", "revoke", enrolled.id, "--url", b.url, "--token", admin, "--ca-file", b.caFile]);
    expect(revoke.status, revoke.stderr).toBe(0);
    const t0 = Date.now();
    let refused: { status: number; json: any } | undefined;
    while (Date.now() - t0 < 5000) {
      const r = await executorCall(enrolled, "POST", `/v1/executors/${enrolled.id}/heartbeat`, HEARTBEAT);
      if (r.status !== 200) {
        refused = r;
        break;
      }
      await sleep(10);
    }
    const ms = Date.now() - t0;
    console.log(`[replicas] revocation through B enforced by A after ${ms} ms`);
    expect([refused?.status, refused?.json?.error?.code]).toEqual([401, "CERT_REVOKED"]);
    expect(ms).toBeLessThan(1000);
  });

  it("kill -9 of the replica the daemons use, mid-batch: they continue on B, no re-enrollment, every task runs exactly once, A's duties move within 30 s", async () => {
    const out = join(work, "batch2.log");
    writeFileSync(out, "");
    const ids: string[] = [];
    for (let n = 0; n < 60; n++) ids.push(await submit(b, ["sh", "-c", `sleep 0.2; echo ${n} >> ${out}`]));
    const deadline = Date.now() + 30_000;
    while (runsPerTask(out).size < 15 && Date.now() < deadline) await sleep(50);
    const regsBefore = daemons.map(registrations);
    const bLogBefore = b.proc.stderr().length;
    const killedAt = Date.now();
    await a.proc.kill("SIGKILL");

    const views = await waitTasks(() => b, ids, 120_000);
    expect(views.filter((v) => v.status !== "succeeded")).toEqual([]);
    const runs = runsPerTask(out);
    expect(runs.size).toBe(60);
    expect([...runs.entries()].filter(([, n]) => n !== 1)).toEqual([]);
    expect(daemons.map(registrations)).toEqual(regsBefore);

    // B takes every duty A held (A started first and held them all).
    const dutyDeadline = killedAt + 30_000;
    let line: string | undefined;
    while (Date.now() < dutyDeadline) {
      line = b.proc.stderr().slice(bLogBefore).split("\n").find((l) => /run-once duties changed/.test(l) && /"reclaim"/.test(l) && /"ca-schedule"/.test(l));
      if (line) break;
      await sleep(200);
    }
    expect(line, "B's log names the duties it took").toBeDefined();
    const tookAt = JSON.parse(line!).time as number;
    console.log(`[replicas] B took A's duties ${tookAt - killedAt} ms after the kill -9`);
    expect(tookAt - killedAt).toBeLessThan(30_000);
  }, 180_000);

  it("restarting A rejoins without a second CA", async () => {
    a = await replica(a.dataDir);
    expect(fingerprint(a)).toBe(fingerprint(b));
    const ca = await api(a, "GET", "/api/v1/ca");
    expect(ca.json.cas.map((c: { state: string }) => c.state)).toEqual(["active"]);
  }, 60_000);

  it("a database that refuses every connection: 503 UNAVAILABLE (never 401), then recovery with nothing lost", async () => {
    const dbName = new URL(db.url).pathname.slice(1);
    const adminDb = new pg.Client({ connectionString: postgresAdminUrl() });
    await adminDb.connect();
    const out = join(work, "batch3.log");
    writeFileSync(out, "");
    const ids: string[] = [];
    for (let n = 0; n < 20; n++) ids.push(await submit(n % 2 ? b : a, ["sh", "-c", `echo ${n} >> ${out}`]));
    const wire = await register(b.url, caPem, token(), { name: "outage-exec" });
    clients.push(wire.client);
    try {
      await adminDb.query(`ALTER DATABASE "${dbName}" ALLOW_CONNECTIONS false`);
      await adminDb.query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()", [dbName]);
      const seen = new Set<string>();
      const until = Date.now() + 4000;
      while (Date.now() < until) {
        const ready = await request(`${a.url}/readyz`, { dispatcher: clients[0]!.agent }).catch(() => undefined);
        if (ready) seen.add(`readyz:${ready.statusCode}`), await ready.body.dump();
        const hb = await executorCall(wire, "POST", `/v1/executors/${wire.id}/heartbeat`, HEARTBEAT);
        seen.add(`heartbeat:${hb.status}:${hb.json?.error?.code ?? ""}`);
        await sleep(200);
      }
      console.log(`[replicas] during the outage: ${[...seen].join(", ")}`);
      expect(seen).toContain("readyz:503");
      expect(seen).toContain("heartbeat:503:UNAVAILABLE");
      for (const s of seen) expect(s).not.toMatch(/^heartbeat:(401|403)/);
    } finally {
      await adminDb.query(`ALTER DATABASE "${dbName}" ALLOW_CONNECTIONS true`);
      await adminDb.end();
    }
    const back = Date.now();
    for (;;) {
      const r = await executorCall(wire, "POST", `/v1/executors/${wire.id}/heartbeat`, HEARTBEAT);
      if (r.status === 200) break;
      if (Date.now() - back > 20_000) throw new Error(`no recovery: ${r.status} ${r.text}`);
      await sleep(200);
    }
    console.log(`[replicas] heartbeats answered again ${Date.now() - back} ms after the database came back`);
    const views = await waitTasks(() => b, ids, 60_000);
    expect(views.filter((v) => v.status !== "succeeded")).toEqual([]);
    const runs = runsPerTask(out);
    expect(runs.size).toBe(20);
    expect([...runs.values()].every((n) => n === 1)).toBe(true);
  }, 120_000);
});
