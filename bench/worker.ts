/**
 * One load-generator thread: owns a shard of simulated executors (bench/sim.ts: each with
 * its own key, certificate, JWT, HMAC key and keep-alive mTLS connection) and runs the
 * phases the orchestrator (bench/run.ts) asks for over a small RPC; the rotation phase is
 * in bench/rotation-worker.ts. Every loop is bounded in count and in time; every
 * connection goes to 127.0.0.1.
 */
import { parentPort } from "node:worker_threads";
import { monitorEventLoopDelay } from "node:perf_hooks";
import { connect } from "node:tls";
import { paths } from "../shared/protocol.ts";
import type { RegisterResponse } from "../shared/wire/executor.ts";
import { newKeyAndCsr } from "../executor/csr.ts";
import { backoffDelay, DEFAULT_BACKOFF, reconnectDelay, retryAfterDelay } from "../executor/backoff.ts";
import { buildRequest, errorCode, openConnection, type Conn } from "./http1.ts";
import {
  anonCtx, BARE_PATH, bundleOf, call, Codes, connected, CONNECT_TIMEOUT_MS, counters, executors, failureCode, HOST_HEADER, hooks, init,
  initialBundle, keepalive, measuring, pool, progress, REQUEST_TIMEOUT_MS, setJwt, sleep, stopBackground, TERMINAL, track, type Executor,
} from "./sim.ts";
import { rotationHandlers } from "./rotation-worker.ts";
import { Timeline } from "./report-series.ts";

hooks.onClosed = (ex) => {
  if (ex.storm?.state === "waiting") scheduleRecovery(ex);
};

// ---------------------------------------------------------------------------------------------
// Phases

