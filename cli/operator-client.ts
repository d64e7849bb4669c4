/**
 * One interface for everything an operator command does, with two implementations:
 * local (`--data-dir`, on the controller host: the domain services over the data
 * dir, as the CLI user) and remote (`--url` + an API token: PROTOCOL §5 over HTTPS).
 * Each command is written once against the interface.
 */
import { readFileSync } from "node:fs";
import { resolve } from "node:path";
import { Agent, request } from "undici";
import type { OptionSpec, ParsedArgs } from "./args.ts";
import { UsageError } from "./args.ts";
import { withDataDir, dataDirOption } from "./data-dir.ts";
import { readLogin, sameUrl } from "./login-store.ts";
import type { ControllerContext } from "../controller/context.ts";
import { capabilitiesOf } from "../controller/domain/capabilities.ts";
import { readAuditEvents } from "../controller/domain/audit-reader.ts";
import { trustStatus } from "../controller/domain/trust/status.ts";
import { BUNDLE_VERSION_HEADER, paths } from "../shared/protocol.ts";
import type { JwtKeyView,
  ApiTokenView, AuditEvent, CaView, CreatedApiToken, CreatedEnrollmentToken, EnrollmentTokenView, ExecutorView, SubmitTask, TaskStatus, TaskView,
  TrustStatus, Whoami as WhoAmI,
} from "../shared/wire/operator.ts";

export type { CreatedEnrollmentToken, WhoAmI };

export interface OperatorClient {
  /** Where the commands go, for messages: "data dir /x" or "https://…". */
  readonly target: string;
  whoami(): Promise<WhoAmI>;
  createEnrollmentToken(req: { ttl_s?: number; max_uses?: number; labels?: Record<string, string> }): Promise<CreatedEnrollmentToken>;
  listEnrollmentTokens(): Promise<EnrollmentTokenView[]>;
  revokeEnrollmentToken(id: string): Promise<void>;
  listExecutors(): Promise<ExecutorView[]>;
  showExecutor(id: string): Promise<ExecutorView>;
  revokeExecutor(id: string): Promise<ExecutorView>;
  drainExecutor(id: string): Promise<ExecutorView>;
  createApiToken(req: { name: string; role: string; ttl_s?: number }): Promise<CreatedApiToken>;
  listApiTokens(): Promise<ApiTokenView[]>;
  revokeApiToken(id: string): Promise<void>;
  audit(q: { since?: string; limit?: number }): Promise<AuditEvent[]>;
  submitTask(req: SubmitTask): Promise<TaskView>;
  listTasks(q: { status?: TaskStatus; limit?: number }): Promise<TaskView[]>;
  showTask(id: string): Promise<TaskView>;
  cancelTask(id: string): Promise<TaskView>;
  /** PROTOCOL §7: every CA (and JWT key) with its state and adoption. */
  trustStatus(): Promise<TrustStatus>;
  /** Prepares a new CA (cross-signed by the active one). */
  rotateCa(): Promise<CaView>;
  /** Activates the prepared CA; refused (ADOPTION_INCOMPLETE, with `pending`) until adopted unless `force`. */
  activateCa(force: boolean): Promise<CaView>;
  /** The trust bundle (every CA) and its version. */
  caBundle(): Promise<{ version: number; pem: string }>;
  /** One CRL per CA of the bundle, PEM. */
  caCrl(): Promise<string>;
  /** Promotes the next JWT key (PROTOCOL §7.3); refused (409, Retry-After) while it is too young. */
  rotateJwtKey(): Promise<JwtKeyView[]>;
}

// ---------------------------------------------------------------- local

const cliUser = () => process.env.USER ?? process.env.LOGNAME ?? "unknown";

/** On the controller host, with access to the data dir: acts as the CLI user, with every capability. */
export class LocalOperatorClient implements OperatorClient {
  readonly target: string;
  private readonly who = { via: "cli", user: cliUser() };

  constructor(private readonly ctx: ControllerContext) {
    this.target = `data dir ${ctx.config.dataDir}`;
  }

