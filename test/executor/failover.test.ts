/**
 * Executor failover across controller replicas (PROTOCOL §6, §8): a daemon given
 * several `--controller` URLs stays on one, moves to the next on connection errors,
 * timeouts and 503 with jittered backoff, never re-enrolls for it, and delivers each
 * lease result exactly once whichever replica answers. Real TLS against a scripted
 * controller whose replicas share one state (leases-controller.ts + addReplica), the
 * daemons in-process and, for the command line, as real processes.
 */
import { afterEach, beforeAll, describe, expect, it } from "vitest";
import { writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { join } from "node:path";
import { Backoff, fullJitterDelay } from "../../executor/backoff.ts";
import { ControllerEndpoints } from "../../executor/endpoints.ts";
import { ExitCode } from "../../executor/exit-codes.ts";
import { LeaseWorkSource } from "../../executor/leases.ts";
import type { TaskHandler, TaskInput, TaskOutcome } from "../../executor/handlers/types.ts";
import { CHAIN_ERROR_CODES } from "../../executor/reactions.ts";
import { readStatus } from "../../executor/status.ts";
import { NoWork, type WorkSource } from "../../executor/work.ts";
import { createTestCa, type TestCa } from "../support/ca.ts";
import { daemonRuns, events, testDaemonOptions, untilEvent, type DaemonRun, type LogLine } from "../support/daemon.ts";
import { until } from "../support/daemon-wait.ts";
import { spawnTether, tether, type Spawned } from "../support/process.ts";
import { tempDir } from "../support/temp-dir.ts";
import { addReplica, wireError, type Replica } from "./fake-controller.ts";
import { startLeaseController, type LeaseController } from "./leases-controller.ts";

let ca: TestCa;
let stranger: TestCa;
let server: { certPem: string; keyPem: string };
beforeAll(async () => {
  ca = await createTestCa();
  stranger = await createTestCa(); // signs certificates no executor here trusts
  server = await ca.serverCert();
});

const daemons = daemonRuns();
const spawned: Spawned[] = [];
afterEach(async () => {
  for (const p of spawned.splice(0)) await p.stop("SIGKILL");
});

/** Runs `{ms}` tasks: sleeps, then returns its task id. */
class Sleeper implements TaskHandler {
  readonly kind = "test";
  async run(task: TaskInput, signal: AbortSignal): Promise<TaskOutcome> {
    const ms = (task.payload as { ms?: number })?.ms ?? 0;
    await new Promise<void>((r) => {
      const t = setTimeout(r, ms);
      signal.addEventListener("abort", () => (clearTimeout(t), r()), { once: true });
    });
    return { result: { task: task.taskId } };
  }
}

interface Seen {
  via: string;
  route: string;
  at: number;
  status: number;
}

/**
 * Two replicas of one scripted controller: `a` (its own listener) and `b`. `down` lists
 * replicas answering 503; every request is noted with where it went and when. A long poll
 * whose replica died before it answered gives its leases back at once (a real controller
 * does at the lease expiry).
 */
async function replicated() {
  const c: LeaseController = daemons.closeAfterEach(await startLeaseController(ca, server));
  const b: Replica = await addReplica(c.fake, { ...server, caPem: ca.certPem });
  daemons.closeAfterEach({ close: () => b.kill() });
  const a: Replica = { url: c.fake.url, serve: (t) => c.fake.serve(t), kill: () => c.fake.close() };
  const down = new Set<string>();
  const seen: Seen[] = [];
  const inner = c.fake.handler;
  c.fake.handler = async (r) => {
    const route = r.url.split("?")[0]!.split("/").at(-1)!;
    const reply = down.has(r.via) ? wireError(503, "UNAVAILABLE", {}, { "retry-after": "30" }) : await inner(r);
    if (r.gone()) {
      for (const l of ((reply.body as { leases?: { lease_id: string }[] })?.leases ?? [])) {
        const lease = c.leases.get(l.lease_id)!;
        lease.state = "reclaimed";
        c.queue.unshift(lease.task);
      }
    }
    seen.push({ via: r.via, route, at: Date.now(), status: reply.status });
    return reply;
  };
  return { c, a, b, down, seen };
}

/** A URL nothing listens on (connection refused). */
async function deadUrl(): Promise<string> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, "127.0.0.1", r));
  const port = (s.address() as { port: number }).port;
  await new Promise<void>((r) => s.close(() => r()));
  return `https://127.0.0.1:${port}`;
}

