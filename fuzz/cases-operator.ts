/**
 * The operator plane (PROTOCOL §5): every /api/v1 route with a principal's token (admin,
 * operator, viewer), a mutated one, or none; ids, queries and bodies from the schemas,
 * then mutated. The fuzzer's own table of which roles may use each route is the oracle:
 * a 2xx for a role not listed, or without a valid token, is a bypass.
 */
import { CreateApiToken, CreateEnrollmentToken, SubmitTask, TaskListQuery, AuditQuery, ROLES, type Role } from "../shared/wire/operator.ts";
import { operatorAuthVariant } from "./auth.ts";
import type { Case } from "./case.ts";
import { anonymous, asExecutor, firstReason, structured, type FuzzContext } from "./context.ts";
import { noiseHeaders, percentDecode, percentEncode } from "./headers.ts";
import type { Header, HttpResponse } from "./http1.ts";
import { generate, mutateText, mutateValue, NASTY_STRINGS, serialize, type Schema } from "./json-gen.ts";
import type { Rng } from "./rng.ts";
import type { World } from "./world.ts";

type IdKind = "executor" | "task" | "enrollment" | "apiToken";
interface OperatorRoute {
  method: string;
  pattern: string;
  /** The roles that may use it (PROTOCOL §5 and docs/security.md: API tokens and the audit log are admin business). */
  roles: readonly Role[];
  id?: IdKind;
  body?: Schema | "none";
  query?: Schema;
  /** Not mounted yet (PROTOCOL §7/§10): a 404 is a fine answer, so no status is required. */
  optional?: true;
}

const ALL = ROLES;
const ADMIN: readonly Role[] = ["admin"];
const WRITERS: readonly Role[] = ["admin", "operator"];
const NO_BODY: Schema = { anyOf: [{ type: "null" }, { type: "object" }] };

export const OPERATOR_ROUTES: readonly OperatorRoute[] = [
  { method: "GET", pattern: "/api/v1/whoami", roles: ALL },
  { method: "POST", pattern: "/api/v1/enrollment-tokens", roles: WRITERS, body: { anyOf: [{ type: "null" }, CreateEnrollmentToken] } },
  { method: "GET", pattern: "/api/v1/enrollment-tokens", roles: ALL },
  { method: "DELETE", pattern: "/api/v1/enrollment-tokens/:id", roles: WRITERS, id: "enrollment" },
  { method: "GET", pattern: "/api/v1/executors", roles: ALL },
  { method: "GET", pattern: "/api/v1/executors/:id", roles: ALL, id: "executor" },
  { method: "POST", pattern: "/api/v1/executors/:id/revoke", roles: ADMIN, id: "executor", body: NO_BODY },
  { method: "POST", pattern: "/api/v1/executors/:id/drain", roles: WRITERS, id: "executor", body: NO_BODY },
  { method: "POST", pattern: "/api/v1/tokens", roles: ADMIN, body: CreateApiToken },
  { method: "GET", pattern: "/api/v1/tokens", roles: ADMIN },
  { method: "DELETE", pattern: "/api/v1/tokens/:id", roles: ADMIN, id: "apiToken" },
  { method: "GET", pattern: "/api/v1/audit", roles: ADMIN, query: AuditQuery },
  { method: "POST", pattern: "/api/v1/tasks", roles: WRITERS, body: SubmitTask },
  { method: "GET", pattern: "/api/v1/tasks", roles: ALL, query: TaskListQuery },
  { method: "GET", pattern: "/api/v1/tasks/:id", roles: ALL, id: "task" },
  { method: "POST", pattern: "/api/v1/tasks/:id/cancel", roles: WRITERS, id: "task", body: NO_BODY },
  // PROTOCOL §5/§7/§10 routes that may not be mounted yet (then 404, in the error shape).
  { method: "GET", pattern: "/api/v1/ca", roles: ALL, optional: true },
  { method: "POST", pattern: "/api/v1/ca/rotate", roles: ADMIN, body: NO_BODY, optional: true },
  { method: "POST", pattern: "/api/v1/ca/activate", roles: ADMIN, body: { type: "object", properties: { force: { const: false } } }, optional: true },
  { method: "POST", pattern: "/api/v1/jwt-keys/rotate", roles: ADMIN, body: NO_BODY, optional: true },
  { method: "POST", pattern: "/api/v1/ws-tickets", roles: ALL, body: NO_BODY, optional: true },
];

function hint() {
  return (path: readonly string[], _schema: Schema, rng: Rng): unknown => {
    const key = path.join(".");
    if (key === "kind") return rng.pick(["command", "fuzz.noop", "fuzz.echo"]);
    if (key === "payload") return rng.pick([{ argv: ["true"] }, { argv: ["echo", "fuzz"], timeout_s: 5 }, { anything: [1, 2] }, null]);
    if (key === "selector") return rng.chance(0.7) ? {} : { fuzz: "1" };
    if (key === "ttl_s") return rng.pick([1, 2, 5, 3600, undefined]);
    if (key === "name") return `fuzz-${rng.string(6)}`;
    if (key === "since") return new Date(Date.now() - rng.int(0, 3600) * 1000).toISOString();
    return undefined;
  };
}

