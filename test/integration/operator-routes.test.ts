/**
 * The operator plane (PROTOCOL §5) over real TLS and a real SQLite file: the route
 * table walked for planes and guards, an auth matrix generated from it (every
 * operator route × every kind of credential), planes that never mix, and the
 * routes themselves.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { RouteOptions } from "fastify";
import { readFileSync } from "node:fs";
import { request as httpsRequest } from "node:https";
import { join } from "node:path";
import Database from "better-sqlite3";
import { buildServer } from "../../controller/http/server.ts";
import type { RouteDeclaration } from "../../controller/http/request-context.ts";
import type { ControllerContext } from "../../controller/context.ts";
import { DB_FILE } from "../../controller/store/sqlite/sqlite-store.ts";
import { isCapability, roleHas } from "../../controller/domain/capabilities.ts";
import { ROLES, type Capability, type CreatedApiToken, type Role } from "../../shared/wire/operator.ts";
import { startTestController, type TestController } from "../support/controller.ts";
import { executorCall, HEARTBEAT, register, WireClient, type Enrolled, type Response } from "../support/wire.ts";
import { tether } from "../support/process.ts";

const UNAUTHENTICATED = '{"error":{"code":"UNAUTHENTICATED","message":"auth failure"}}';
const PUBLIC_ROUTES = new Set(["/v1/ca/bundle.pem", "/v1/ca/crl.pem", "/.well-known/jwks.json", "/healthz", "/readyz", "/openapi.json", "/ui", "/ui/", "/ui/:file"]);

interface CollectedRoute {
  method: string;
  url: string;
  decl: RouteDeclaration | undefined;
  onRequest: string[];
  preValidation: string[];
}

const names = (h: unknown): string[] => (h === undefined ? [] : (Array.isArray(h) ? h : [h]).map((f) => (f as { name: string }).name));

/**
 * Fastify's full route table (HEAD routes included), as the server mounts it, with
 * the hooks the declarations turned into. Built with dev and bench routes on so
 * that every plane is present.
 */
async function routeTable(ctx: ControllerContext, tls: { key: string; cert: string; ca: string }): Promise<CollectedRoute[]> {
  const routes: CollectedRoute[] = [];
  const app = buildServer({ ...ctx, config: { ...ctx.config, env: "test", bench: true } }, tls, { logLevel: "silent" });
  app.addHook("onRoute", (r: RouteOptions) => {
    for (const method of [r.method].flat()) {
      routes.push({
        method: String(method), url: r.url, decl: (r.config as { route?: RouteDeclaration } | undefined)?.route,
        onRequest: names(r.onRequest), preValidation: names(r.preValidation),
      });
    }
  });
  await app.ready();
  await app.close();
  return routes;
}

function planeOfPath(url: string): RouteDeclaration["plane"] {
  if (url.startsWith("/api/")) return "operator";
  if (url.startsWith("/v1/executors/")) return "executor";
  if (url.startsWith("/v1/dev/") || url.startsWith("/v1/bench/")) return "dev";
  return "public";
}

let tc: TestController;
let routes: CollectedRoute[];
let operatorRoutes: CollectedRoute[];
let ex: Enrolled;
const tokens = {} as Record<Role | "expired" | "revoked", CreatedApiToken>;
let anon: WireClient;

const bearer = (t: string) => ({ authorization: `Bearer ${t}` });
const concrete = (url: string) => url.replace(/:([A-Za-z_]+)/g, "nope_$1");

async function call(client: WireClient, method: string, url: string, headers: Record<string, string> = {}, body?: string): Promise<Response> {
  const withBody = method === "POST" || method === "PUT" || method === "PATCH";
  return client.send(method, url, { body: withBody ? (body ?? "{}") : undefined, headers });
}

beforeAll(async () => {
  tc = await startTestController();
  const creds = tc.c.serverCredentials();
  routes = await routeTable(tc.c.ctx, { key: creds.keyPem, cert: creds.certPem, ca: tc.caPem });
  operatorRoutes = routes.filter((r) => r.decl?.plane === "operator");
  const api = tc.c.ctx.apiTokens;
  for (const role of ROLES) tokens[role] = await api.create({ name: `matrix-${role}`, role }, "test", { via: "test" });
  tokens.expired = await api.create({ name: "matrix-expired", role: "admin", ttlSeconds: 3600 }, "test", { via: "test" });
  tokens.revoked = await api.create({ name: "matrix-revoked", role: "admin" }, "test", { via: "test" });
  // The database is the source of truth: expiry and revocation written there apply at once,
  // the revocation even from another process (the CLI on the data dir).
  const db = new Database(join(tc.dataDir, DB_FILE));
  db.prepare(`UPDATE api_tokens SET expires_at = ? WHERE id = ?`).run(Date.now() - 1000, tokens.expired.id);
  db.close();
  const r = tether(["api-token", "revoke", tokens.revoked.id, "--data-dir", tc.dataDir]);
  expect(r.status, r.stderr).toBe(0);
  ex = await register(tc.url, tc.caPem, await tc.createToken(), { name: "matrix-executor" });
  anon = new WireClient(tc.url, tc.caPem);
}, 60_000);