const handlers: Record<string, (args: any) => Promise<unknown>> = {
  /**
   * Keys and CSRs made up front, with the executor daemon's own code, so key generation is
   * not timed; with `second`, one more per executor for the rotation phase's renewal.
   */
  async gencsr(args: { deadline: number; second: boolean }) {
    const t0 = performance.now();
    const lanes = 8;
    const idxs = Array.from({ length: init.count }, (_, i) => init.start + i);
    const made: { idx: number; key: { keyPem: string; csrPem: string }; next: { keyPem: string; csrPem: string } }[] = [];
    await pool(idxs, lanes, args.deadline, async (idx) => {
      const key = await newKeyAndCsr("ed25519", `bench-${idx}`);
      const next = args.second ? await newKeyAndCsr("ed25519", `bench-${idx}`) : { keyPem: "", csrPem: "" };
      made.push({ idx, key, next });
    }, (n) => n % 500 === 0 && progress("csr", n));
    made.sort((a, b) => a.idx - b.idx);
    for (const m of made) {
      executors.push({
        idx: m.idx, keyPem: m.key.keyPem, csrPem: m.key.csrPem, nextKeyPem: m.next.keyPem, nextCsrPem: m.next.csrPem, id: "", certPem: "", jwt: "",
        jwtRenewAt: Infinity, hmacKey: Buffer.alloc(0), bundle: initialBundle, ctx: null, conn: null, busy: false, queue: [], lastUsed: 0,
        storm: null, rot: null,
      });
    }
    return { made: made.length, ms: performance.now() - t0 };
  },

  /** Full TLS handshakes without a client certificate, nothing else; the connection is then closed. */
  async handshakes(args: { count: number; concurrency: number; deadline: number }) {
    const codes = new Codes();
    /** Completions over time, for the report (bench/report-series.ts). */
    const timeline = new Timeline();
    let ok = 0;
    const once = () =>
      new Promise<void>((resolve) => {
        let finished = false;
        const socket = connect({ host: "127.0.0.1", port: init.port, servername: "localhost", secureContext: anonCtx });
        const timer = setTimeout(() => end("TIMEOUT"), CONNECT_TIMEOUT_MS);
        const end = (code?: string) => {
          if (finished) return;
          finished = true;
          clearTimeout(timer);
          if (code) codes.add(code);
          else {
            ok++;
            timeline.add("handshake");
          }
          socket.destroy();
          resolve();
        };
        socket.once("error", (e: NodeJS.ErrnoException) => end(e.code ?? "ERROR"));
        socket.once("close", () => end("CLOSED"));
        socket.once("secureConnect", () => {
          // TLS 1.3: the server sends its session tickets once it has processed the
          // client's Finished — wait for them so the server side is measured complete.
          if (socket.getProtocol() !== "TLSv1.3") return end();
          socket.once("session", () => end());
          setTimeout(() => end(), 1000).unref();
        });
      });
    await pool(Array.from({ length: args.count }), args.concurrency, args.deadline, once);
    return { ok, errors: codes.counts, timeline: timeline.toJSON() };
  },

  /** Registers executors [from, to) of this shard through the real /register path, each on a new TLS connection. */
  async register(args: { token: string; from: number; to: number; concurrency: number; deadline: number; kind?: string }) {
    const codes = new Codes();
    /** Completions over time, for the report: `kind` tells the timed registrations from the rest. */
    const timeline = new Timeline();
    let ok = 0;
    const slice = executors.slice(args.from, args.to);
    await pool(slice, args.concurrency, args.deadline, async (ex) => {
      const body = JSON.stringify({ enrollment_token: args.token, csr_pem: ex.csrPem, name: `bench-${ex.idx}`, capacity: 1 });
      const raw = buildRequest("POST", paths.register, HOST_HEADER, { connection: "close" }, body);
      for (let attempt = 0; attempt < 4 && Date.now() < args.deadline; attempt++) {
        let conn: Conn | undefined;
        try {
          conn = track(await openConnection({ port: init.port, secureContext: anonCtx, timeoutMs: CONNECT_TIMEOUT_MS }));
          const res = await conn.request(raw, REQUEST_TIMEOUT_MS);
          if (res.status !== 201) {
            codes.add(errorCode(res));
            if (res.status < 500 && res.status !== 429) return;
          } else {
            const reg = JSON.parse(res.body) as RegisterResponse;
            ex.id = reg.executor_id;
            setJwt(ex, reg.jwt, reg.jwt_expires_at);
            ex.hmacKey = Buffer.from(reg.hmac_key, "base64url");
            ex.certPem = reg.certificate_pem;
            ex.csrPem = "";
            // Like the daemon: from now on it trusts the bundle the registration answered with.
            ex.bundle = bundleOf(reg.trust_bundle_version ?? 1, reg.ca_bundle_pem);
            ok++;
            timeline.add(args.kind ?? "registration");
            return;
          }
        } catch (e) {
          codes.add(failureCode(e));
        } finally {
          conn?.close();
        }
        await sleep(backoffDelay(attempt));
      }
    }, (n) => n % 200 === 0 && progress("register", n));
    return { ok, errors: codes.counts, timeline: timeline.toJSON() };
  },

  /** Opens every registered executor's keep-alive mTLS connection and sends its first heartbeat. */
  async connect(args: { concurrency: number; deadline: number }) {
    const codes = new Codes();
    let ok = 0;
    await pool(executors.filter((e) => e.id && !e.conn), args.concurrency, args.deadline, async (ex) => {
      // busy: the background keep-alive must not send on this connection meanwhile.
      for (let attempt = 0; attempt < 4 && Date.now() < args.deadline; attempt++) {
        for (let w = 0; ex.busy && w < 3000; w++) await sleep(5);
        ex.busy = true;
        try {
          const { res } = await call(ex, paths.heartbeat(ex.id));
          if (res.status === 200) {
            ok++;
            return;
          }
          codes.add(errorCode(res));
          if (TERMINAL.has(errorCode(res))) return;
        } catch (e) {
          codes.add(failureCode(e));
          ex.conn?.close();
        } finally {
          ex.busy = false;
        }
        await sleep(backoffDelay(attempt));
      }
    }, (n) => n % 500 === 0 && progress("connect", n));
    return { ok, errors: codes.counts, open: connected() };
  },

  saturate: (args) => measuring(() => saturate(args)),
  openloop: (args) => measuring(() => openloop(args)),

  async keepalive(args: { on: boolean; intervalMs: number }) {
    keepalive.on = args.on;
    keepalive.intervalMs = args.intervalMs;
    return { sent: keepalive.sent, errors: Object.fromEntries(keepalive.errors) };
  },

  /**
   * Restart storm, part 1: from now on, an executor whose connection closes retries
   * heartbeating on a new connection with capped exponential backoff and jitter (the
   * daemon's own backoff), until one succeeds or it gets an answer only re-enrollment fixes.
   */
  async stormArm() {
    keepalive.on = false;
    stormFailures = new Timeline();
    counters.tlsResumed = counters.tlsFull = 0;
    stormLoopDelay.reset();
    stormLoopDelay.enable();
    for (const ex of executors) {
      if (!ex.id) continue;
      ex.storm = { state: "waiting", attempt: 0, recoveredAt: 0, timer: null };
      if (!ex.conn || !ex.conn.isOpen) scheduleRecovery(ex);
    }
    return { armed: executors.filter((e) => e.storm).length };
  },

  /** Restart storm, part 2: waits until every executor recovered (or the deadline). */
  async stormWait(args: { deadline: number }) {
    const armed = executors.filter((e) => e.storm);
    /** Epoch ms of each recovered executor's first successful heartbeat, for the report. */
    const recoveredAt: number[] = [];
    while (Date.now() < args.deadline && armed.some((e) => e.storm!.state === "waiting")) await sleep(50);
    stormLoopDelay.disable();
    let lastOk = 0;
    let ok = 0;
    let dead = 0;
    let attempts = 0;
    for (const e of armed) {
      const s = e.storm!;
      if (s.timer) clearTimeout(s.timer);
      attempts += s.attempt;
      if (s.state === "ok") {
        ok++;
        lastOk = Math.max(lastOk, s.recoveredAt);
        recoveredAt.push(s.recoveredAt);
      } else if (s.state === "dead") dead++;
      e.storm = null;
    }
    return { armed: armed.length, ok, dead, unrecovered: armed.length - ok - dead, lastOk, attempts, errors: stormCodes.counts,
      tlsResumed: counters.tlsResumed, tlsFull: counters.tlsFull, loopDelayMaxMs: stormLoopDelay.max / 1e6, recoveredAt, failures: stormFailures.toJSON() };
  },

  async status() {
    return { registered: executors.filter((e) => e.id).length, open: connected(), jwtRenewals: counters.jwtRenewals };
  },

  async shutdown() {
    stopBackground();
    return {};
  },

  ...rotationHandlers,
};

