/**
 * The simulated executors of one load-generator thread and what each does on its own
 * keep-alive mTLS connection: heartbeats signed with shared/hmac.ts (reporting the trust
 * bundle version it holds), JWT renewals when due, adopting a newer bundle, and the
 * background heartbeats between phases. The phases are in bench/worker.ts and
 * bench/rotation-worker.ts. Every connection goes to 127.0.0.1 and verifies the
 * controller against the bundle the executor holds.
 */
import { parentPort, workerData } from "node:worker_threads";
import { createSecureContext, type SecureContext } from "node:tls";
import { signRequestHeaders } from "../shared/hmac.ts";
import { newNonce } from "../shared/random.ts";
import { paths, renewAt } from "../shared/protocol.ts";
import type { RenewResponse } from "../shared/wire/executor.ts";
import { buildRequest, errorCode, openConnection, TransportError, type Conn, type Res } from "./http1.ts";
import { REQUEST_TIMEOUT_MS as DAEMON_REQUEST_TIMEOUT_MS } from "../executor/client.ts";
import { CONNECT_TIMEOUTS, staleSessionFailure } from "../executor/tls-sessions.ts";
import type { WorkerInit } from "./protocol.ts";

export const init = workerData as WorkerInit;
export const HOST_HEADER = `127.0.0.1:${init.port}`;
export const CONNECT_TIMEOUT_MS = 10_000;
/** The daemon's patience for an answer (executor/client.ts): a busy controller answers late, not never. */
export const REQUEST_TIMEOUT_MS = DAEMON_REQUEST_TIMEOUT_MS;
export const BARE_PATH = "/v1/bench/bare";
/** Answers after which an executor could only recover by enrolling again. */
export const TERMINAL = new Set(["CERT_REQUIRED", "CERT_REVOKED", "IDENTITY_MISMATCH", "TOKEN_INVALID", "EPOCH_MISMATCH", "SIGNATURE_INVALID"]);

/** A trust bundle as executors hold it; one object per version, shared by every executor holding it. */
export interface Bundle {
  version: number;
  pem: string;
}

/** What an executor does in the rotation phase besides heartbeating (bench/rotation-worker.ts). */
export interface RotationState {
  /** The controller announced a newer bundle: fetch it before the next heartbeat. */
  fetchBundle: boolean;
  /** Epoch ms from which the certificate is to be renewed (the heartbeat's cert_renew_after). */
  certRenewAt: number;
  /** The highest bundle version a heartbeat reported and the controller answered 200 to. */
  reported: number;
  /** Epoch ms at which it switched to a certificate from the new CA (0: not yet). */
  movedAt: number;
  /** A heartbeat on the new certificate, HMAC key and JWT succeeded. */
  confirmed: boolean;
}

export interface Executor {
  idx: number;
  keyPem: string;
  csrPem: string;
  /** A second key and CSR, made up front like the first: for the certificate renewal of the rotation phase. */
  nextKeyPem: string;
  nextCsrPem: string;
  id: string;
  certPem: string;
  jwt: string;
  /** Epoch ms from which the JWT is renewed before the next heartbeat (⅔ of its life, or the controller's jwt_renew_after). */
  jwtRenewAt: number;
  hmacKey: Buffer;
  bundle: Bundle;
  ctx: SecureContext | null;
  conn: Conn | null;
  /** A request is in flight (or a connection is being opened) for this executor. */
  busy: boolean;
  /** Open-loop sends that were due while busy: their scheduled times. */
  queue: number[];
  /** performance.now() of the last answer on this executor's connection. */
  lastUsed: number;
  storm: { state: "waiting" | "ok" | "dead"; attempt: number; recoveredAt: number; timer: NodeJS.Timeout | null } | null;
  rot: RotationState | null;
}

export const executors: Executor[] = [];
export const openConns = new Set<Conn>();
/** Counted over the whole run (the rotation phase takes the difference). */
/** tlsResumed / tlsFull: new connections that resumed a TLS session, and full handshakes. */
export const counters = { jwtRenewals: 0, tlsResumed: 0, tlsFull: 0 };
/** Set by the restart storm: an executor's connection closed. */
export const hooks: { onClosed?: (ex: Executor) => void; onJwtRenewal?: (status: number) => void } = {};

