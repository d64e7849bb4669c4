/**
 * The rotation phase, generator side: heartbeats on the latency phase's open-loop
 * timetable while the orchestrator (bench/rotation.ts) rotates the JWT key and the CA,
 * and every simulated executor does what the daemon does (PROTOCOL §7):
 *
 * - reports `trust_bundle_version` in every heartbeat; when an answer names a newer one,
 *   fetches `GET /v1/ca/bundle.pem` on its connection and trusts it for new connections;
 * - follows `cert_renew_after`: renews with a CSR for a fresh key and switches certificate,
 *   key, HMAC key and JWT together — a new connection presenting the new certificate;
 * - renews its JWT from `jwt_renew_after` on (bench/sim.ts `call`).
 *
 * Every non-2xx answer and every transport failure of any of these requests is counted.
 */
import { X509Certificate } from "node:crypto";
import { newKeyAndCsr } from "../executor/csr.ts";
import { BUNDLE_VERSION_HEADER, paths } from "../shared/protocol.ts";
import type { HeartbeatResponse, RenewResponse } from "../shared/wire/executor.ts";
import { buildRequest, errorCode } from "./http1.ts";
import {
  adoptBundle, call, Codes, connection, counters, executors, failureCode, HOST_HEADER, init, keepalive, REQUEST_TIMEOUT_MS, setJwt,
  signedRequest, sleep, hooks, type Executor,
} from "./sim.ts";
import { Timeline } from "./report-series.ts";

interface Run {
  stopped: boolean;
  /** The bundle version that holds the new CA, and the new CA (set once it is prepared). */
  expect: { version: number; ca: X509Certificate } | null;
  failures: Codes;
  /** Outcomes over time for the report: "ok:<request>" and "failed:<code>", when the answer (or failure) came. */
  timeline: Timeline;
  sent: { heartbeats: number; bundles: number; certRenewals: number };
  jwtRenewals0: number;
  latencies: number[];
  /** [epoch ms scheduled, latency ms] of the answers slower than 50 ms: when did stalls happen? */
  slow: [number, number][];
  outstanding: number;
  live: Executor[];
  timer: NodeJS.Timeout | null;
  sweep: NodeJS.Timeout | null;
}

let run: Run | null = null;
const now = () => performance.timeOrigin + performance.now();

function issuedBy(certPem: string, ca: X509Certificate): boolean {
  const c = new X509Certificate(certPem);
  return c.checkIssued(ca) && c.verify(ca.publicKey);
}

/** What the executor does next on its connection, when it is free: bundle, certificate, then queued heartbeats. */
function pump(r: Run, ex: Executor): void {
  const st = ex.rot;
  if (ex.busy || !st || r.stopped) return;
  if (st.fetchBundle) void act(r, ex, fetchBundle);
  else if (Date.now() >= st.certRenewAt) void act(r, ex, renewCertificate);
  else {
    const scheduled = ex.queue.shift();
    if (scheduled !== undefined) void act(r, ex, (r2, e) => heartbeat(r2, e, scheduled));
  }
}

function fail(r: Run, code: string): void {
  r.failures.add(code);
  r.timeline.add(`failed:${code}`);
}

async function act(r: Run, ex: Executor, fn: (r: Run, ex: Executor) => Promise<void>): Promise<void> {
  ex.busy = true;
  r.outstanding++;
  try {
    await fn(r, ex);
  } catch (e) {
    fail(r, failureCode(e));
    ex.conn?.close();
  } finally {
    ex.busy = false;
    r.outstanding--;
    pump(r, ex);
  }
}