const BACKOFF = { baseMs: 50, capMs: 200, factor: 2 };

function start<W extends WorkSource>(urls: string[], work: W, o: { stateDir?: string } = {}): DaemonRun<W> {
  const opts = testDaemonOptions({
    controllerUrl: urls[0]!, replicaUrls: urls.slice(1), caFilePem: ca.certPem, capacity: 2, allowedCommands: [], backoff: BACKOFF,
    ...(o.stateDir ? { stateDir: o.stateDir } : {}),
  });
  return daemons.start(opts, work);
}

const leaseWork = () => new LeaseWorkSource({ handlers: [new Sleeper()], waitS: 1, backoff: { baseMs: 100, capMs: 400, factor: 2 }, minEmptyPollMs: 200 });
const logged = (run: { logs: LogLine[] }, event: string) => run.logs.filter((l) => l.event === event);
const routesVia = (seen: Seen[], url: string) => seen.filter((s) => s.via === url).map((s) => s.route);
/** Neither a new identity nor a new epoch: what losing a replica must never cost. */
function expectNoReenrollment(c: LeaseController, seen: Seen[], run: { logs: LogLine[] }) {
  expect(seen.filter((s) => s.route === "register")).toHaveLength(1);
  expect(seen.filter((s) => s.route === "reregister")).toHaveLength(0);
  expect(c.epoch).toBe(1);
  expect(events(run)).not.toContain("reenrolling");
  expect(logged(run, "enrolled")).toHaveLength(1);
}

describe("ControllerEndpoints and the failover delay", () => {
  const refused = { code: "ECONNREFUSED", message: "refused" };
  it("stays on a URL while it answers; moves once per dead replica, preferring URLs that have not failed; cycles when all have", () => {
    const e = new ControllerEndpoints(["https://a", "https://b", "https://c"]);
    expect(e.current).toBe("https://a");
    e.answered("https://a", 200);
    expect(e.current).toBe("https://a");
    e.failed("https://a", refused, 1);
    expect(e.current).toBe("https://b");
    e.failed("https://a", refused, 2); // a request that was in flight on a when it died: no second move
    expect(e.current).toBe("https://b");
    e.failed("https://b", { code: "UNAVAILABLE", message: "503", unavailable: true }, 3);
    expect(e.current).toBe("https://c"); // not back to a, which failed
    e.answered("https://a", 200); // a is back, but c is used until it fails
    e.failed("https://c", refused, 4);
    expect(e.current).toBe("https://a");
    e.failed("https://a", refused, 5);
    e.answered("https://b", 503); // a 503 is no sign of health
    expect(e.isFailing("https://b")).toBe(true);
    expect(e.current).toBe("https://b"); // all failing: the next one in order
  });

  it("trust is lost only when every URL fails verification; any verified answer clears a URL", () => {
    const e = new ControllerEndpoints(["https://a", "https://b"]);
    const untrusted = { code: "UNABLE_TO_VERIFY_LEAF_SIGNATURE", message: "x", untrusted: true };
    e.failed("https://a", untrusted, 10);
    expect(e.untrustedEverywhere()).toBeUndefined();
    e.failed("https://b", refused, 11);
    expect(e.untrustedEverywhere()).toBeUndefined();
    e.failed("https://b", untrusted, 12);
    e.failed("https://a", untrusted, 13);
    expect(e.untrustedEverywhere()).toEqual({ attempts: 3, sinceMs: 12 });
    e.answered("https://b", 503);
    expect(e.untrustedEverywhere()).toBeUndefined();
    e.answered("https://a", 200, false); // an unverified download proves nothing about trust
    expect(e.isFailing("https://a")).toBe(true);
  });

  it("full jitter spreads over [0, step) of the same capped steps; it counts as an attempt", () => {
    const opts = { baseMs: 500, capMs: 30_000, factor: 2 };
    expect(fullJitterDelay(0, opts, () => 0)).toBe(0);
    expect(fullJitterDelay(0, opts, () => 0.999999)).toBe(499);
    expect(fullJitterDelay(3, opts, () => 0.5)).toBe(2000);
    expect(fullJitterDelay(1e6, opts, () => 0.999999)).toBeLessThan(30_000);
    const b = new Backoff(opts, () => 0.5);
    expect([b.nextFull(), b.next(), b.attempts]).toEqual([250, 750, 2]);
  });
});