const bundles = new Map<number, Bundle>();
/** The one shared object for a bundle version. */
export function bundleOf(version: number, pem: string): Bundle {
  let b = bundles.get(version);
  if (!b) bundles.set(version, (b = { version, pem }));
  return b;
}
/** Before registration: the CA file the harness was given (the daemon's --ca-file). */
export const initialBundle = bundleOf(0, init.caPem);
export const anonCtx = createSecureContext({ ca: init.caPem });

// One sweep timer fails requests past their deadline (instead of one timer per request).
const sweep = setInterval(() => {
  const now = performance.now();
  for (const c of openConns) c.checkTimeout(now);
}, 250);
sweep.unref();

export function track(conn: Conn, ex?: Executor): Conn {
  openConns.add(conn);
  conn.onClose = () => {
    openConns.delete(conn);
    if (ex && ex.conn === conn) {
      ex.conn = null;
      hooks.onClosed?.(ex);
    }
  };
  return conn;
}

export function progress(phase: string, done: number): void {
  parentPort!.postMessage({ progress: phase, done });
}

export class Codes {
  readonly counts: Record<string, number> = {};
  add(code: string): void {
    this.counts[code] = (this.counts[code] ?? 0) + 1;
  }
  get total(): number {
    return Object.values(this.counts).reduce((a, b) => a + b, 0);
  }
}