/**
 * Closed loop at saturation: `concurrency` requests always in flight, each on the next idle
 * executor in round-robin (so the load is spread over every connected executor). Counts the
 * 200s completed inside [measureFrom, measureTo) (epoch ms).
 */
async function saturate(args: { target: "heartbeat" | "bare"; concurrency: number; startAt: number; measureFrom: number; measureTo: number }) {
  const codes = new Codes();
  let ok = 0;
  let all = 0;
  let reconnects = 0;
  const live = executors.filter((e) => e.id);
  if (live.length === 0) return { ok, all, errors: codes.counts, reconnects };
  let rr = 0;
  await sleep(Math.max(0, args.startAt - Date.now()));
  const lane = async () => {
    while (Date.now() < args.measureTo) {
      let ex: Executor | undefined;
      for (let k = 0; k < live.length; k++) {
        const cand = live[rr++ % live.length]!;
        if (!cand.busy && cand.storm?.state !== "dead") {
          ex = cand;
          break;
        }
      }
      if (!ex) {
        await sleep(1);
        continue;
      }
      ex.busy = true;
      try {
        const { res, reconnected } = await call(ex, args.target === "bare" ? BARE_PATH : paths.heartbeat(ex.id));
        if (reconnected) reconnects++;
        const t = Date.now();
        const inWindow = t >= args.measureFrom && t < args.measureTo;
        if (inWindow) all++;
        if (res.status === 200) {
          if (inWindow) ok++;
        } else if (inWindow) codes.add(errorCode(res));
      } catch (e) {
        codes.add(failureCode(e));
        ex.conn?.close();
        await sleep(10);
      } finally {
        ex.busy = false;
      }
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(args.concurrency, live.length)) }, lane));
  return { ok, all, errors: codes.counts, reconnects };
}

