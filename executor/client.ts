/**
 * The executor's HTTP client (undici). Every executor-plane request carries the
 * client certificate (mTLS), the HMAC headers of shared/hmac.ts over the exact
 * bytes sent, and — where the route checks it — the JWT. The body is serialized
 * once; those bytes are signed and sent.
 *
 * Credentials live in an immutable session (agent + certificate + JWT) that is
 * swapped in one assignment: a request takes the session current when it starts
 * and finishes on it, so swapping to a renewed certificate never breaks requests
 * in flight; the old agent is closed gracefully once they are done.
 *
 * Where requests go is the endpoints' choice (./endpoints.ts: several replicas, one
 * current): each request reads the current URL when it starts, reports every HTTP
 * answer back, and an error it throws names the URL it was sent to (`requestUrl`),
 * so the daemon's reactions can fail over from exactly that URL. The same agent
 * (certificate, key, trust) serves every replica: they share one CA set.
 */
import { Agent, request } from "./undici.ts"; // undici without its index (./undici.ts)
import { resumingConnector, TlsSessions } from "./tls-sessions.ts";
import { TetherError } from "../shared/errors.ts";
import { signRequestHeaders } from "../shared/hmac.ts";
import { newNonce } from "../shared/random.ts";
import { BUNDLE_VERSION_HEADER, paths } from "../shared/protocol.ts";
import type { HeartbeatRequest, HeartbeatResponse, RegisterRequest, RegisterResponse, RenewRequest, RenewResponse } from "../shared/wire/executor.ts";
import type { CertThumbprint } from "../shared/fingerprint.ts";
import { certInfo } from "./certificate.ts";
import { ControllerEndpoints } from "./endpoints.ts";
import { isAbortError } from "./timers.ts";

export interface Credentials {
  executorId: string;
  keyPem: string;
  certPem: string;
  /** CA bundle trusted for the controller's server certificate. */
  trustPem: string;
  hmacKey: Uint8Array;
  jwt?: string;
}

interface Session {
  /** Increments with every new agent (certificate, key or trust change), not with a JWT change. */
  generation: number;
  agent: Agent;
  creds: Credentials;
  certFingerprint: CertThumbprint;
  /** TLS sessions made with this certificate and key: kept by the next agent while they stay the same. */
  tlsSessions: TlsSessions;
}

/** How long the daemon waits for an answer's headers, and then for its body (per request; `timeoutMs` overrides it). */
export const REQUEST_TIMEOUT_MS = 30_000;

/** What a successful call returns: the data and which credentials it was made with. */
export interface CallResult<T> {
  data: T;
  status: number;
  generation: number;
  jwt?: string;
  /** The client certificate the call was made with; undefined for register (no client certificate). */
  certFingerprint?: CertThumbprint;
  sentAtMs: number;
  receivedAtMs: number;
  /** The controller URL that answered. */
  url: string;
}

/** A request that never got an HTTP answer: connection refused/reset, TLS failure, timeout. Retryable. */
export class TransportError extends Error {
  readonly code?: string;
  constructor(message: string, opts: { cause?: unknown; code?: string } = {}) {
    super(message, { cause: opts.cause });
    this.name = "TransportError";
    this.code = opts.code;
  }
}

export interface ClientOptions {
  /** `https://host:port` (a path prefix is kept): the one controller URL, when `endpoints` is not given. */
  baseUrl?: string;
  /** Several replicas of the controller (the daemon's `--controller` URLs). */
  endpoints?: ControllerEndpoints;
  /** Per-request timeout for headers and body (ms). */
  timeoutMs?: number;
  now?: () => number;
  nonce?: () => string;
}

export type Auth = "jwt" | "no-jwt";

/** `GET /v1/ca/bundle.pem`: the PEM and its `X-Tether-Bundle-Version` (undefined when missing or not a number). */
export interface BundleDownload {
  pem: string;
  version?: number;
  /** The controller URL that served it. */
  url: string;
}