describe("several --controller URLs", () => {
  it("the first replica refuses connections: enrolls and heartbeats on the second, says so once, and starts there next time", async () => {
    const { c, a, seen } = await replicated();
    const dead = await deadUrl();
    const run = start([dead, a.url], new NoWork());
    await untilEvent(run, "ready");
    await until(() => c.heartbeats.length >= 3, "three heartbeats");
    expect(seen.every((s) => s.via === a.url)).toBe(true);
    expect(routesVia(seen, a.url).slice(0, 2)).toEqual(["register", "heartbeat"]);
    const switched = logged(run, "controller.switched");
    expect(switched).toEqual([expect.objectContaining({ level: "info", from: dead, to: a.url, reason: "unreachable", code: "ECONNREFUSED" })]);
    expect(switched[0]!.msg).toBe(`switching controller from ${dead} to ${a.url}: it cannot be reached (ECONNREFUSED)`);
    expect(JSON.stringify(run.logs)).not.toContain("tet_enr_test");
    // Where it enrolled and where it talks now: in the state dir, for `tether executor status`.
    expect(readStatus(run.stateDir).status).toMatchObject({ controller: a.url, last_contact_controller: a.url });
    expect(await daemons.stop(run, "SIGTERM")).toBe(ExitCode.OK);

    const again = start([dead, a.url], new NoWork(), { stateDir: run.stateDir });
    await untilEvent(again, "ready");
    expect(logged(again, "controller.resumed")).toMatchObject([{ controller: a.url }]);
    expect(events(again)).not.toContain("controller.switched");
    expect(events(again)).not.toContain("retrying");
  });

  it("a replica answering 503 makes it move at once (its Retry-After is for that replica), and stay on the one that answers", async () => {
    const { c, a, b, down, seen } = await replicated();
    const run = start([a.url, b.url], new NoWork());
    await until(() => c.heartbeats.length >= 2, "heartbeats on a");
    down.add(a.url);
    const t0 = Date.now();
    await until(() => routesVia(seen, b.url).includes("heartbeat"), "a heartbeat on b");
    const firstOnB = seen.find((s) => s.via === b.url)!.at;
    expect(firstOnB - t0).toBeLessThan(1000); // a heartbeat interval (0.3 s) and a jittered step, not Retry-After: 30
    expect(logged(run, "controller.switched")).toEqual([expect.objectContaining({ from: a.url, to: b.url, reason: "unavailable", code: "UNAVAILABLE" })]);
    // No round-robin while healthy: a answering again does not bring it back.
    down.delete(a.url);
    const n = seen.length;
    await until(() => seen.slice(n).filter((s) => s.route === "heartbeat").length >= 4, "four more heartbeats");
    expect(new Set(seen.slice(n).map((s) => s.via))).toEqual(new Set([b.url]));
    expectNoReenrollment(c, seen, run);
  });

  it("the replica in use is killed mid-batch: the daemon continues on the other within its backoff cap, no re-enrollment, every task completes exactly once", async () => {
    const { c, a, b, seen } = await replicated();
    c.submit("test", { ms: 150 }, 16);
    const run = start([a.url, b.url], leaseWork());
    await until(() => c.completes.length >= 4, "four tasks done on a");
    await a.kill();
    const killedAt = Date.now();
    await until(() => c.completes.length === 16, "every task completed", 20_000);
    const back = seen.find((s) => s.via === b.url && s.route === "heartbeat" && s.status === 200)!.at - killedAt;
    console.log(`failover: first heartbeat on the other replica ${back} ms after the kill`);
    // The next heartbeat (0.3 s ± 10 %) fails, then one jittered step (≤ the 200 ms cap) and a handshake.
    expect(back).toBeLessThan(0.33 * 1000 + BACKOFF.capMs + 500);
    const tasks = c.completes.map((x) => x.result.task).sort();
    expect(tasks).toEqual([...new Set(tasks)]);
    expect(tasks).toHaveLength(16);
    expect(c.fails).toEqual([]);
    expect(logged(run, "controller.switched")).toEqual([expect.objectContaining({ from: a.url, to: b.url, reason: "unreachable" })]);
    expect(seen.filter((s) => s.via === b.url && s.route === "complete").length).toBeGreaterThan(0);
    expectNoReenrollment(c, seen, run);
    expect(run.daemon.lastExit).toBeUndefined();
  });

  it("a result whose delivery dies with its replica before the replica recorded it is delivered to the other, once", async () => {
    const { c, a, b, seen } = await replicated();
    const inner = c.fake.handler;
    c.fake.handler = async (r) => {
      if (r.via === a.url && r.url.endsWith("/complete")) {
        void a.kill(); // dies with the request in hand, before recording it
        return { status: 0, destroy: true };
      }
      return inner(r);
    };
    c.submit("test", { ms: 50 });
    const run = start([a.url, b.url], leaseWork());
    await until(() => c.completes.length === 1, "the completion");
    await untilEvent(run, "lease.completed");
    expect(routesVia(seen, b.url)).toContain("complete");
    expect(c.stale).toEqual([]);
    expect(events(run)).not.toContain("lease.report_failed");
    await new Promise((r) => setTimeout(r, 500));
    expect(c.completes).toHaveLength(1);
    expectNoReenrollment(c, seen, run);
  });

  it("a result the dying replica recorded before it could answer is not completed twice: the retry to the other meets the fence (STALE_LEASE)", async () => {
    const { c, a, b, seen } = await replicated();
    const inner = c.fake.handler;
    c.fake.handler = async (r) => {
      if (r.via === a.url && r.url.endsWith("/complete")) {
        await inner(r); // recorded in the shared state …
        void a.kill(); // … and the replica dies before its answer leaves
        return { status: 0, destroy: true };
      }
      return inner(r);
    };
    c.submit("test", { ms: 50 });
    const run = start([a.url, b.url], leaseWork());
    await untilEvent(run, "lease.stale");
    expect(c.completes).toHaveLength(1);
    expect(c.stale).toEqual([c.completes[0]!.lease_id]);
    expect(routesVia(seen, b.url)).toContain("complete");
    expect(logged(run, "lease.stale")).toEqual([expect.objectContaining({ level: "info", after_retry: true })]);
    expect(events(run)).not.toContain("lease.report_failed");
    expectNoReenrollment(c, seen, run);
  });
});

