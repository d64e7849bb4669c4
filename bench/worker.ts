/**
 * One load-generator thread: owns a shard of simulated executors (each with its
 * own key, certificate, JWT, HMAC key and keep-alive mTLS connection) and runs the
 * phases the orchestrator (bench/run.ts) asks for over a small RPC. Every loop is
 * bounded in count and in time; every connection goes to 127.0.0.1.
 */
import { parentPort, workerData } from "node:worker_threads";
import { monitorEventLoopDelay } from "node:perf_hooks";
import { connect, createSecureContext, type SecureContext } from "node:tls";
import { signRequestHeaders } from "../shared/hmac.ts";
import { newNonce } from "../shared/random.ts";
import { paths } from "../shared/protocol.ts";
import type { RegisterResponse } from "../shared/wire/executor.ts";
import { newKeyAndCsr } from "../executor/csr.ts";
import { backoffDelay, DEFAULT_BACKOFF } from "../executor/backoff.ts";
import { buildRequest, errorCode, openConnection, TransportError, type Conn, type Res } from "./http1.ts";
import type { WorkerInit } from "./protocol.ts";

const init = workerData as WorkerInit;
const HOST_HEADER = `127.0.0.1:${init.port}`;
const CONNECT_TIMEOUT_MS = 10_000;
const REQUEST_TIMEOUT_MS = 10_000;
const HEARTBEAT_BODY = JSON.stringify({ status: "ready", running: 0, capacity: 1, leases: [] });
const BARE_PATH = "/v1/bench/bare";
/** Answers after which an executor could only recover by enrolling again. */
const TERMINAL = new Set(["CERT_REQUIRED", "CERT_REVOKED", "IDENTITY_MISMATCH", "TOKEN_INVALID", "EPOCH_MISMATCH", "SIGNATURE_INVALID"]);

interface Executor {
  idx: number;
  keyPem: string;
  csrPem: string;
  id: string;
  certPem: string;
  jwt: string;
  hmacKey: Buffer;
  ctx: SecureContext | null;
  conn: Conn | null;
  /** A request is in flight (or a connection is being opened) for this executor. */
  busy: boolean;
  /** Open-loop sends that were due while busy: their scheduled times. */
  queue: number[];
  /** performance.now() of the last answer on this executor's connection. */
  lastUsed: number;
  storm: { state: "waiting" | "ok" | "dead"; attempt: number; recoveredAt: number; timer: NodeJS.Timeout | null } | null;
}

const executors: Executor[] = [];
const anonCtx = createSecureContext({ ca: init.caPem });
const openConns = new Set<Conn>();

// One sweep timer fails requests past their deadline (instead of one timer per request).
const sweep = setInterval(() => {
  const now = performance.now();
  for (const c of openConns) c.checkTimeout(now);
}, 250);
sweep.unref();

function track(conn: Conn, ex?: Executor): Conn {
  openConns.add(conn);
  conn.onClose = () => {
    openConns.delete(conn);
    if (ex && ex.conn === conn) {
      ex.conn = null;
      if (ex.storm?.state === "waiting") scheduleRecovery(ex);
    }
  };
  return conn;
}

function progress(phase: string, done: number): void {
  parentPort!.postMessage({ progress: phase, done });
}

/** Runs fn over items with at most `concurrency` in flight, stopping new work after `deadline` (epoch ms). */
async function pool<T>(items: T[], concurrency: number, deadline: number, fn: (item: T) => Promise<void>, onDone?: (n: number) => void): Promise<number> {
  let next = 0;
  let done = 0;
  const lane = async () => {
    while (next < items.length && Date.now() < deadline) {
      const item = items[next++]!;
      await fn(item);
      done++;
      onDone?.(done);
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(concurrency, items.length)) }, lane));
  return done;
}

function heartbeatRequest(ex: Executor, target: string): string {
  const sig = signRequestHeaders(ex.hmacKey, { method: "POST", target, executorId: ex.id, body: HEARTBEAT_BODY }, newNonce);
  return buildRequest("POST", target, HOST_HEADER, { authorization: `Bearer ${ex.jwt}`, ...sig }, HEARTBEAT_BODY);
}

async function connectExecutor(ex: Executor): Promise<Conn> {
  ex.ctx ??= createSecureContext({ key: ex.keyPem, cert: ex.certPem, ca: init.caPem });
  const conn = track(await openConnection({ port: init.port, secureContext: ex.ctx, timeoutMs: CONNECT_TIMEOUT_MS }), ex);
  ex.conn = conn;
  ex.lastUsed = performance.now();
  // The key and certificate live on in the secure context; the PEM strings are not needed again.
  ex.keyPem = ex.csrPem = ex.certPem = "";
  return conn;
}

/** One heartbeat (or bare baseline call) on the executor's connection, reconnecting first when it was closed. */
async function call(ex: Executor, target: string): Promise<{ res: Res; reconnected: boolean }> {
  let reconnected = false;
  let conn = ex.conn;
  if (!conn || !conn.isOpen) {
    conn = await connectExecutor(ex);
    reconnected = true;
  }
  const res = await conn.request(heartbeatRequest(ex, target), REQUEST_TIMEOUT_MS);
  ex.lastUsed = performance.now();
  return { res, reconnected };
}

/**
 * Between measurements connected executors keep heartbeating every `intervalMs`, like
 * real ones — otherwise the controller's keep-alive timeout (75 s) closes connections
 * that sat idle through a long phase (connecting 10,000 executors takes minutes here)
 * and the next phase would measure reconnections instead. Paused while a phase measures.
 */