/** More than any real bundle (a few CA certificates). */
const MAX_BUNDLE_BYTES = 1024 * 1024;

export interface CallOptions {
  signal?: AbortSignal;
  timeoutMs?: number;
}

const MAX_ERROR_TEXT = 512;

/** A non-2xx answer as a TetherError: the wire code when the body has one, else HTTP_<status> / INTERNAL. */
export function parseWireError(status: number, text: string, retryAfter?: string): TetherError {
  let code = status >= 500 ? "INTERNAL" : `HTTP_${status}`;
  let message = text.trim().slice(0, MAX_ERROR_TEXT) || `HTTP ${status}`;
  let details: Record<string, unknown> | undefined;
  try {
    const body = JSON.parse(text) as { error?: Record<string, unknown> };
    const e = body?.error;
    if (e && typeof e === "object" && typeof e.code === "string") {
      code = e.code;
      message = typeof e.message === "string" ? e.message : code;
      const { code: _c, message: _m, ...rest } = e;
      details = Object.keys(rest).length ? rest : undefined;
    }
  } catch {
    /* not JSON: keep the text */
  }
  return new TetherError(status, code, message, { details, headers: retryAfter !== undefined ? { "retry-after": retryAfter } : undefined });
}

/** The controller URL each failed request was sent to (errors are not ours to extend). */
const failedAt = new WeakMap<object, string>();

/** The controller URL the request that threw `e` was sent to; undefined for errors that did not come from a request. */
export function requestUrl(e: unknown): string | undefined {
  return e !== null && typeof e === "object" ? failedAt.get(e) : undefined;
}

function tagged<E>(e: E, url: string): E {
  if (e !== null && typeof e === "object" && !failedAt.has(e)) failedAt.set(e, url);
  return e;
}

function transportError(e: unknown, what: string): Error {
  const err = e as { name?: string; code?: string; message?: string; cause?: { code?: string; message?: string } };
  if (isAbortError(e)) return e as Error;
  const code = err?.code ?? err?.cause?.code;
  const detail = err?.cause?.message && err.cause.message !== err.message ? `${err?.message}: ${err.cause.message}` : err?.message;
  return new TransportError(`${what}: ${detail ?? String(e)}`, { cause: e, code });
}

export class ExecutorClient {
  /** server − local clock (ms); added to our clock for the HMAC timestamp once a skew was measured. */
  clockOffsetMs = 0;
  private session?: Session;
  private generationCounter = 0;
  private readonly retiring = new Set<Promise<void>>();
  readonly endpoints: ControllerEndpoints;
  private readonly timeoutMs: number;
  private readonly now: () => number;
  private readonly nonce: () => string;

  constructor(opts: ClientOptions) {
    if (opts.endpoints) this.endpoints = opts.endpoints;
    else if (opts.baseUrl !== undefined) this.endpoints = new ControllerEndpoints([opts.baseUrl.replace(/\/+$/, "")]);
    else throw new Error("the client needs a controller URL");
    this.timeoutMs = opts.timeoutMs ?? REQUEST_TIMEOUT_MS;
    this.now = opts.now ?? Date.now;
    this.nonce = opts.nonce ?? newNonce;
  }

  get credentials(): Credentials | undefined {
    return this.session?.creds;
  }

  get generation(): number {
    return this.session?.generation ?? 0;
  }

  /**
   * Uses these credentials for every request from now on. A new agent is built
   * unless only the JWT changed; the previous agent finishes what it is doing
   * and is then closed.
   */
  setCredentials(creds: Credentials): number {
    const old = this.session;
    const sameIdentity = old !== undefined && old.creds.certPem === creds.certPem && old.creds.keyPem === creds.keyPem;
    if (sameIdentity && old.creds.trustPem === creds.trustPem) {
      this.session = { ...old, creds: { ...creds } };
      return old.generation;
    }
    const tlsSessions = sameIdentity ? old.tlsSessions : new TlsSessions();
    const agent = new Agent({
      connect: resumingConnector({ ca: creds.trustPem, cert: creds.certPem, key: creds.keyPem, minVersion: "TLSv1.2" }, tlsSessions),
      keepAliveTimeout: 30_000,
    });
    this.session = { generation: ++this.generationCounter, agent, creds: { ...creds }, certFingerprint: certInfo(creds.certPem).fingerprint, tlsSessions };
    if (old) this.retire(old.agent);
    return this.session.generation;
  }