/**
 * Open loop: heartbeats on a fixed timetable (`rate` per second for this shard, executor
 * k mod shard size), latency measured from the *scheduled* send time, so a stall shows up
 * as latency of everything scheduled during it (no coordinated omission).
 */
async function openloop(args: { target: "heartbeat" | "bare"; rate: number; startAt: number; durationMs: number; drainMs: number; slowMs: number }) {
  const loopDelay = monitorEventLoopDelay({ resolution: 1 });
  loopDelay.enable();
  const live = executors.filter((e) => e.id);
  const total = live.length === 0 || args.rate <= 0 ? 0 : Math.floor((args.durationMs / 1000) * args.rate);
  const lat = new Float64Array(total);
  let nLat = 0;
  /** [scheduled ms after start, latency ms] of the slowest answers, to see when stalls happened. */
  const slow: [number, number][] = [];
  const lag = new Float64Array(total);
  let nLag = 0;
  let sent = 0;
  let queued = 0;
  let reconnects = 0;
  const codes = new Codes();
  const interval = 1000 / args.rate;
  // Shared clock: epoch ms with sub-ms resolution.
  const now = () => performance.timeOrigin + performance.now();
  let outstanding = 0;
  let allSent: () => void = () => {};
  const finished = new Promise<void>((r) => (allSent = r));
  const maybeDone = () => {
    if (sent === total && outstanding === 0) allSent();
  };

  const send = (ex: Executor, scheduled: number) => {
    ex.busy = true;
    outstanding++;
    // How late the generator itself is: a stall here is not the controller's.
    if (nLag < lag.length) lag[nLag++] = now() - scheduled;
    call(ex, args.target === "bare" ? BARE_PATH : paths.heartbeat(ex.id))
      .then(({ res, reconnected }) => {
        if (reconnected) reconnects++;
        const l = now() - scheduled;
        if (l > args.slowMs && slow.length < 5000) slow.push([Math.round(scheduled - args.startAt), Math.round(l * 10) / 10]);
        if (res.status === 200) lat[nLat++] = l;
        else codes.add(errorCode(res));
      })
      .catch((e) => {
        codes.add(failureCode(e));
        ex.conn?.close();
      })
      .finally(() => {
        outstanding--;
        ex.busy = false;
        const nextScheduled = ex.queue.shift();
        if (nextScheduled !== undefined) send(ex, nextScheduled);
        maybeDone();
      });
  };

  // Each shard starts at a different offset so the shards interleave evenly.
  const t0 = args.startAt + (init.index / init.workers) * interval;
  let k = 0;
  await new Promise<void>((resolveTimetable) => {
    const tick = () => {
      const t = now();
      while (k < total && t0 + k * interval <= t) {
        const scheduled = t0 + k * interval;
        const ex = live[k % live.length]!;
        k++;
        sent++;
        if (ex.busy) {
          queued++;
          ex.queue.push(scheduled);
        } else send(ex, scheduled);
      }
      if (k >= total) return resolveTimetable();
      setTimeout(tick, Math.max(0, t0 + k * interval - now()));
    };
    if (total === 0) resolveTimetable();
    else setTimeout(tick, Math.max(0, t0 - now()));
  });
  maybeDone();
  const drained = await Promise.race([finished.then(() => true), sleep(args.drainMs).then(() => false)]);
  loopDelay.disable();
  return { sent, completed: nLat, queued, reconnects, outstanding: drained ? 0 : outstanding, errors: codes.counts, latencies: lat.slice(0, nLat), lags: lag.slice(0, nLag), slow,
    loopDelayP99Ms: loopDelay.percentile(99) / 1e6, loopDelayMaxMs: loopDelay.max / 1e6 };
}