async function heartbeat(r: Run, ex: Executor, scheduled: number): Promise<void> {
  const st = ex.rot!;
  r.sent.heartbeats++;
  const DBG0 = now(); const wasOpen = !!ex.conn?.isOpen; const jwtDue = Date.now() >= ex.jwtRenewAt;
  const { res, version } = await call(ex, paths.heartbeat(ex.id));
  const DBG1 = now();
  if (process.env.BENCH_DEBUG && DBG1 - DBG0 > 80) console.error(`DBG w${init.index} ex${ex.idx} sent ${Math.round(DBG0)} service ${Math.round(DBG1 - DBG0)} ms open ${wasOpen} jwtDue ${jwtDue} queue ${ex.queue.length} sched-lag ${Math.round(DBG0 - scheduled)}`);
  if (res.status !== 200) {
    fail(r, errorCode(res));
    return;
  }
  const latency = now() - scheduled;
  r.latencies.push(latency);
  r.timeline.add("ok:heartbeat");
  if (latency > 50 && r.slow.length < 5000) r.slow.push([Math.round(scheduled), Math.round(latency)]);
  const hb = JSON.parse(res.body) as HeartbeatResponse;
  st.reported = Math.max(st.reported, version);
  if (hb.trust_bundle_version > ex.bundle.version) st.fetchBundle = true;
  // The hints are for the certificate and the JWT this heartbeat was made with: still ours (busy).
  const certAt = Date.parse(hb.cert_renew_after);
  if (certAt < st.certRenewAt) st.certRenewAt = certAt;
  const jwtAt = Date.parse(hb.jwt_renew_after);
  if (Number.isFinite(jwtAt)) ex.jwtRenewAt = jwtAt;
  if (st.movedAt > 0) st.confirmed = true;
}

async function fetchBundle(r: Run, ex: Executor): Promise<void> {
  ex.rot!.fetchBundle = false; // a failure is retried after the next heartbeat's answer
  r.sent.bundles++;
  const { conn } = await connection(ex);
  const res = await conn.request(buildRequest("GET", paths.caBundle, HOST_HEADER, {}), REQUEST_TIMEOUT_MS);
  const version = Number(res.headers[BUNDLE_VERSION_HEADER]);
  if (res.status !== 200 || !Number.isSafeInteger(version) || !res.body.includes("BEGIN CERTIFICATE")) {
    fail(r, res.status !== 200 ? errorCode(res) : "BAD_BUNDLE");
    return;
  }
  adoptBundle(ex, version, res.body);
  r.timeline.add("ok:bundle");
}

/** Renew with a CSR for a fresh key; switch certificate, key, HMAC key and JWT together. */
async function renewCertificate(r: Run, ex: Executor): Promise<void> {
  const st = ex.rot!;
  st.certRenewAt = Infinity;
  // The key made up front (untimed); a second renewal in one run makes its key now.
  const next = ex.nextCsrPem ? { keyPem: ex.nextKeyPem, csrPem: ex.nextCsrPem } : await newKeyAndCsr("ed25519", `bench-${ex.idx}`);
  r.sent.certRenewals++;
  // Retried a second later unless it succeeds, as the daemon does (a lost answer included:
  // the certificate nobody used yet leaves the previous one free to renew again).
  st.certRenewAt = Date.now() + 1000;
  const { conn } = await connection(ex);
  const res = await conn.request(signedRequest(ex, paths.renew(ex.id), JSON.stringify({ csr_pem: next.csrPem })), REQUEST_TIMEOUT_MS);
  st.certRenewAt = Infinity;
  if (res.status !== 200) {
    fail(r, errorCode(res));
    st.certRenewAt = Date.now() + 1000; // the daemon retries, too
    return;
  }
  const renewed = JSON.parse(res.body) as RenewResponse;
  if (!renewed.certificate_pem || !renewed.hmac_key) {
    fail(r, "RENEW_WITHOUT_CERTIFICATE");
    return;
  }
  r.timeline.add("ok:certificate renewal");
  ex.keyPem = next.keyPem;
  ex.nextKeyPem = ex.nextCsrPem = "";
  ex.certPem = renewed.certificate_pem;
  ex.hmacKey = Buffer.from(renewed.hmac_key, "base64url");
  setJwt(ex, renewed.jwt, renewed.jwt_expires_at);
  adoptBundle(ex, renewed.trust_bundle_version, renewed.ca_bundle_pem);
  ex.ctx = null;
  // This connection presents the old certificate: the next request opens one with the new.
  conn.close();
  if (run?.expect && issuedBy(ex.certPem, run.expect.ca)) st.movedAt = Date.now();
}