  /** A new JWT for the current certificate (same agent). */
  setJwt(jwt: string | undefined): void {
    if (!this.session) throw new Error("no credentials yet");
    this.session = { ...this.session, creds: { ...this.session.creds, jwt } };
  }

  /** `POST /v1/executors/register` — TLS to the controller but no client certificate. */
  async register(req: RegisterRequest, trustPem: string, opts: CallOptions = {}): Promise<CallResult<RegisterResponse>> {
    const agent = new Agent({ connect: { ca: trustPem, minVersion: "TLSv1.2" } });
    try {
      const raw = Buffer.from(JSON.stringify(req));
      return await this.send<RegisterResponse>(this.endpoints.current, agent, "POST", paths.register, raw, { "content-type": "application/json" }, opts, {
        generation: 0,
      });
    } finally {
      this.retire(agent);
    }
  }

  /** `GET /v1/ca/bundle.pem` over the session's agent: the server verified with the trust in use (PROTOCOL §7.2). */
  fetchBundle(opts: CallOptions = {}): Promise<BundleDownload> {
    if (!this.session) throw new Error("the executor has no credentials yet");
    return this.getBundle(this.session.agent, opts, true);
  }

  /**
   * The same download WITHOUT verifying the server, and without a client
   * certificate: only to check a CA pin (PROTOCOL §7.6). Nothing else is ever sent
   * over such a connection.
   */
  async fetchBundleUnverified(opts: CallOptions = {}): Promise<BundleDownload> {
    const agent = new Agent({ connect: { rejectUnauthorized: false, minVersion: "TLSv1.2" } });
    try {
      return await this.getBundle(agent, opts, false);
    } finally {
      this.retire(agent);
    }
  }

  heartbeat(body: HeartbeatRequest, opts: CallOptions = {}): Promise<CallResult<HeartbeatResponse>> {
    return this.call<HeartbeatResponse>("POST", paths.heartbeat(this.executorId()), body, "jwt", opts);
  }

  /** mTLS + HMAC; the JWT is left out (it may have lapsed, and the route does not read it). */
  renew(csrPem: string | undefined, opts: CallOptions = {}): Promise<CallResult<RenewResponse>> {
    const body: RenewRequest = csrPem === undefined ? {} : { csr_pem: csrPem };
    return this.call<RenewResponse>("POST", paths.renew(this.executorId()), body, "no-jwt", opts);
  }

  reregister(opts: CallOptions = {}): Promise<CallResult<RenewResponse>> {
    return this.call<RenewResponse>("POST", paths.reregister(this.executorId()), {}, "no-jwt", opts);
  }

  /** Any executor-plane request (the lease loop uses this): mTLS, HMAC and, with `auth: "jwt"`, the JWT. */
  async call<T>(method: string, path: string, body: unknown, auth: Auth, opts: CallOptions = {}): Promise<CallResult<T>> {
    const s = this.session;
    if (!s) throw new Error("the executor has no credentials yet");
    const raw = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
    const base = this.endpoints.current;
    // The HMAC covers the target as sent: this URL's path prefix, if it has one.
    const url = new URL(base + path);
    const target = url.pathname + url.search;
    const headers: Record<string, string> = {
      ...signRequestHeaders(s.creds.hmacKey, { method, target, executorId: s.creds.executorId, body: raw }, this.nonce, this.now() + this.clockOffsetMs),
    };
    if (raw !== undefined) headers["content-type"] = "application/json";
    const jwt = auth === "jwt" ? s.creds.jwt : undefined;
    if (jwt) headers.authorization = `Bearer ${jwt}`;
    return this.send<T>(base, s.agent, method, path, raw, headers, opts, { generation: s.generation, certFingerprint: s.certFingerprint, jwt });
  }