  async whoami(): Promise<WhoAmI> {
    return { id: `cli:${cliUser()}`, name: cliUser(), role: "admin", capabilities: capabilitiesOf("admin"), expires_at: null };
  }
  createEnrollmentToken(req: { ttl_s?: number; max_uses?: number; labels?: Record<string, string> }) {
    return this.ctx.enrollment.create({ ttlSeconds: req.ttl_s, maxUses: req.max_uses, labels: req.labels }, this.who);
  }
  listEnrollmentTokens() {
    return this.ctx.enrollment.list();
  }
  async revokeEnrollmentToken(id: string) {
    if (!(await this.ctx.enrollment.revoke(id, this.who))) throw new Error(`no active enrollment token ${id}`);
  }
  listExecutors() {
    return this.ctx.executors.list();
  }
  showExecutor(id: string) {
    return this.ctx.executors.show(id);
  }
  revokeExecutor(id: string) {
    return this.ctx.executors.revoke(id, this.who);
  }
  drainExecutor(id: string) {
    return this.ctx.executors.setDrain(id, true, this.who);
  }
  createApiToken(req: { name: string; role: string; ttl_s?: number }) {
    return this.ctx.apiTokens.create({ name: req.name, role: req.role, ttlSeconds: req.ttl_s }, `cli:${cliUser()}`, this.who);
  }
  listApiTokens() {
    return this.ctx.apiTokens.list();
  }
  async revokeApiToken(id: string) {
    if (!(await this.ctx.apiTokens.revoke(id, this.who))) throw new Error(`no active API token ${id}`);
  }
  audit(q: { since?: string; limit?: number }) {
    return readAuditEvents(this.ctx.config.dataDir, { since: q.since === undefined ? undefined : Date.parse(q.since), limit: q.limit });
  }
  submitTask(req: SubmitTask) {
    return this.ctx.tasks.submit(req, this.who);
  }
  listTasks(q: { status?: TaskStatus; limit?: number }) {
    return this.ctx.tasks.list(q.status, q.limit);
  }
  showTask(id: string) {
    return this.ctx.tasks.show(id);
  }
  cancelTask(id: string) {
    return this.ctx.tasks.cancel(id, this.who);
  }
  trustStatus() {
    return trustStatus(this.ctx.cas, this.ctx.jwtKeys);
  }
  rotateCa() {
    return this.ctx.cas.prepare(this.who);
  }
  activateCa(force: boolean) {
    return this.ctx.cas.activate({ force }, this.who);
  }
  async caBundle() {
    return { version: this.ctx.cas.version(), pem: this.ctx.cas.bundlePem() };
  }
  caCrl() {
    return this.ctx.cas.crlPem();
  }
  rotateJwtKey() {
    return this.ctx.jwtKeys.rotate(this.who);
  }
}

// ---------------------------------------------------------------- remote

/** An error answered by the controller: its message, status and code, in one line; its other fields (e.g. `pending`) as details. */
export class RemoteError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    serverMessage: string,
    readonly details: Record<string, unknown> = {},
  ) {
    super(`${serverMessage} (${status} ${code})`);
    this.name = "RemoteError";
  }
}

/** `https://host:port[/prefix]` without a trailing slash; anything else is a usage error. */
export function normalizeUrl(text: string, option = "--url"): string {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw new UsageError(`${option} expects a URL like https://controller:8443, got "${text}"`);
  }
  if (url.protocol !== "https:") throw new UsageError(`${option} must be an https:// URL: API tokens are never sent in clear`);
  if (url.search || url.hash || url.username || url.password) throw new UsageError(`${option} must not carry credentials, a query or a fragment`);
  return url.toString().replace(/\/+$/, "");
}