export const rotationHandlers: Record<string, (args: any) => Promise<unknown>> = {
  /** Starts heartbeating at `rate`/s (this shard's share) over every executor, from `startAt` (epoch ms) until stopped. */
  async rotationStart(args: { rate: number; startAt: number }) {
    keepalive.paused++;
    for (let i = 0; i < 200 && executors.some((e) => e.busy); i++) await sleep(10);
    const live = executors.filter((e) => e.id);
    const r: Run = {
      stopped: false, expect: null, failures: new Codes(), sent: { heartbeats: 0, bundles: 0, certRenewals: 0 },
      jwtRenewals0: counters.jwtRenewals, latencies: [], slow: [], outstanding: 0, live, timer: null, sweep: null,
      timeline: new Timeline(),
    };
    run = r;
    // A failed JWT renewal is counted where it replaces the heartbeat; the successful ones here.
    hooks.onJwtRenewal = (status) => status === 200 && r.timeline.add("ok:jwt renewal");
    for (const ex of live) {
      ex.queue.length = 0;
      ex.rot = { fetchBundle: false, certRenewAt: Infinity, reported: 0, movedAt: 0, confirmed: false };
    }
    if (live.length === 0 || args.rate <= 0) return { executors: 0 };
    const interval = 1000 / args.rate;
    const t0 = args.startAt + (init.index / init.workers) * interval;
    let k = 0;
    const tick = () => {
      if (r.stopped) return;
      const t = now();
      while (t0 + k * interval <= t) {
        const ex = live[k % live.length]!;
        ex.queue.push(t0 + k * interval);
        k++;
        pump(r, ex);
      }
      r.timer = setTimeout(tick, Math.max(0, t0 + k * interval - now()));
    };
    r.timer = setTimeout(tick, Math.max(0, t0 - now()));
    // Certificate renewals fall due between heartbeats.
    r.sweep = setInterval(() => {
      const t = Date.now();
      for (const ex of live) if (!ex.busy && ex.rot!.certRenewAt <= t) pump(r, ex);
    }, 20);
    return { executors: live.length };
  },

  /** The CA prepared (in bundle `version`): adoption and the move to it are counted against it. */
  async rotationExpect(args: { version: number; caPem: string }) {
    if (run) run.expect = { version: args.version, ca: new X509Certificate(args.caPem) };
    return {};
  },

  async rotationStatus() {
    const r = run;
    if (!r) return { executors: 0, adopted: 0, moved: 0, confirmed: 0, lastMovedAt: 0, failed: 0 };
    let adopted = 0;
    let moved = 0;
    let confirmed = 0;
    let lastMovedAt = 0;
    for (const ex of r.live) {
      const st = ex.rot!;
      if (r.expect && st.reported >= r.expect.version) adopted++;
      if (st.movedAt > 0) moved++;
      if (st.confirmed) confirmed++;
      lastMovedAt = Math.max(lastMovedAt, st.movedAt);
    }
    return { executors: r.live.length, adopted, moved, confirmed, lastMovedAt, failed: r.failures.total };
  },

  /** Stops the timetable, lets requests in flight finish (≤ drainMs), and reports. */
  async rotationStop(args: { drainMs: number }) {
    const r = run;
    if (!r) throw new Error("rotationStop without rotationStart");
    r.stopped = true;
    if (r.timer) clearTimeout(r.timer);
    if (r.sweep) clearInterval(r.sweep);
    const until = Date.now() + args.drainMs;
    while (r.outstanding > 0 && Date.now() < until) await sleep(20);
    const unanswered = r.outstanding;
    const queued = r.live.reduce((a, ex) => a + ex.queue.length, 0);
    for (const ex of r.live) {
      ex.queue.length = 0;
      ex.rot = null;
    }
    run = null;
    keepalive.paused--;
    hooks.onJwtRenewal = undefined;
    const latencies = Float64Array.from(r.latencies);
    return {
      ...r.sent, jwtRenewals: counters.jwtRenewals - r.jwtRenewals0, failures: r.failures.counts, unanswered, queued, latencies, slow: r.slow,
      timeline: r.timeline.toJSON(),
    };
  },
};
