/**
 * `GET /openapi.json` (PROTOCOL §9.2) against a real controller over real TLS: the document
 * validates against the OpenAPI 3.1 schema (a maintained validator), is byte-identical to the
 * checked-in docs/openapi.json, states for every operation the security its route enforces,
 * covers every route the server mounts (dev and bench routes aside), and every request built
 * from its own examples — sent with the credentials its security names: an admin API token,
 * or a real executor's certificate, JWT and HMAC signature — is not refused as 400.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { readFileSync } from "node:fs";
import type { RouteOptions } from "fastify";
import { Validator } from "@seriousme/openapi-schema-validator";
import { buildServer } from "../../controller/http/server.ts";
import { OPENAPI_PATH, renderOpenapi } from "../../controller/http/openapi.ts";
import type { RouteDeclaration } from "../../controller/http/request-context.ts";
import { startTestController, type TestController } from "../support/controller.ts";
import { executorCall, register, WireClient, type Enrolled, type Response } from "../support/wire.ts";

const OPENAPI_FILE = new URL("../../docs/openapi.json", import.meta.url);
const REGENERATE = "docs/openapi.json differs from what the controller serves: run `npm run openapi` and commit docs/openapi.json";
const HMAC_SCHEMES = ["hmacTimestamp", "hmacNonce", "hmacSignature"];

interface Parameter { name: string; in: "path" | "query" | "header" | "cookie"; required?: boolean; example?: unknown }
interface Media { schema?: { $ref?: string }; example?: unknown; examples?: Record<string, { value: unknown }> }
interface Operation {
  operationId: string;
  tags?: string[];
  parameters?: Parameter[];
  requestBody?: { content: Record<string, Media> };
  security?: Record<string, string[]>[];
  responses: Record<string, { content?: Record<string, Media> }>;
}
interface Document {
  openapi: string;
  paths: Record<string, Record<string, Operation>>;
  components: { securitySchemes: Record<string, { type: string; scheme?: string; in?: string; name?: string }> };
}
interface Walked { method: string; path: string; op: Operation }

let tc: TestController;
let anon: WireClient;
let served: Response;
let doc: Document;
let admin: string;
let ex: Enrolled;

function operations(d: Document): Walked[] {
  return Object.entries(d.paths).flatMap(([path, item]) => Object.entries(item).map(([method, op]) => ({ method: method.toUpperCase(), path, op })));
}

/** The request bodies the document offers for an operation: its example(s), as JSON values. */
function examplesOf(op: Operation): unknown[] | undefined {
  if (!op.requestBody) return undefined;
  const media = op.requestBody.content["application/json"];
  if (!media) return [];
  if (media.example !== undefined) return [media.example];
  return Object.values(media.examples ?? {}).map((e) => e.value);
}

/** The request target from the document's parameter examples; `ids` overrides path parameters (the executor's own id). */
function targetOf(w: Walked, ids: Record<string, string> = {}): string {
  const params = w.op.parameters ?? [];
  const path = w.path.replace(/\{([^}]+)\}/g, (_m, name: string) => {
    const p = params.find((x) => x.in === "path" && x.name === name);
    const value = ids[name] ?? p?.example;
    if (value === undefined) throw new Error(`${w.method} ${w.path}: path parameter ${name} has no example`);
    return encodeURIComponent(String(value));
  });
  const query = new URLSearchParams();
  for (const p of params.filter((x) => x.in === "query")) {
    if (p.example !== undefined) query.set(p.name, String(p.example));
    else if (p.required) throw new Error(`${w.method} ${w.path}: required query parameter ${p.name} has no example`);
  }
  const q = query.toString();
  return q ? `${path}?${q}` : path;
}

function headersOf(w: Walked): Record<string, string> {
  const out: Record<string, string> = {};
  for (const p of (w.op.parameters ?? []).filter((x) => x.in === "header")) {
    if (p.example === undefined && p.required) throw new Error(`${w.method} ${w.path}: required header ${p.name} has no example`);
    if (p.example !== undefined) out[p.name] = String(p.example);
  }
  return out;
}

/** Sends one request with the credentials the operation's security names. */
async function send(w: Walked, body: unknown): Promise<Response> {
  const requirement = w.op.security?.[0] ?? {};
  if ("mutualTLS" in requirement) {
    const target = targetOf(w, { id: ex.id });
    return executorCall(ex, w.method, target, body, { jwt: "executorJwt" in requirement ? ex.jwt : null, headers: headersOf(w) });
  }
  const auth: Record<string, string> = "apiToken" in requirement ? { authorization: `Bearer ${admin}` } : {};
  return anon.send(w.method, targetOf(w), { body: body === undefined ? undefined : JSON.stringify(body), headers: { ...auth, ...headersOf(w) } });
}