const stormCodes = new Codes();
/** How late this generator thread ran its work during the storm (a saturated generator delays reconnections). */
const stormLoopDelay = monitorEventLoopDelay({ resolution: 10 });
/** The storm's failed attempts over time, by code (for the report). */
let stormFailures = new Timeline();

/** Each storming executor's failures since its connection was lost: when the first one was, and what the latest one was. */
const stormFailuresOf = new WeakMap<Executor, { since: number; refused: boolean; retryAfter?: string }>();

function noteStormFailure(ex: Executor, f: { refused: boolean; retryAfter?: string }): void {
  stormFailuresOf.set(ex, { since: stormFailuresOf.get(ex)?.since ?? Date.now(), ...f });
}

/** The daemon's reaction (executor/daemon/reaction-runner.ts): a Retry-After when answered with one, else reconnectDelay. */
function scheduleRecovery(ex: Executor): void {
  const s = ex.storm!;
  if (s.state !== "waiting" || s.timer) return;
  const f = stormFailuresOf.get(ex);
  const attempt = s.attempt++;
  const delay = f?.retryAfter !== undefined
    ? retryAfterDelay(f.retryAfter, backoffDelay(attempt, DEFAULT_BACKOFF))
    : reconnectDelay(attempt, { refused: f?.refused ?? false, lostForMs: f ? Date.now() - f.since : 0 }, DEFAULT_BACKOFF);
  s.timer = setTimeout(() => {
    s.timer = null;
    void recoverOnce(ex);
  }, delay);
}

async function recoverOnce(ex: Executor): Promise<void> {
  const s = ex.storm;
  if (!s || s.state !== "waiting") return;
  try {
    // Reconnects when needed, and renews the JWT first when it is due.
    const { res } = await call(ex, paths.heartbeat(ex.id));
    if (ex.storm !== s) return;
    if (res.status === 200) {
      s.state = "ok";
      s.recoveredAt = Date.now();
      stormFailuresOf.delete(ex);
      return;
    }
    const code = errorCode(res);
    stormCodes.add(code);
    stormFailures.add(code);
    if (TERMINAL.has(code)) {
      s.state = "dead";
      return;
    }
    noteStormFailure(ex, { refused: false, retryAfter: res.headers["retry-after"] });
  } catch (e) {
    stormCodes.add(failureCode(e));
    stormFailures.add(failureCode(e));
    noteStormFailure(ex, { refused: failureCode(e) === "ECONNREFUSED" });
  }
  if (ex.storm !== s) return;
  // The close handler reschedules when the connection goes away; otherwise do it here. An answer
  // with Retry-After keeps the connection, as the daemon's keep-alive agent does.
  if (ex.conn && ex.conn.isOpen && stormFailuresOf.get(ex)?.retryAfter === undefined) ex.conn.close();
  else scheduleRecovery(ex);
}

parentPort!.on("message", (m: { rpc: number; cmd: string; args: unknown }) => {
  const h = handlers[m.cmd];
  if (!h) {
    parentPort!.postMessage({ rpc: m.rpc, error: `unknown command ${m.cmd}` });
    return;
  }
  h(m.args).then(
    (result) => {
      const r = result as { latencies?: Float64Array; lags?: Float64Array } | undefined;
      const transfer = [r?.latencies?.buffer, r?.lags?.buffer].filter((b): b is ArrayBuffer => b instanceof ArrayBuffer);
      parentPort!.postMessage({ rpc: m.rpc, result }, transfer);
    },
    (e: unknown) => parentPort!.postMessage({ rpc: m.rpc, error: (e as Error)?.stack ?? String(e) }),
  );
});