  /** Closes every agent; with `force`, in-flight requests are aborted instead of awaited. */
  async close(force = false): Promise<void> {
    const s = this.session;
    this.session = undefined;
    if (s) this.retire(s.agent, force);
    await Promise.allSettled([...this.retiring]);
  }

  private executorId(): string {
    if (!this.session) throw new Error("the executor has no credentials yet");
    return this.session.creds.executorId;
  }

  private async send<T>(
    base: string,
    agent: Agent,
    method: string,
    path: string,
    raw: Buffer | undefined,
    headers: Record<string, string>,
    opts: CallOptions,
    used: { generation: number; certFingerprint?: CertThumbprint; jwt?: string },
  ): Promise<CallResult<T>> {
    const timeout = opts.timeoutMs ?? this.timeoutMs;
    const sentAtMs = this.now();
    let res;
    try {
      res = await request(base + path, {
        method: method as "POST",
        dispatcher: agent,
        body: raw,
        headers: { accept: "application/json", ...headers },
        signal: opts.signal,
        headersTimeout: timeout,
        bodyTimeout: timeout,
      });
    } catch (e) {
      throw tagged(transportError(e, `${method} ${path}`), base);
    }
    let text: string;
    try {
      text = await res.body.text();
    } catch (e) {
      throw tagged(transportError(e, `${method} ${path} (reading the response)`), base);
    }
    const receivedAtMs = this.now();
    // Register goes without a client certificate, but the server's is verified all the same.
    this.endpoints.answered(base, res.statusCode);
    if (res.statusCode < 200 || res.statusCode > 299) {
      const ra = res.headers["retry-after"];
      throw tagged(parseWireError(res.statusCode, text, Array.isArray(ra) ? ra[0] : ra), base);
    }
    let data: T;
    try {
      data = (text.length ? JSON.parse(text) : {}) as T;
    } catch {
      throw tagged(new TetherError(res.statusCode, "INVALID_RESPONSE", `${method} ${path}: the controller answered ${res.statusCode} with a body that is not JSON`), base);
    }
    return { data, status: res.statusCode, ...used, sentAtMs, receivedAtMs, url: base };
  }

  private async getBundle(agent: Agent, opts: CallOptions, verified: boolean): Promise<BundleDownload> {
    const timeout = opts.timeoutMs ?? this.timeoutMs;
    const what = `GET ${paths.caBundle}`;
    const base = this.endpoints.current;
    let res;
    try {
      res = await request(base + paths.caBundle, {
        method: "GET", dispatcher: agent, signal: opts.signal, headersTimeout: timeout, bodyTimeout: timeout, headers: { accept: "application/x-pem-file" },
      });
    } catch (e) {
      throw tagged(transportError(e, what), base);
    }
    let text: string;
    try {
      text = await res.body.text();
    } catch (e) {
      throw tagged(transportError(e, `${what} (reading the response)`), base);
    }
    this.endpoints.answered(base, res.statusCode, verified);
    const header = (name: string) => {
      const v = res.headers[name];
      return Array.isArray(v) ? v[0] : v;
    };
    if (res.statusCode !== 200) throw tagged(parseWireError(res.statusCode, text, header("retry-after")), base);
    if (text.length > MAX_BUNDLE_BYTES) throw tagged(new TetherError(200, "INVALID_RESPONSE", `${what}: the bundle is larger than ${MAX_BUNDLE_BYTES} bytes`), base);
    const v = header(BUNDLE_VERSION_HEADER);
    const version = v !== undefined && /^\d{1,15}$/.test(v) ? Number(v) : undefined;
    return { pem: text, version, url: base };
  }

  private retire(agent: Agent, force = false): void {
    const p: Promise<void> = (force ? agent.destroy() : agent.close()).catch(() => {}).finally(() => this.retiring.delete(p));
    this.retiring.add(p);
  }
}