/** Credentials rotate under the walk (renew, re-register): keep the executor's current ones. */
function adopt(res: Response): void {
  if (res.status !== 200 || typeof res.json?.jwt !== "string") return;
  ex.jwt = res.json.jwt;
  if (typeof res.json.epoch === "number") ex.epoch = res.json.epoch;
  if (typeof res.json.hmac_key === "string") ex.hmacKey = Buffer.from(res.json.hmac_key, "base64url");
}

beforeAll(async () => {
  tc = await startTestController();
  anon = new WireClient(tc.url, tc.caPem);
  served = await anon.send("GET", OPENAPI_PATH);
  doc = served.json as Document;
  admin = (await tc.c.ctx.apiTokens.create({ name: "openapi-walk", role: "admin" }, "test", { via: "test" })).token;
  ex = await register(tc.url, tc.caPem, await tc.createToken(), { name: "openapi-walk" });
  // Work for the walk's executor, so the long-poll example (wait_s 25) answers at once.
  await tc.c.ctx.tasks.submit({ kind: "command", payload: { argv: ["true"] } }, { via: "test" });
}, 60_000);

afterAll(async () => {
  await anon?.close();
  await ex?.client.close();
  await tc?.close();
});

describe("GET /openapi.json", () => {
  it("is an OpenAPI 3.1 document that a maintained validator accepts", async () => {
    expect(served.status).toBe(200);
    expect(String(served.headers["content-type"])).toMatch(/^application\/json/);
    expect(doc.openapi).toBe("3.1.0");
    const validator = new Validator();
    const result = await validator.validate(structuredClone(doc) as unknown as Record<string, unknown>);
    expect(result.errors, JSON.stringify(result.errors, null, 2)).toBeUndefined();
    expect(result.valid).toBe(true);
    expect(validator.version).toBe("3.1");
    // The validator does judge: the same document with a broken security scheme is refused.
    const broken = structuredClone(doc);
    broken.components.securitySchemes.mutualTLS = { type: "mutual-tls" };
    expect((await new Validator().validate(broken as unknown as Record<string, unknown>)).valid).toBe(false);
  });

  it("is identical to the checked-in docs/openapi.json", () => {
    const checkedIn = readFileSync(OPENAPI_FILE, "utf8");
    expect(served.text === checkedIn, REGENERATE).toBe(true);
  });

  it("leaves out dev and bench routes, and describes every other route the server mounts, with the security its declaration enforces", async () => {
    // The route table with dev and bench routes mounted too: the document must not change.
    const mounted: { method: string; url: string; decl: RouteDeclaration | undefined; websocket: boolean; hidden: boolean }[] = [];
    const creds = tc.c.serverCredentials();
    const app = buildServer({ ...tc.c.ctx, config: { ...tc.c.ctx.config, env: "test", bench: true } }, { key: creds.keyPem, cert: creds.certPem, ca: tc.caPem }, { logLevel: "silent" });
    app.addHook("onRoute", (r: RouteOptions) => {
      const decl = (r.config as { route?: RouteDeclaration } | undefined)?.route;
      const websocket = (r as { websocket?: boolean }).websocket === true;
      // The console's static files (/ui/) are declared public and kept out of the API description.
      const hidden = (r.config as { swaggerTransform?: unknown } | undefined)?.swaggerTransform === false;
      for (const method of [r.method].flat()) mounted.push({ method: String(method), url: r.url, decl, websocket, hidden });
    });
    await app.ready();
    const again = renderOpenapi(app.swagger());
    await app.close();
    expect(again === served.text, "the document depends on the configuration (dev/bench routes leaked in?)").toBe(true);
    expect(mounted.some((r) => r.decl?.plane === "dev")).toBe(true);

    const documented = new Map(operations(doc).map((w) => [`${w.method} ${w.path}`, w.op]));
    // Not HTTP operations of the API: HEAD twins of GET routes, dev/bench routes, the live-events WebSocket, the console's static files.
    const expected = mounted.filter((r) => r.method !== "HEAD" && r.decl?.plane !== "dev" && !r.websocket && !r.hidden);
    expect(mounted.some((r) => r.hidden && r.url.startsWith("/ui"))).toBe(true);
    const asDocumented = (url: string) => url.replace(/:([A-Za-z_]+)/g, "{$1}");
    expect([...documented.keys()].sort()).toEqual(expected.map((r) => `${r.method} ${asDocumented(r.url)}`).sort());
    for (const path of Object.keys(doc.paths)) expect(path, "dev/bench route in the document").not.toMatch(/^\/v1\/(dev|bench)\//);

    for (const r of expected) {
      const name = `${r.method} ${asDocumented(r.url)}`;
      const op = documented.get(name)!;
      const decl = r.decl!;
      expect(op.tags, name).toEqual([decl.plane]);
      if (r.url.startsWith("/api/v1/")) {
        expect(op.security, name).toEqual([{ apiToken: [decl.capability] }]);
      } else if (r.url.startsWith("/v1/executors/:id/")) {
        const jwt = (decl.guards ?? []).includes("jwt");
        expect(Object.keys(op.security?.[0] ?? {}).sort(), name).toEqual(["mutualTLS", ...HMAC_SCHEMES, ...(jwt ? ["executorJwt"] : [])].sort());
        expect(op.security, name).toHaveLength(1);
      } else {
        // Public routes and /register: no credentials.
        expect(op.security, name).toEqual([]);
      }
      // Errors in the contract's shape, with the statuses the route can answer.
      const statuses = Object.keys(op.responses);
      for (const [status, response] of Object.entries(op.responses)) {
        if (status.startsWith("2")) continue;
        expect(response.content?.["application/json"]?.schema, `${name} ${status}`).toEqual({ $ref: "#/components/schemas/Error" });
      }
      expect(statuses, name).toEqual(expect.arrayContaining(["500", "503"]));
      if (op.requestBody || op.parameters?.length) expect(statuses, name).toContain("400");
      if (decl.plane === "operator") expect(statuses, name).toEqual(expect.arrayContaining(["401", "403"]));
      if (r.url.startsWith("/v1/executors/:id/")) expect(statuses, name).toEqual(expect.arrayContaining(["401", "403", "409"]));
    }

    const schemes = doc.components.securitySchemes;
    expect(schemes.mutualTLS).toMatchObject({ type: "mutualTLS" });
    expect(schemes.executorJwt).toMatchObject({ type: "http", scheme: "bearer", bearerFormat: "JWT" });
    expect(schemes.apiToken).toMatchObject({ type: "http", scheme: "bearer" });
    expect([schemes.hmacTimestamp, schemes.hmacNonce, schemes.hmacSignature]).toMatchObject([
      { type: "apiKey", in: "header", name: "X-Tether-Timestamp" },
      { type: "apiKey", in: "header", name: "X-Tether-Nonce" },
      { type: "apiKey", in: "header", name: "X-Tether-Signature" },
    ]);
  });

  it("every request built from the document's own examples is accepted past validation (never 400)", async () => {
    const walked = operations(doc);
    expect(walked.length).toBeGreaterThan(25);
    // Operations whose example cannot succeed on this controller, and what they answer instead.
    const refusals: Record<string, number[]> = {
      activateCa: [409], // ADOPTION_INCOMPLETE: the walk's executors have not adopted the CA rotateCa prepared
      rotateJwtKey: [409], // CONFLICT: the next key has not been published for one JWT lifetime yet
    };
    const log: string[] = [];
    for (const w of walked) {
      const bodies = examplesOf(w.op);
      if (bodies) expect(bodies.length, `${w.method} ${w.path}: the request body has no example`).toBeGreaterThan(0);
      for (const body of bodies ?? [undefined]) {
        const name = `${w.method} ${w.path} (${w.op.operationId})`;
        const res = await send(w, body);
        log.push(`${name} → ${res.status}`);
        expect(res.status, `${name} was refused as invalid: ${res.text}`).not.toBe(400);
        expect(res.json?.error?.code, name).not.toBe("INVALID_REQUEST");
        adopt(res);
        // Made-up ids (a lease, a task, an API token…) are fine as 404/409: the request itself was valid.
        const madeUpIds = (w.op.parameters ?? []).some((p) => p.in === "path" && !("mutualTLS" in (w.op.security?.[0] ?? {}) && p.name === "id"));
        if (w.op.operationId === "registerExecutor") {
          // The example's enrollment token is made up; with a live one the very same body registers.
          expect(res.json?.error?.code, name).toBe("ENROLLMENT_DENIED");
          const live = await anon.send("POST", w.path, { body: JSON.stringify({ ...(body as object), enrollment_token: await tc.createToken() }) });
          expect(live.status, `${name} with a live enrollment token: ${live.text}`).toBe(201);
        } else if (refusals[w.op.operationId]) {
          expect([...refusals[w.op.operationId]!, 200, 201], `${name}: ${res.text}`).toContain(res.status);
        } else if (madeUpIds) {
          expect([200, 201, 404, 409], `${name}: ${res.text}`).toContain(res.status);
        } else {
          expect(res.status, `${name}: ${res.text}`).toBeGreaterThanOrEqual(200);
          expect(res.status, `${name}: ${res.text}`).toBeLessThan(300);
        }
      }
    }
    if (process.env.OPENAPI_WALK_LOG) console.log(log.join("\n"));
    expect(log.length).toBeGreaterThanOrEqual(walked.length);
  }, 120_000);
});