/** An id for the route's path: a real one (never a protected principal's), a random one, or a mangled one. */
function pickId(kind: IdKind, rng: Rng, world: World): { id: string; real: boolean } {
  const real: string[] =
    kind === "executor" ? [...world.executors.keys()]
    : kind === "task" ? world.taskIds
    : kind === "enrollment" ? world.enrollmentTokens.filter((t) => !t.protected).map((t) => t.id)
    : world.operatorTokens.filter((t) => !t.protected).map((t) => t.id);
  const r = rng.int(0, 9);
  if (r < 6 && real.length) return { id: rng.pick(real), real: true };
  if (r < 8) return { id: `${kind === "executor" ? "ex" : kind === "task" ? "task" : kind === "enrollment" ? "enr" : "tok"}_${rng.string(16)}`, real: false };
  return { id: rng.pick(["", "x".repeat(65), "x".repeat(rng.pick([1_000, 20_000])), "..", "%2e%2e", "%zz", "%00", "a%20b", ...NASTY_STRINGS.slice(0, 12).map((s) => encodeURIComponent(s))]), real: false };
}

export function operatorCase(n: number, rng: Rng, ctx: FuzzContext): Case {
  const { world } = ctx;
  const route = rng.pick(OPERATOR_ROUTES);
  const role: Role = rng.weighted([[5, "admin"], [3, "operator"], [3, "viewer"]] as const);
  const principal = world.principal(role);
  const what: string[] = [];
  const breaks: (string | undefined)[] = [];
  let method = route.method;
  if (method === "GET" && rng.chance(0.08)) {
    method = "HEAD";
    what.push("HEAD");
  } else if (rng.chance(0.04)) {
    method = rng.pick(["PUT", "PATCH", "OPTIONS", "DELETE", "TRACE", "FUZZ"]);
    what.push(`method ${method}`);
  }

  // ---- path and query
  let idUsed: string | undefined;
  let path = route.pattern;
  if (route.id) {
    const picked = pickId(route.id, rng, world);
    let seg = picked.id;
    if (picked.real && rng.chance(0.15) && (route.id === "executor" || route.id === "task")) {
      seg = percentEncode(seg, rng);
      what.push("id percent-encoded");
    }
    idUsed = percentDecode(seg);
    path = path.replace(":id", seg);
    if (!picked.real) what.push(`id ${JSON.stringify(seg.slice(0, 40))}${seg.length > 40 ? `… (${seg.length} chars)` : ""}`);
  }
  let target = path;
  if (route.query) {
    const q = generate(route.query, rng, hint()) as Record<string, string>;
    const parts = Object.entries(q).map(([k, v]) => `${k}=${encodeURIComponent(v)}`);
    if (rng.chance(0.3)) {
      parts.push(rng.pick(["status=queued&status=failed", "limit=-1", "limit=99999", "limit=1e3", "status=%zz", "since=yesterday", "x=" + "q".repeat(rng.pick([100, 10_000])), "limit", "=", "%00=1", "status[]=queued", "__proto__[x]=1"]));
      what.push(`query ${parts[parts.length - 1]!.slice(0, 40)}`);
    }
    if (parts.length) target += "?" + parts.join("&");
  } else if (rng.chance(0.05)) {
    target += rng.pick(["?", "?x=1", "?token=" + principal.token, "#frag", "/", "//", "/..", "%2F"]);
    what.push(`target suffix ${target.slice(path.length)}`);
  }
  if (rng.chance(0.03)) {
    target = rng.pick([target.toUpperCase(), target.replace("/api/v1", "/api/v1/"), target.replace("/api/v1", "/API/V1"), target.replace("/api/v1", "/api/v2"), "/api/v1/" + rng.string(8)]);
    what.push(`target ${target.slice(0, 50)}`);
  }

  // ---- body
  let body: Buffer | undefined;
  if (route.body && route.body !== "none" && method === route.method) {
    let value = generate(route.body, rng, hint());
    if (rng.chance(0.4)) {
      const m = mutateValue(value, route.body, rng);
      value = m.value;
      what.push(m.what);
    }
    body = serialize(value);
    if (rng.chance(0.12)) {
      const m = mutateText(body, rng);
      body = m.body;
      what.push(m.what);
    }
    if (body.length === 0 && rng.chance(0.5)) body = undefined;
  } else if (rng.chance(0.05)) {
    body = Buffer.from(rng.pick(["{}", "null", "x", "{\"a\":1}"]));
    what.push("a body where none is expected");
  }

  // ---- credentials
  const headers: Header[] = [];
  const auth = rng.chance(0.35) ? operatorAuthVariant(rng, principal.token, world) : { headers: [["authorization", `Bearer ${principal.token}`]] as Header[], what: "", breaks: undefined, tokenUsed: principal.token };
  headers.push(...auth.headers);
  if (auth.what) what.push(`auth: ${auth.what}`);
  breaks.push(auth.breaks);
  let identity = anonymous(rng);
  let identityDesc = "no client certificate";
  const live = world.liveExecutors();
  if (live.length && rng.chance(0.04)) {
    const e = rng.pick(live);
    identity = asExecutor(e, rng);
    identityDesc = `executor ${e.id}'s certificate`;
    breaks.push("an operator request on an executor's mTLS connection");
  }
  const noise = noiseHeaders(rng, body !== undefined);
  headers.push(...noise.headers);
  what.push(...noise.what);

  const tokenUsed = auth.tokenUsed;
  const tokenRole = world.operatorTokens.find((t) => t.token === tokenUsed)?.role;
  const roleAllowed = tokenRole !== undefined && route.roles.includes(tokenRole);
  if (tokenRole !== undefined && !roleAllowed) breaks.push(`the ${tokenRole} role may not ${route.method} ${route.pattern}`);
  const mustNotPass = firstReason(...breaks);
  const pristineRoute = !route.optional && method === route.method && target.split("?")[0] === path && (route.id === undefined || /^[A-Za-z0-9_-]{1,64}$/.test(idUsed ?? ""));
  const wants403 = pristineRoute && tokenRole !== undefined && !roleAllowed && firstReason(...breaks.slice(0, -1)) === undefined;
  return structured({
    n, label: `${route.method} ${route.pattern}`, plane: "operator", what, identity, identityDesc, method, target, headers, body,
    mustNotPass, authenticated: mustNotPass === undefined,
    dynamic: (sentAt) => {
      if (tokenUsed === undefined) return undefined;
      const state = world.operatorTokenState(tokenUsed, sentAt);
      return state === "revoked" || state === "expired" ? `the API token was ${state} before the request was sent` : undefined;
    },
    onAnswer: (res) => {
      if (!wants403 || tokenUsed === undefined || world.operatorTokenState(tokenUsed, Date.now()) !== "valid") return undefined;
      return [403, 503, 429].includes(res.status) ? undefined : `a valid ${tokenRole} token without the capability got ${res.status}, the contract says 403 FORBIDDEN`;
    },
    onSuccess: (res) => applySuccess(route, method, idUsed, res, world),
    track: revocationTracker(route, idUsed, world),
  }, ctx);
}