export function failureCode(e: unknown): string {
  return e instanceof TransportError ? e.code : (e as Error)?.message ?? String(e);
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

export function connected(): number {
  return executors.filter((e) => e.conn?.isOpen).length;
}

/** Runs fn over items with at most `concurrency` in flight, stopping new work after `deadline` (epoch ms). */
export async function pool<T>(items: T[], concurrency: number, deadline: number, fn: (item: T) => Promise<void>, onDone?: (n: number) => void): Promise<number> {
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

// ---------------------------------------------------------------------------------------------
// Requests

const heartbeatBodies = new Map<number, string>();
/** The heartbeat body (also sent to the bare route, for the same parse and size): reports the bundle version held. */
export function heartbeatBody(version: number): string {
  let b = heartbeatBodies.get(version);
  if (!b) heartbeatBodies.set(version, (b = JSON.stringify({ status: "ready", running: 0, capacity: 1, leases: [], trust_bundle_version: version })));
  return b;
}

/** An executor-plane request: JWT (when `jwt`) and the HMAC signature over method, target, executor, time, nonce and body. */
export function signedRequest(ex: Executor, target: string, body: string, jwt = true): string {
  const sig = signRequestHeaders(ex.hmacKey, { method: "POST", target, executorId: ex.id, body }, newNonce);
  return buildRequest("POST", target, HOST_HEADER, jwt ? { authorization: `Bearer ${ex.jwt}`, ...sig } : sig, body);
}

export function setJwt(ex: Executor, jwt: string, expiresAt: string): void {
  ex.jwt = jwt;
  ex.jwtRenewAt = renewAt(Date.now(), Date.parse(expiresAt));
}

/** A bundle the controller handed out: taken when newer; new connections verify the controller with it. */
export function adoptBundle(ex: Executor, version: number, pem: string): boolean {
  if (!(version > ex.bundle.version)) return false;
  ex.bundle = bundleOf(version, pem);
  ex.ctx = null;
  return true;
}

/**
 * Each executor's latest TLS session (ticket) and the certificate and key it was made with:
 * the next connection resumes it while they are unchanged, as the daemon's client does
 * (executor/tls-sessions.ts, TlsSessions) — across a controller restart too.
 */
const tlsSessions = new WeakMap<Executor, { certPem: string; keyPem: string; session: Buffer }>();

export async function connectExecutor(ex: Executor): Promise<Conn> {
  ex.ctx ??= createSecureContext({ key: ex.keyPem, cert: ex.certPem, ca: ex.bundle.pem });
  const { certPem, keyPem } = ex;
  const held = tlsSessions.get(ex);
  const session = held && held.certPem === certPem && held.keyPem === keyPem ? held.session : undefined;
  const onSession = (s: Buffer) => tlsSessions.set(ex, { certPem, keyPem, session: s });
  let conn: Conn;
  try {
    // The daemon's patience: 10 s for TCP, 30 s for the handshake (a busy controller opens connections in turn).
    const timeouts = { timeoutMs: CONNECT_TIMEOUTS.tcpMs, handshakeTimeoutMs: CONNECT_TIMEOUTS.tlsMs };
    conn = track(await openConnection({ port: init.port, secureContext: ex.ctx, ...timeouts, session, onSession }), ex);
  } catch (e) {
    // A TLS failure may be the session's (not a refused or timed-out connect): the next attempt starts afresh.
    if (session && staleSessionFailure(e)) tlsSessions.delete(ex);
    throw e;
  }
  if (conn.socket.isSessionReused()) counters.tlsResumed++;
  else counters.tlsFull++;
  ex.conn = conn;
  ex.lastUsed = performance.now();
  return conn;
}

/** The executor's open connection, or a new one. */
export async function connection(ex: Executor): Promise<{ conn: Conn; reconnected: boolean }> {
  if (ex.conn && ex.conn.isOpen) return { conn: ex.conn, reconnected: false };
  return { conn: await connectExecutor(ex), reconnected: true };
}

/** POST renew without a CSR: a new JWT for the same certificate (mTLS + HMAC; the JWT may have lapsed). */
async function renewJwt(ex: Executor, conn: Conn): Promise<Res> {
  const res = await conn.request(signedRequest(ex, paths.renew(ex.id), "{}"), REQUEST_TIMEOUT_MS);
  counters.jwtRenewals++;
  hooks.onJwtRenewal?.(res.status);
  if (res.status === 200) {
    const r = JSON.parse(res.body) as RenewResponse;
    setJwt(ex, r.jwt, r.jwt_expires_at);
    adoptBundle(ex, r.trust_bundle_version, r.ca_bundle_pem);
  }
  return res;
}

/**
 * One heartbeat (or bare baseline call) on the executor's connection, reconnecting first
 * when it was closed and renewing the JWT first when it is due (executor routes only). A
 * failed renewal is returned in place of the heartbeat.
 */
export async function call(ex: Executor, target: string): Promise<{ res: Res; reconnected: boolean; version: number }> {
  const { conn, reconnected } = await connection(ex);
  if (target !== BARE_PATH && Date.now() >= ex.jwtRenewAt) {
    const r = await renewJwt(ex, conn);
    if (r.status !== 200) return { res: r, reconnected, version: ex.bundle.version };
  }
  const version = ex.bundle.version;
  const res = await conn.request(signedRequest(ex, target, heartbeatBody(version)), REQUEST_TIMEOUT_MS);
  ex.lastUsed = performance.now();
  // A token that expired in flight (or on a stalled machine): renew before the next request.
  if (res.status === 401 && errorCode(res) === "TOKEN_EXPIRED") ex.jwtRenewAt = 0;
  return { res, reconnected, version };
}

// ---------------------------------------------------------------------------------------------
// Background heartbeats

/**
 * Between measurements connected executors keep heartbeating every `intervalMs`, like
 * real ones — otherwise the controller's keep-alive timeout (75 s) closes connections
 * that sat idle through a long phase (connecting 10,000 executors takes minutes here)
 * and the next phase would measure reconnections instead. Paused while a phase measures.
 */
export const keepalive = { on: false, paused: 0, intervalMs: 10_000, sent: 0, errors: new Map<string, number>() };
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
export async function measuring<T>(fn: () => Promise<T>): Promise<T> {
  keepalive.paused++;
  // Let keep-alive heartbeats already in flight finish first.
  for (let i = 0; i < 200 && executors.some((e) => e.busy); i++) await sleep(10);
  try {
    return await fn();
  } finally {
    keepalive.paused--;
  }
}

export function stopBackground(): void {
  keepalive.on = false;
  for (const c of [...openConns]) c.close();
  clearInterval(sweep);
  clearInterval(keepaliveTimer);
}