export function readCaFile(path: string): string {
  const abs = resolve(path);
  let pem: string;
  try {
    pem = readFileSync(abs, "utf8");
  } catch (e) {
    throw new UsageError(`--ca-file: cannot read ${abs} (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
  }
  if (!pem.includes("-----BEGIN CERTIFICATE-----")) throw new UsageError(`--ca-file: ${abs} holds no PEM certificate (use the controller's ca.pem / "tether ca bundle")`);
  return pem;
}

export class RemoteOperatorClient implements OperatorClient {
  private readonly agent: Agent;

  constructor(
    readonly target: string,
    private readonly token: string,
    caPem?: string,
  ) {
    this.agent = new Agent({ connect: caPem ? { ca: caPem } : {}, headersTimeout: 60_000, bodyTimeout: 60_000 });
  }

  private async call<T>(method: "GET" | "POST" | "DELETE", path: string, body?: unknown): Promise<T> {
    let res;
    try {
      res = await request(this.target + path, {
        method,
        dispatcher: this.agent,
        headers: {
          authorization: `Bearer ${this.token}`,
          accept: "application/json",
          ...(body !== undefined ? { "content-type": "application/json" } : {}),
        },
        body: body === undefined ? undefined : JSON.stringify(body),
      });
    } catch (e) {
      const err = e as NodeJS.ErrnoException & { cause?: NodeJS.ErrnoException };
      const detail = err.cause?.message ?? err.message ?? String(e);
      const tls = /certificate|self[- ]signed|CERT_|unable to verify/i.test(`${detail} ${err.code ?? ""} ${err.cause?.code ?? ""}`);
      throw new Error(`cannot reach ${this.target}: ${detail}${tls ? " (pass --ca-file with the controller's ca.pem)" : ""}`);
    }
    const text = await res.body.text();
    let json: unknown;
    try {
      json = text === "" ? undefined : JSON.parse(text);
    } catch {
      json = undefined;
    }
    if (res.statusCode >= 400) {
      const err = (json as { error?: { code?: unknown; message?: unknown } } | undefined)?.error;
      const code = typeof err?.code === "string" ? err.code : "HTTP_ERROR";
      const message = typeof err?.message === "string" ? err.message.split("\n")[0]! : `HTTP ${res.statusCode}`;
      const { code: _code, message: _message, ...details } = (err ?? {}) as Record<string, unknown>;
      throw new RemoteError(res.statusCode, code, message, details);
    }
    if (json === undefined) throw new Error(`${this.target} answered ${method} ${path} with a body that is not JSON`);
    return json as T;
  }

  whoami() {
    return this.call<WhoAmI>("GET", "/api/v1/whoami");
  }
  createEnrollmentToken(req: { ttl_s?: number; max_uses?: number; labels?: Record<string, string> }) {
    return this.call<CreatedEnrollmentToken>("POST", "/api/v1/enrollment-tokens", req);
  }
  async listEnrollmentTokens() {
    return (await this.call<{ enrollment_tokens: EnrollmentTokenView[] }>("GET", "/api/v1/enrollment-tokens")).enrollment_tokens;
  }
  async revokeEnrollmentToken(id: string) {
    await this.call("DELETE", `/api/v1/enrollment-tokens/${encodeURIComponent(id)}`);
  }
  async listExecutors() {
    return (await this.call<{ executors: ExecutorView[] }>("GET", "/api/v1/executors")).executors;
  }
  showExecutor(id: string) {
    return this.call<ExecutorView>("GET", `/api/v1/executors/${encodeURIComponent(id)}`);
  }
  revokeExecutor(id: string) {
    return this.call<ExecutorView>("POST", `/api/v1/executors/${encodeURIComponent(id)}/revoke`, {});
  }
  drainExecutor(id: string) {
    return this.call<ExecutorView>("POST", `/api/v1/executors/${encodeURIComponent(id)}/drain`, {});
  }
  createApiToken(req: { name: string; role: string; ttl_s?: number }) {
    return this.call<CreatedApiToken>("POST", "/api/v1/tokens", req);
  }
  async listApiTokens() {
    return (await this.call<{ tokens: ApiTokenView[] }>("GET", "/api/v1/tokens")).tokens;
  }
  async revokeApiToken(id: string) {
    await this.call("DELETE", `/api/v1/tokens/${encodeURIComponent(id)}`);
  }
  async audit(q: { since?: string; limit?: number }) {
    const qs = new URLSearchParams();
    if (q.since !== undefined) qs.set("since", q.since);
    if (q.limit !== undefined) qs.set("limit", String(q.limit));
    const suffix = qs.size ? `?${qs}` : "";
    return (await this.call<{ events: AuditEvent[] }>("GET", `/api/v1/audit${suffix}`)).events;
  }

  submitTask(req: SubmitTask) {
    return this.call<TaskView>("POST", "/api/v1/tasks", req);
  }
  async listTasks(q: { status?: TaskStatus; limit?: number }) {
    const qs = new URLSearchParams();
    if (q.status !== undefined) qs.set("status", q.status);
    if (q.limit !== undefined) qs.set("limit", String(q.limit));
    return (await this.call<{ tasks: TaskView[] }>("GET", `/api/v1/tasks${qs.size ? `?${qs}` : ""}`)).tasks;
  }
  showTask(id: string) {
    return this.call<TaskView>("GET", `/api/v1/tasks/${encodeURIComponent(id)}`);
  }
  cancelTask(id: string) {
    return this.call<TaskView>("POST", `/api/v1/tasks/${encodeURIComponent(id)}/cancel`, {});
  }
  trustStatus() {
    return this.call<TrustStatus>("GET", "/api/v1/ca");
  }
  rotateCa() {
    return this.call<CaView>("POST", "/api/v1/ca/rotate", {});
  }
  activateCa(force: boolean) {
    return this.call<CaView>("POST", "/api/v1/ca/activate", force ? { force } : {});
  }
  async caBundle() {
    const { text, headers } = await this.fetchPem(paths.caBundle);
    const version = Number(headers[BUNDLE_VERSION_HEADER]);
    if (!Number.isSafeInteger(version)) throw new Error(`${this.target} answered ${paths.caBundle} without a valid ${BUNDLE_VERSION_HEADER} header`);
    return { version, pem: text };
  }
  async caCrl() {
    return (await this.fetchPem(paths.caCrl)).text;
  }
  async rotateJwtKey() {
    return (await this.call<{ jwt_keys: JwtKeyView[] }>("POST", "/api/v1/jwt-keys/rotate", {})).jwt_keys;
  }

  /** A public PEM route (no token needed, none sent). */
  private async fetchPem(path: string): Promise<{ text: string; headers: Record<string, string | string[] | undefined> }> {
    let res;
    try {
      res = await request(this.target + path, { method: "GET", dispatcher: this.agent });
    } catch (e) {
      throw new Error(`cannot reach ${this.target}: ${(e as Error).message}`);
    }
    const text = await res.body.text();
    if (res.statusCode !== 200) throw new RemoteError(res.statusCode, "HTTP_ERROR", `GET ${path} answered ${res.statusCode}`);
    return { text, headers: res.headers };
  }

  close(): Promise<void> {
    return this.agent.close();
  }
}

// ---------------------------------------------------------------- choosing one

/** `--data-dir` on the controller host, or `--url` with an API token, on every operator command. */
export const operatorOptions: Record<string, OptionSpec> = {
  ...dataDirOption,
  url: { kind: "string", arg: "URL", help: "the controller's URL, acting with an API token instead of --data-dir (default: the saved login)", env: "TETHER_URL" },
  token: { kind: "string", arg: "TOKEN", help: "API token for --url (default: the saved login's, for the same URL)", env: "TETHER_TOKEN" },
  "ca-file": { kind: "string", arg: "FILE", help: "CA bundle to trust for --url (default: the saved login's, else the system's)", env: "TETHER_CA_FILE" },
};

export const OPERATOR_USAGE = "(--data-dir DIR | --store postgres://… --kek-file FILE | --url URL [--token TOKEN] [--ca-file FILE])";

/** Picks the local or remote client from the options (and the saved login), runs `fn`, cleans up. */
export async function withOperator<T>(args: ParsedArgs, fn: (op: OperatorClient) => Promise<T>): Promise<T> {
  const local = args.strings["data-dir"] || (args.strings.store && args.strings.store !== "sqlite" ? args.strings.store : undefined);
  const urlArg = args.strings.url;
  if (local && urlArg) throw new UsageError("give --data-dir or --store (acting on the controller's state) or --url (remote), not both");
  if (local) return withDataDir(args, (ctx) => fn(new LocalOperatorClient(ctx)));
  const login = readLogin();
  if (!urlArg && !login) throw new UsageError("--data-dir or --url is required (or run: tether login --url URL --token TOKEN)");
  const url = urlArg ? normalizeUrl(urlArg) : login!.url;
  // A saved token is only ever sent to the URL it was saved for.
  const saved = login && sameUrl(login.url, url) ? login : undefined;
  const token = args.strings.token || saved?.token;
  if (!token) throw new UsageError(`no API token for ${url}: pass --token, set TETHER_TOKEN, or run: tether login --url ${url} --token TOKEN`);
  const caFile = args.strings["ca-file"] || saved?.ca_file || undefined;
  const client = new RemoteOperatorClient(url, token, caFile ? readCaFile(caFile) : undefined);
  try {
    return await fn(client);
  } finally {
    await client.close();
  }
}