/** A DELETE of a known API token leaves its state unknown while in flight, and for good when unobserved. */
function revocationTracker(route: OperatorRoute, id: string | undefined, world: World): Case["track"] {
  const t = route.pattern === "/api/v1/tokens/:id" ? world.operatorTokens.find((x) => x.id === id) : undefined;
  if (!t) return undefined;
  return {
    start: () => void (t.pending = (t.pending ?? 0) + 1),
    end: (certain) => {
      t.pending = (t.pending ?? 1) - 1;
      if (!certain) t.uncertain = true;
    },
  };
}

/** The model after a 2xx: tokens created or revoked, executors revoked, tasks created. */
function applySuccess(route: OperatorRoute, method: string, id: string | undefined, res: HttpResponse, world: World): string | undefined {
  if (method !== route.method) return undefined;
  let json: Record<string, unknown> = {};
  try {
    json = JSON.parse(res.body.toString("utf8"));
  } catch {
    /* a 2xx without JSON: nothing to learn */
  }
  const now = Date.now();
  const expires = (v: unknown) => (typeof v === "string" ? Date.parse(v) : undefined);
  switch (`${route.method} ${route.pattern}`) {
    case "POST /api/v1/tokens":
      if (typeof json.token === "string" && typeof json.id === "string" && typeof json.role === "string") {
        world.operatorTokens.push({ id: json.id, token: json.token, role: json.role as Role, protected: false, expiresAt: expires(json.expires_at) ?? undefined });
      }
      break;
    case "DELETE /api/v1/tokens/:id": {
      const t = world.operatorTokens.find((x) => x.id === id);
      if (t) t.revokedAt ??= now;
      if (t?.protected) return `a protected token ${t.id} was revoked`;
      break;
    }
    case "POST /api/v1/enrollment-tokens":
      if (typeof json.token === "string" && typeof json.id === "string") {
        world.enrollmentTokens.push({ id: json.id, token: json.token, maxUses: Number(json.max_uses), registered: 0, expiresAt: expires(json.expires_at) ?? Infinity, protected: false });
      }
      break;
    case "DELETE /api/v1/enrollment-tokens/:id": {
      const t = world.enrollmentTokens.find((x) => x.id === id);
      if (t) t.revokedAt ??= now;
      break;
    }
    case "POST /api/v1/executors/:id/revoke": {
      const e = id === undefined ? undefined : world.executors.get(id);
      if (e) e.revokedAt ??= now;
      break;
    }
    case "POST /api/v1/tasks":
      if (typeof json.id === "string") world.remember(world.taskIds, json.id, 500);
      break;
  }
  return undefined;
}