describe("a replica whose certificate does not verify", () => {
  it("is failed over loudly (no token sent to it); while another URL is not untrusted the daemon keeps going", async () => {
    const { c, a, b, down, seen } = await replicated();
    a.serve(await stranger.serverCert());
    const run = start([a.url, b.url], new NoWork());
    await untilEvent(run, "ready");
    expect(routesVia(seen, a.url)).toEqual([]); // no request got through a handshake with it
    expect(logged(run, "controller.switched")[0]).toMatchObject({ level: "error", from: a.url, to: b.url, reason: "untrusted" });
    expect(logged(run, "controller.switched")[0]!.msg).toMatch(/does not verify with the CAs this executor trusts/);
    // b answers 503 for a while: the daemon cycles between a (untrusted) and b (unavailable), and does not give up.
    const restored = logged(run, "contact.restored").length;
    down.add(b.url);
    await until(() => logged(run, "retrying").filter((l) => CHAIN_ERROR_CODES.has(l.code)).length >= 8, "eight chain failures at a", 15_000);
    expect(run.daemon.lastExit).toBeUndefined();
    down.delete(b.url);
    await until(() => logged(run, "contact.restored").length > restored, "contact restored");
    const n = c.heartbeats.length;
    await until(() => c.heartbeats.length > n, "heartbeats again");
    expect(run.daemon.lastExit).toBeUndefined();
  });

  it("every URL untrusted: exit 4 naming all of them, as with one controller", async () => {
    const { a, b } = await replicated();
    const first = start([a.url, b.url], new NoWork());
    await untilEvent(first, "ready");
    expect(await daemons.stop(first, "SIGTERM")).toBe(ExitCode.OK);
    const wrong = await stranger.serverCert();
    a.serve(wrong);
    b.serve(wrong);
    const again = start([a.url, b.url], new NoWork(), { stateDir: first.stateDir });
    expect(await again.done).toBe(ExitCode.REENROLL_REQUIRED);
    expect(again.daemon.lastExit?.event).toBe("trust.lost");
    expect(again.daemon.lastExit?.message).toContain(`6 times in a row`);
    expect(again.daemon.lastExit?.message).toContain(`at every one of its 2 --controller URLs (${a.url}, ${b.url})`);
  });
});