const keepalive = { on: false, paused: 0, intervalMs: 10_000, sent: 0, errors: new Map<string, number>() };
const keepaliveTimer = setInterval(() => {
  if (!keepalive.on || keepalive.paused > 0) return;
  const due = performance.now() - keepalive.intervalMs;
  for (const ex of executors) {
    if (!ex.id || ex.busy || !ex.conn?.isOpen || ex.lastUsed > due || ex.storm) continue;
    ex.busy = true;
    keepalive.sent++;
    call(ex, paths.heartbeat(ex.id))
      .then(({ res }) => res.status !== 200 && keepalive.errors.set(errorCode(res), (keepalive.errors.get(errorCode(res)) ?? 0) + 1))
      .catch((e) => {
        keepalive.errors.set(failureCode(e), (keepalive.errors.get(failureCode(e)) ?? 0) + 1);
        ex.conn?.close();
      })
      .finally(() => (ex.busy = false));
  }
}, 500);
keepaliveTimer.unref();

/** Runs a measured phase with the background keep-alive heartbeats paused. */
async function measuring<T>(fn: () => Promise<T>): Promise<T> {
  keepalive.paused++;
  // Let keep-alive heartbeats already in flight finish first.
  for (let i = 0; i < 200 && executors.some((e) => e.busy); i++) await sleep(10);
  try {
    return await fn();
  } finally {
    keepalive.paused--;
  }
}

class Codes {
  readonly counts: Record<string, number> = {};
  add(code: string): void {
    this.counts[code] = (this.counts[code] ?? 0) + 1;
  }
}

function failureCode(e: unknown): string {
  return e instanceof TransportError ? e.code : (e as Error)?.message ?? String(e);
}

// ---------------------------------------------------------------------------------------------
// Phases

const handlers: Record<string, (args: any) => Promise<unknown>> = {
  /** Keys and CSRs made up front, with the executor daemon's own code, so key generation is not timed. */
  async gencsr(args: { deadline: number }) {
    const t0 = performance.now();
    const lanes = 8;
    const idxs = Array.from({ length: init.count }, (_, i) => init.start + i);
    const made: { idx: number; keyPem: string; csrPem: string }[] = [];
    await pool(idxs, lanes, args.deadline, async (idx) => {
      const k = await newKeyAndCsr("ed25519", `bench-${idx}`);
      made.push({ idx, ...k });
    }, (n) => n % 500 === 0 && progress("csr", n));
    made.sort((a, b) => a.idx - b.idx);
    for (const m of made) {
      executors.push({
        idx: m.idx, keyPem: m.keyPem, csrPem: m.csrPem, id: "", certPem: "", jwt: "", hmacKey: Buffer.alloc(0), ctx: null, conn: null,
        busy: false, queue: [], lastUsed: 0, storm: null,
      });
    }
    return { made: made.length, ms: performance.now() - t0 };
  },

  /** Full TLS handshakes without a client certificate, nothing else; the connection is then closed. */
  async handshakes(args: { count: number; concurrency: number; deadline: number }) {
    const codes = new Codes();
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
          else ok++;
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
    return { ok, errors: codes.counts };
  },

  /** Registers executors [from, to) of this shard through the real /register path, each on a new TLS connection. */
  async register(args: { token: string; from: number; to: number; concurrency: number; deadline: number }) {
    const codes = new Codes();
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
            ex.jwt = reg.jwt;
            ex.hmacKey = Buffer.from(reg.hmac_key, "base64url");
            ex.certPem = reg.certificate_pem;
            ok++;
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
    return { ok, errors: codes.counts };
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
    while (Date.now() < args.deadline && armed.some((e) => e.storm!.state === "waiting")) await sleep(50);
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
      } else if (s.state === "dead") dead++;
      e.storm = null;
    }
    return { armed: armed.length, ok, dead, unrecovered: armed.length - ok - dead, lastOk, attempts, errors: stormCodes.counts };
  },

  async status() {
    return { registered: executors.filter((e) => e.id).length, open: connected() };
  },

  async shutdown() {
    keepalive.on = false;
    for (const c of [...openConns]) c.close();
    clearInterval(sweep);
    clearInterval(keepaliveTimer);
    return {};
  },
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

function scheduleRecovery(ex: Executor): void {
  const s = ex.storm!;
  if (s.state !== "waiting" || s.timer) return;
  const delay = backoffDelay(s.attempt++, DEFAULT_BACKOFF);
  s.timer = setTimeout(() => {
    s.timer = null;
    void recoverOnce(ex);
  }, delay);
}

async function recoverOnce(ex: Executor): Promise<void> {
  const s = ex.storm;
  if (!s || s.state !== "waiting") return;
  try {
    const conn = ex.conn && ex.conn.isOpen ? ex.conn : await connectExecutor(ex);
    const res = await conn.request(heartbeatRequest(ex, paths.heartbeat(ex.id)), REQUEST_TIMEOUT_MS);
    if (ex.storm !== s) return;
    if (res.status === 200) {
      s.state = "ok";
      s.recoveredAt = Date.now();
      return;
    }
    const code = errorCode(res);
    stormCodes.add(code);
    if (TERMINAL.has(code)) {
      s.state = "dead";
      return;
    }
  } catch (e) {
    stormCodes.add(failureCode(e));
  }
  if (ex.storm !== s) return;
  // The close handler reschedules when the connection goes away; otherwise do it here.
  if (ex.conn && ex.conn.isOpen) ex.conn.close();
  else scheduleRecovery(ex);
}

function connected(): number {
  return executors.filter((e) => e.conn?.isOpen).length;
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
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