afterAll(async () => {
  await anon?.close();
  await ex?.client.close();
  await tc?.close();
});

describe("the route table", () => {
  it("holds every plane, and the operator routes of PROTOCOL §5", () => {
    const planes = new Set(routes.map((r) => r.decl?.plane));
    expect([...planes].sort()).toEqual(["dev", "executor", "operator", "public"]);
    const ops = new Set(operatorRoutes.map((r) => `${r.method} ${r.url}`));
    for (const r of [
      "POST /api/v1/enrollment-tokens", "GET /api/v1/enrollment-tokens", "DELETE /api/v1/enrollment-tokens/:id",
      "GET /api/v1/executors", "GET /api/v1/executors/:id", "POST /api/v1/executors/:id/revoke", "POST /api/v1/executors/:id/drain",
      "POST /api/v1/tokens", "GET /api/v1/tokens", "DELETE /api/v1/tokens/:id", "GET /api/v1/audit", "GET /api/v1/whoami",
      "HEAD /api/v1/executors",
      "POST /api/v1/tasks", "GET /api/v1/tasks", "GET /api/v1/tasks/:id", "POST /api/v1/tasks/:id/cancel",
      "GET /api/v1/ca", "POST /api/v1/ca/rotate", "POST /api/v1/ca/activate",
      "POST /api/v1/ws-tickets", "GET /api/v1/events",
    ]) {
      expect(ops.has(r), r).toBe(true);
    }
  });

  it("the trust routes: viewers read the CA set, only admins rotate and activate", () => {
    const cap = (method: string, url: string) => operatorRoutes.find((r) => r.method === method && r.url === url)?.decl?.capability;
    expect([cap("GET", "/api/v1/ca"), cap("POST", "/api/v1/ca/rotate"), cap("POST", "/api/v1/ca/activate")]).toEqual(["trust:read", "trust:write", "trust:write"]);
  });

  it("puts each route on exactly one plane, the one its path belongs to, with that plane's guards", () => {
    for (const r of routes) {
      const name = `${r.method} ${r.url}`;
      expect(r.decl, name).toBeDefined();
      const plane = r.decl!.plane;
      expect(plane, name).toBe(planeOfPath(r.url));
      const executorGuards = [...r.onRequest, ...r.preValidation].filter((g) => ["mtlsGuard", "jwtGuard", "hmacGuard"].includes(g));
      const operatorGuards = r.onRequest.filter((g) => g === "apiTokenGuard");
      switch (plane) {
        case "operator":
          if (r.decl!.auth === "in-band") {
            // The live-events WebSocket authenticates in its first frame (PROTOCOL §10.1); plain HTTP still meets the guard.
            expect(r.url, name).toBe("/api/v1/events");
            expect(r.onRequest[0], name).toBe("apiTokenGuardUnlessUpgrade");
            expect(operatorGuards, name).toEqual([]);
          } else {
            expect(r.onRequest[0], name).toBe("apiTokenGuard");
            expect(operatorGuards, name).toHaveLength(1);
          }
          expect(executorGuards, name).toEqual([]);
          expect(isCapability(r.decl!.capability), name).toBe(true);
          break;
        case "executor":
          expect(operatorGuards, name).toEqual([]);
          expect(r.decl!.capability, name).toBeUndefined();
          if (r.url === "/v1/executors/register") {
            expect(executorGuards, name).toEqual([]);
          } else {
            expect(r.onRequest[0], name).toBe("mtlsGuard");
            expect(r.preValidation, name).toContain("hmacGuard");
            expect(r.decl!.guards, name).toEqual(expect.arrayContaining(["mtls", "hmac"]));
          }
          break;
        case "public":
          expect(PUBLIC_ROUTES.has(r.url), `${name} is not a known public route`).toBe(true);
          expect([...executorGuards, ...operatorGuards], name).toEqual([]);
          break;
        case "dev":
          expect([...executorGuards, ...operatorGuards], name).toEqual([]);
          break;
      }
      // Every route judges the body only after its guards.
      expect(r.preValidation, name).toContain("rejectInvalidJson");
    }
  });

  it("refuses to start when an operator route forgets its capability, names an unknown one, or sits on the wrong plane", async () => {
    const creds = tc.c.serverCredentials();
    const cases: [string, unknown, RegExp][] = [
      ["/api/v1/sneaky", { route: { plane: "operator" } }, /must declare a known capability \(got none\)/],
      ["/api/v1/sneaky", { route: { plane: "operator", capability: "everything" } }, /must declare a known capability \(got "everything"\)/],
      ["/api/v1/sneaky", { route: { plane: "public" } }, /under \/api but not on the operator plane/],
      ["/api/v1/sneaky", { route: { plane: "executor", guards: ["mtls", "hmac"] } }, /under \/api but not on the operator plane/],
      ["/api/v1/sneaky", { route: { plane: "operatr", capability: "executors:read" } }, /unknown plane/],
      ["/api/v1/sneaky", undefined, /declares no plane/],
      ["/v1/sneaky", { route: { plane: "operator", capability: "executors:read" } }, /must live under \/api\/v1\//],
      ["/v1/sneaky", { route: { plane: "public", capability: "executors:read" } }, /declares a capability but is not on the operator plane/],
      ["/api/v1/sneaky", { route: { plane: "operator", capability: "executors:read", guards: ["mtls"] } }, /declares executor guards/],
    ];
    for (const [url, config, error] of cases) {
      const app = buildServer(tc.c.ctx, { key: creds.keyPem, cert: creds.certPem, ca: tc.caPem }, { logLevel: "silent" });
      const start = async () => {
        app.get(url, { config: config as never }, async () => ({}));
        await app.ready();
      };
      await expect(start(), JSON.stringify(config)).rejects.toThrow(error);
      await app.close().catch(() => {});
    }
  });
});

describe("the auth matrix: every operator route × every credential", () => {
  type Cred = { name: string; client: () => WireClient; headers: () => Record<string, string> };
  const failures: Cred[] = [
    { name: "no token", client: () => anon, headers: () => ({}) },
    { name: "garbage", client: () => anon, headers: () => bearer("garbage") },
    { name: "empty bearer", client: () => anon, headers: () => ({ authorization: "Bearer " }) },
    { name: "basic auth", client: () => anon, headers: () => ({ authorization: "Basic YWRtaW46YWRtaW4=" }) },
    { name: "well-formed unknown", client: () => anon, headers: () => bearer("tet_pat_" + "A".repeat(43)) },
    { name: "expired", client: () => anon, headers: () => bearer(tokens.expired.token) },
    { name: "revoked", client: () => anon, headers: () => bearer(tokens.revoked.token) },
    { name: "executor JWT", client: () => anon, headers: () => bearer(ex.jwt) },
    { name: "executor JWT over the executor's mTLS connection", client: () => ex.client, headers: () => bearer(ex.jwt) },
    { name: "admin token over an executor's mTLS connection", client: () => ex.client, headers: () => bearer(tokens.admin.token) },
    { name: "enrollment token", client: () => anon, headers: () => bearer("tet_enr_" + "A".repeat(43)) },
  ];

  it("401 with one identical body for every authentication failure", async () => {
    let checked = 0;
    for (const r of operatorRoutes) {
      for (const cred of failures) {
        const res = await call(cred.client(), r.method, concrete(r.url), cred.headers());
        const label = `${cred.name}: ${r.method} ${r.url}`;
        expect(res.status, label).toBe(401);
        if (r.method !== "HEAD") expect(res.text, label).toBe(UNAUTHENTICATED);
        expect(res.headers["www-authenticate"], label).toBe('Bearer realm="tether"');
        checked++;
      }
    }
    expect(checked).toBe(operatorRoutes.length * failures.length);
  });

  it("403 FORBIDDEN when the role lacks the route's capability, else the handler answers", async () => {
    for (const r of operatorRoutes) {
      const capability = r.decl!.capability as Capability;
      for (const role of ROLES) {
        const res = await call(anon, r.method, concrete(r.url), bearer(tokens[role].token));
        const label = `${role}: ${r.method} ${r.url} (${capability})`;
        if (roleHas(role, capability)) {
          expect([401, 403], label).not.toContain(res.status);
          expect(res.status, label).toBeLessThan(500);
        } else {
          expect(res.status, label).toBe(403);
          if (r.method !== "HEAD") expect(res.json?.error?.code, label).toBe("FORBIDDEN");
        }
      }
    }
  });

  it("role denials are audited with the token as actor", async () => {
    await call(anon, "GET", "/api/v1/tokens", bearer(tokens.viewer.token));
    // The audit log is written synchronously, before the response.
    const log = readFileSync(`${tc.dataDir}/audit.log`, "utf8").trim().split("\n").map((l) => JSON.parse(l));
    const denial = log.findLast((e) => e.event === "operator.forbidden");
    expect(denial).toMatchObject({
      capability: "api_tokens:read", path: "/api/v1/tokens", method: "GET", source: "127.0.0.1",
      actor: { type: "api_token", id: tokens.viewer.id, name: "matrix-viewer", role: "viewer" },
    });
    const failed = log.filter((e) => e.event === "operator.auth_failed").map((e) => e.reason);
    for (const reason of ["missing", "malformed", "unknown", "expired", "revoked", "executor_jwt", "enrollment_token", "client_certificate"]) {
      expect(failed, reason).toContain(reason);
    }
  });
});

describe("planes never mix", () => {
  it("an API token on an executor route is refused (TOKEN_INVALID with the executor's certificate, CERT_REQUIRED without)", async () => {
    const withCert = await executorCall(ex, "POST", `/v1/executors/${ex.id}/heartbeat`, HEARTBEAT, { jwt: tokens.admin.token });
    expect(withCert.status).toBe(401);
    expect(withCert.json.error.code).toBe("TOKEN_INVALID");
    const noCert = await executorCall(ex, "POST", `/v1/executors/${ex.id}/heartbeat`, HEARTBEAT, { jwt: tokens.admin.token, client: anon });
    expect(noCert.status).toBe(401);
    expect(noCert.json.error.code).toBe("CERT_REQUIRED");
    // The executor itself is fine.
    expect((await executorCall(ex, "POST", `/v1/executors/${ex.id}/heartbeat`, HEARTBEAT)).status).toBe(200);
  });
});

describe("operator routes", () => {
  const admin = () => bearer(tokens.admin.token);

  it("whoami names the token, its role and capabilities", async () => {
    const r = await call(anon, "GET", "/api/v1/whoami", bearer(tokens.operator.token));
    expect(r.status).toBe(200);
    expect(r.json).toMatchObject({ id: tokens.operator.id, name: "matrix-operator", role: "operator", expires_at: null });
    expect(r.json.capabilities).toContain("executors:drain");
    expect(r.json.capabilities).not.toContain("executors:revoke");
  });

  it("enrollment tokens: create (token once), list without secrets, revoke", async () => {
    const created = await call(anon, "POST", "/api/v1/enrollment-tokens", bearer(tokens.operator.token), JSON.stringify({ ttl_s: 600, max_uses: 2, labels: { zone: "a" } }));
    expect(created.status).toBe(201);
    expect(Object.keys(created.json).sort()).toEqual(["expires_at", "id", "max_uses", "token"]);
    expect(created.json.token).toMatch(/^tet_enr_[A-Za-z0-9_-]{43}$/);
    expect(created.json.max_uses).toBe(2);
    const noBody = await anon.send("POST", "/api/v1/enrollment-tokens", { headers: admin() });
    expect(noBody.status).toBe(201);
    const list = await call(anon, "GET", "/api/v1/enrollment-tokens", bearer(tokens.viewer.token));
    expect(list.status).toBe(200);
    expect(list.text).not.toContain("tet_enr_");
    expect(list.text).not.toContain("hash");
    const mine = list.json.enrollment_tokens.find((t: { id: string }) => t.id === created.json.id);
    expect(mine).toMatchObject({ state: "active", max_uses: 2, uses: 0, labels: { zone: "a" } });
    const del = await call(anon, "DELETE", `/api/v1/enrollment-tokens/${created.json.id}`, bearer(tokens.operator.token));
    expect(del.status).toBe(200);
    expect(del.json).toEqual({ id: created.json.id, revoked: true });
    expect((await call(anon, "DELETE", `/api/v1/enrollment-tokens/${created.json.id}`, admin())).status).toBe(404);
    const bad = await call(anon, "POST", "/api/v1/enrollment-tokens", admin(), JSON.stringify({ ttl_s: "1h" }));
    expect(bad.status).toBe(400);
    expect(bad.json.error.code).toBe("INVALID_REQUEST");
  });

  it("executors: list, show, drain (operator), revoke (admin only), each audited with the actor", async () => {
    const e = await register(tc.url, tc.caPem, await tc.createToken(), { name: "victim" });
    const list = await call(anon, "GET", "/api/v1/executors", bearer(tokens.viewer.token));
    expect(list.json.executors.map((x: { id: string }) => x.id)).toContain(e.id);
    const show = await call(anon, "GET", `/api/v1/executors/${e.id}`, bearer(tokens.viewer.token));
    expect(show.json).toMatchObject({ id: e.id, name: "victim", epoch: 1, revoked: false, drain: false });
    for (const k of ["id", "name", "epoch", "status", "labels", "cert_expires_at", "last_seen_at", "revoked"]) expect(show.json).toHaveProperty(k);
    const drain = await call(anon, "POST", `/api/v1/executors/${e.id}/drain`, bearer(tokens.operator.token));
    expect(drain.status).toBe(200);
    expect(drain.json.drain).toBe(true);
    expect((await executorCall(e, "POST", `/v1/executors/${e.id}/heartbeat`, HEARTBEAT)).json.drain).toBe(true);
    expect((await call(anon, "POST", `/api/v1/executors/${e.id}/revoke`, bearer(tokens.operator.token))).status).toBe(403);
    const revoke = await call(anon, "POST", `/api/v1/executors/${e.id}/revoke`, admin());
    expect(revoke.status).toBe(200);
    expect(revoke.json).toMatchObject({ revoked: true, status: "revoked" });
    const hb = await executorCall(e, "POST", `/v1/executors/${e.id}/heartbeat`, HEARTBEAT);
    expect(hb.json.error.code).toBe("CERT_REVOKED");
    await e.client.close();
    const events = (await call(anon, "GET", "/api/v1/audit?limit=1000", admin())).json.events as Record<string, any>[];
    expect(events.find((x) => x.event === "executor.drained" && x.executor_id === e.id)).toMatchObject({
      actor: { type: "api_token", id: tokens.operator.id, name: "matrix-operator" }, source: "127.0.0.1",
    });
    expect(events.find((x) => x.event === "executor.revoked" && x.executor_id === e.id)).toMatchObject({
      actor: { type: "api_token", id: tokens.admin.id, name: "matrix-admin", role: "admin" },
    });
  });

  it("tasks: a malformed command payload is refused at submission (400, naming the problem) and nothing is queued", async () => {
    const before = (await call(anon, "GET", "/api/v1/tasks?limit=1000", admin())).json.tasks.length;
    for (const [payload, problem] of [
      [{ argv: [] }, "argv must be a non-empty array"],
      [{ argv: ["echo", 1] }, "argv must be a non-empty array"],
      [{ argv: [""] }, "argv[0] is empty"],
      [{ argv: ["echo"], env: { LD_PRELOAD: "/tmp/x.so" } }, "LD_PRELOAD may not be set"],
      [{ argv: ["echo"], cwd: "relative/dir" }, "cwd must be an absolute path"],
      [{ argv: ["echo"], timeout_s: -1 }, "timeout_s must be a positive number"],
    ] as const) {
      const bad = await call(anon, "POST", "/api/v1/tasks", bearer(tokens.operator.token), JSON.stringify({ kind: "command", payload }));
      expect([bad.status, bad.json.error.code], problem).toEqual([400, "INVALID_REQUEST"]);
      expect(bad.json.error.message).toContain(problem);
    }
    expect((await call(anon, "GET", "/api/v1/tasks?limit=1000", admin())).json.tasks.length).toBe(before);
    const ok = await call(anon, "POST", "/api/v1/tasks", bearer(tokens.operator.token), JSON.stringify({ kind: "command", payload: { argv: ["echo", "hi"] } }));
    expect([ok.status, ok.json.status]).toEqual([201, "queued"]);
  });

  it("API tokens: create (once), list without secrets, revoke takes effect on the next request", async () => {
    const created = await call(anon, "POST", "/api/v1/tokens", admin(), JSON.stringify({ name: "ci", role: "operator", ttl_s: 3600 }));
    expect(created.status).toBe(201);
    expect(Object.keys(created.json).sort()).toEqual(["expires_at", "id", "name", "role", "token"]);
    expect(created.json).toMatchObject({ name: "ci", role: "operator" });
    const t = created.json.token as string;
    expect((await call(anon, "GET", "/api/v1/executors", bearer(t))).status).toBe(200);
    const list = await call(anon, "GET", "/api/v1/tokens", admin());
    expect(list.text).not.toContain("tet_pat_");
    const row = list.json.tokens.find((x: { id: string }) => x.id === created.json.id);
    expect(row).toMatchObject({ name: "ci", role: "operator", state: "active", revoked: false, last_used_ip: "127.0.0.1", created_by: `api_token:${tokens.admin.id}` });
    expect(Object.keys(row).sort()).toEqual(["created_at", "created_by", "expires_at", "id", "last_used_at", "last_used_ip", "name", "revoked", "role", "state"]);
    for (const [body, what] of [[{ name: "x", role: "root" }, "role"], [{ role: "viewer" }, "name"], [{ name: "x", role: "viewer", ttl_s: 0 }, "ttl"], ["{", "json"]] as const) {
      const bad = await call(anon, "POST", "/api/v1/tokens", admin(), typeof body === "string" ? body : JSON.stringify(body));
      expect(bad.status, what).toBe(400);
      expect(bad.json.error.code, what).toBe("INVALID_REQUEST");
    }
    // A malformed body from a caller without a token is still a 401: guards first.
    expect((await call(anon, "POST", "/api/v1/tokens", {}, "{")).text).toBe(UNAUTHENTICATED);
    const del = await call(anon, "DELETE", `/api/v1/tokens/${created.json.id}`, admin());
    expect(del.json).toEqual({ id: created.json.id, revoked: true });
    const after = await call(anon, "GET", "/api/v1/executors", bearer(t));
    expect(after.status).toBe(401);
    expect(after.text).toBe(UNAUTHENTICATED);
    expect((await call(anon, "DELETE", `/api/v1/tokens/${created.json.id}`, admin())).status).toBe(404);
  });

  it("a token used from a new address is audited", async () => {
    const created = await tc.c.ctx.apiTokens.create({ name: "roamer", role: "viewer" }, "test", { via: "test" });
    // undici drops `localAddress`; node:https keeps it, so the second client really comes from 127.0.0.2.
    const from = (localAddress: string) =>
      new Promise<number>((resolve, reject) => {
        const u = new URL(tc.url);
        const req = httpsRequest(
          { host: u.hostname, port: u.port, path: "/api/v1/executors", method: "GET", ca: tc.caPem, localAddress, agent: false, headers: bearer(created.token) },
          (res) => {
            res.resume();
            res.on("end", () => resolve(res.statusCode!));
          },
        );
        req.on("error", reject);
        req.end();
      });
    expect(await from("127.0.0.1")).toBe(200);
    expect(await from("127.0.0.1")).toBe(200);
    expect(await from("127.0.0.2")).toBe(200);
    const events = (await call(anon, "GET", "/api/v1/audit?limit=1000", bearer(tokens.admin.token))).json.events as Record<string, any>[];
    const moves = events.filter((e) => e.event === "api_token.new_address" && e.token_id === created.id);
    expect(moves.map((m) => [m.previous_source, m.source])).toEqual([[null, "127.0.0.1"], ["127.0.0.1", "127.0.0.2"]]);
  });

  it("audit: since and limit, newest last, admins only", async () => {
    const before = new Date(Date.now() - 1000).toISOString();
    await call(anon, "POST", "/api/v1/enrollment-tokens", bearer(tokens.admin.token));
    const r = await call(anon, "GET", `/api/v1/audit?since=${encodeURIComponent(before)}&limit=1000`, bearer(tokens.admin.token));
    expect(r.status).toBe(200);
    const times = r.json.events.map((e: { time: string }) => Date.parse(e.time));
    expect(times.every((t: number) => t >= Date.parse(before))).toBe(true);
    expect(r.json.events.at(-1).event).toBe("enrollment_token.created");
    const two = await call(anon, "GET", "/api/v1/audit?limit=2", bearer(tokens.admin.token));
    expect(two.json.events).toHaveLength(2);
    const dflt = await call(anon, "GET", "/api/v1/audit", bearer(tokens.admin.token));
    expect(dflt.json.events.length).toBeLessThanOrEqual(100);
    for (const q of ["limit=0", "limit=1001", "limit=ten", "since=yesterday", "since=2026-13-45T99:00:00Z"]) {
      const bad = await call(anon, "GET", `/api/v1/audit?${q}`, bearer(tokens.admin.token));
      expect(bad.status, q).toBe(400);
    }
    expect(r.text).not.toContain("tet_pat_");
    expect((await call(anon, "GET", "/api/v1/audit", bearer(tokens.operator.token))).status).toBe(403);
  });
});