describe("tether executor run --controller URL --controller URL …", () => {
  it("a real daemon process: skips a dead URL, survives the kill of its replica mid-batch, every task once, status names the replica in use", async () => {
    const { c, a, b, seen } = await replicated();
    const dead = await deadUrl();
    const stateDir = join(tempDir(), "state");
    const caFile = join(tempDir(), "ca.pem");
    writeFileSync(caFile, ca.certPem);
    const help = tether(["executor", "run", "--help"]).stdout;
    expect(help).toMatch(/--controller URL \(repeatable\)/);
    const secret = tether(["executor", "run", "--controller", "https://u:p@h:1", "--state-dir", stateDir, "--ca-file", caFile]);
    expect(secret.status).toBe(2);
    expect(secret.stderr).toMatch(/must not carry a user name or password/);

    for (let i = 0; i < 12; i++) c.submit("command", { argv: ["sh", "-c", "sleep 0.1"] });
    const p = spawnTether([
      "executor", "run", "--controller", dead, "--controller", a.url, "--controller", b.url, "--ca-file", caFile, "--state-dir", stateDir,
      "--token", "tet_enr_cli", "--allow-command", "sh", "--capacity", "3", "--log-level", "info",
    ]);
    spawned.push(p);
    await p.waitFor(/"event":"ready"/);
    await until(() => c.completes.length >= 3, "three tasks done on a", 15_000);
    await a.kill();
    await until(() => c.completes.length === 12, "every task completed", 30_000);
    const tasks = c.completes.map((x) => x.lease_id).map((id) => c.leases.get(id)!.task.task_id);
    expect(new Set(tasks).size).toBe(12);
    expect(seen.filter((s) => s.route === "register")).toHaveLength(1);
    expect(seen.filter((s) => s.route === "reregister")).toHaveLength(0);
    const switches = p.stderr().split("\n").filter((l) => l.includes('"event":"controller.switched"')).map((l) => JSON.parse(l));
    expect(switches.map((s) => [s.from, s.to])).toEqual([[dead, a.url], [a.url, b.url]]);
    await until(() => readStatus(stateDir).status.last_contact_controller === b.url, "the status naming b");
    expect(await p.stop()).toBe(0);
    const status = tether(["executor", "status", "--state-dir", stateDir]);
    expect(status.status).toBe(0);
    expect(status.stdout).toMatch(new RegExp(`last_controller\\s+${b.url.replace(/[.]/g, "\\.")}`));
  });
});
