/**
 * The HTTPS server: one listener that requests (but does not require) a client
 * certificate, JSON in and out, one error shape, and route declarations that are
 * enforced when a route is mounted — an executor route without a guard chain
 * makes the server refuse to start.
 */
import Fastify, { LogController, type FastifyInstance, type FastifyRequest, type RouteOptions, type onRequestHookHandler, type preValidationHookHandler } from "fastify";
import { pino } from "pino";
import { constants as cryptoConstants } from "node:crypto";
import type { Server as HttpsServer } from "node:https";
import { TetherError, ErrorCode } from "../../shared/errors.ts";
import { MAX_EXECUTOR_BODY_BYTES, paths } from "../../shared/protocol.ts";
import type { ControllerContext } from "../context.ts";
import type { Guard, RouteDeclaration } from "./request-context.ts";
import { requireMtls } from "./guards/mtls.ts";
import { requireJwt } from "./guards/jwt.ts";
import { requireHmac } from "./guards/hmac.ts";
import { requireApiToken } from "./guards/api-token.ts";
import { isCapability } from "../domain/capabilities.ts";
import { operatorRoutes } from "./operator-routes.ts";
import { taskRoutes } from "./task-routes.ts";
import { trustRoutes } from "./trust-routes.ts";
import { executorRoutes } from "./executor-routes.ts";
import { publicRoutes } from "./public-routes.ts";
import { uiRoutes } from "./ui-routes.ts";
import { devRoutes } from "./dev-routes.ts";
import { benchRoutes } from "./bench-routes.ts";
import { eventRoutes } from "./events-routes.ts";
import { mountOpenapi } from "./openapi.ts";
import { answerClientError, answerConnect, answerFrameworkError, answerUnknownExpectation, MAX_HEADER_BYTES, MAX_PARAM_LENGTH } from "./client-errors.ts";
import { INVALID_JSON_MESSAGE, parseJsonBody } from "./json-body.ts";
import { registerMetricsHooks } from "./metrics-hooks.ts";
import { checkNetworkBounds, limitConnections, serverTimeouts } from "./network-bounds.ts";
import { TLS_SESSION_ID_CONTEXT } from "./tls-tickets.ts";
import { gateOpenings } from "./opening-gate.ts";
import { TLS_SESSION_TIMEOUT_S } from "../domain/trust/tls-ticket-keys.ts";

export interface TlsMaterial {
  key: string;
  cert: string;
  ca: string;
}

export const LOG_REDACT_PATHS = [
  "req.headers.authorization",
  'req.headers["x-tether-signature"]',
  "*.jwt", "*.token", "*.enrollment_token", "*.hmac_key", "*.key", "*.privateKey", "*.authorization",
];

/** TLS 1.2: ECDHE with AEAD ciphers only (no CBC, no RSA key exchange). TLS 1.3 keeps OpenSSL's suites (all AEAD). */
export const TLS12_CIPHERS = [
  "ECDHE-ECDSA-AES128-GCM-SHA256", "ECDHE-ECDSA-AES256-GCM-SHA384", "ECDHE-ECDSA-CHACHA20-POLY1305",
  "ECDHE-RSA-AES128-GCM-SHA256", "ECDHE-RSA-AES256-GCM-SHA384", "ECDHE-RSA-CHACHA20-POLY1305",
].join(":");

/** Also what a server certificate renewal swaps in (controller.ts), so the policy survives it. */
export function tlsContextOptions(tls: TlsMaterial) {
  return {
    key: tls.key, cert: tls.cert, ca: tls.ca, minVersion: "TLSv1.2" as const,
    ciphers: TLS12_CIPHERS, honorCipherOrder: true,
    // A client-initiated renegotiation is refused (Node would allow 3 per 10 minutes).
    secureOptions: cryptoConstants.SSL_OP_NO_RENEGOTIATION,
    // Session resumption (tls-tickets.ts): one context on every replica and across restarts
    // (a new secure context would otherwise fall back to a hash of the command line), and
    // tickets that outlive Node's 5-minute default — a resumed connection's client
    // certificate is checked as on a full handshake (guards/mtls.ts).
    sessionIdContext: TLS_SESSION_ID_CONTEXT,
    sessionTimeout: TLS_SESSION_TIMEOUT_S,
  };
}

const EXECUTOR_SCOPED = /^\/v1\/executors\/:id(\/|$)/;
const OPERATOR_SCOPED = /^\/api(\/|$)/;
const PLANES = new Set(["executor", "operator", "public", "dev"]);

function asArray<T>(h: T | T[] | undefined): T[] {
  return h === undefined ? [] : Array.isArray(h) ? h : [h];
}

/** Rejects a body that was not valid JSON — after the guards, so unauthenticated callers learn nothing. */
async function rejectInvalidJson(request: FastifyRequest): Promise<void> {
  if (request.jsonInvalid) throw new TetherError(400, ErrorCode.INVALID_REQUEST, INVALID_JSON_MESSAGE);
}

export function buildServer(ctx: ControllerContext, tls: TlsMaterial, opts: { logLevel?: string } = {}): FastifyInstance {
  const bounds = ctx.config;
  checkNetworkBounds(bounds);
  const app = Fastify({
    https: {
      ...tlsContextOptions(tls), requestCert: true, rejectUnauthorized: false,
      ...serverTimeouts(bounds), maxHeaderSize: MAX_HEADER_BYTES,
      // Node's own bare 400 for a missing Host would bypass the error shape; no route depends on Host.
      requireHostHeader: false,
    },
    bodyLimit: MAX_EXECUTOR_BODY_BYTES,
    keepAliveTimeout: 75_000,
    requestTimeout: bounds.requestTimeoutMs,
    clientErrorHandler: answerClientError,
    frameworkErrors: answerFrameworkError,
    routerOptions: { maxParamLength: MAX_PARAM_LENGTH },
    // Per-request logs at heartbeat rates are noise; errors are still logged.
    logController: new LogController({ disableRequestLogging: true }),
    // Logs go to stderr: stdout is reserved for what a command prints (secrets, JSON).
    loggerInstance: pino(
      { level: opts.logLevel ?? "info", redact: { paths: LOG_REDACT_PATHS, censor: "[REDACTED]" } },
      pino.destination({ fd: 2, sync: true }),
    ),
    ajv: { customOptions: { coerceTypes: false, removeAdditional: false, allErrors: false } },
    // fastify's own 503 while closing has another shape; the onRequest hook below answers instead.
    return503OnClosing: false,
  });
  const server = app.server as unknown as HttpsServer;
  // First: new connections are opened a bounded number at a time, in arrival order, before anything else sees them.
  const gate = gateOpenings(server, bounds, app.log);
  limitConnections(server, bounds, app.log);
  server.on("checkExpectation", answerUnknownExpectation);
  server.on("connect", answerConnect);

  // What the parser and the guards attach to a request, declared up front so every request has one shape.
  app.decorateRequest("rawBody", undefined);
  app.decorateRequest("jsonInvalid", false);
  app.decorateRequest("executor", undefined);
  app.decorateRequest("operator", undefined);

  // Bodies are kept raw for the HMAC and parsed here; a parse failure is reported after the guards.
  app.removeAllContentTypeParsers();
  app.addContentTypeParser("*", { parseAs: "buffer" }, parseJsonBody);
  registerMetricsHooks(app, ctx.metrics); // request counts and durations, by route pattern (PROTOCOL §9.1)

  let closing = false;
  app.addHook("preClose", async () => {
    closing = true;
    gate?.close(); // queued connections are never opened; the server's close waits for every socket
  });
  app.addHook("onRequest", async () => {
    if (closing) throw new TetherError(503, ErrorCode.UNAVAILABLE, "the controller is shutting down", { headers: { "retry-after": "1", connection: "close" } });
  });

  const guards: Record<Guard, { phase: "onRequest" | "preValidation"; hook: (r: FastifyRequest) => Promise<void> }> = {
    mtls: { phase: "onRequest", hook: requireMtls(ctx) },
    jwt: { phase: "onRequest", hook: requireJwt(ctx) },
    hmac: { phase: "preValidation", hook: requireHmac(ctx) },
  };

  // Route declarations are enforced at mount time (fail closed).
  app.addHook("onRoute", (route: RouteOptions) => {
    const decl = (route.config as { route?: RouteDeclaration } | undefined)?.route;
    const name = `${String(route.method)} ${route.url}`;
    if (!decl) throw new Error(`route ${name} declares no plane`);
    if (!PLANES.has(decl.plane)) throw new Error(`route ${name} declares an unknown plane "${String(decl.plane)}"`);
    if (decl.plane !== "operator" && OPERATOR_SCOPED.test(route.url)) throw new Error(`route ${name} is under /api but not on the operator plane`);
    if (decl.plane !== "operator" && decl.capability !== undefined) throw new Error(`route ${name} declares a capability but is not on the operator plane`);
    if (decl.plane === "executor") {
      if (route.url === paths.register) route.bodyLimit ??= bounds.registerBodyLimitBytes;
      const chain = decl.guards ?? [];
      if (EXECUTOR_SCOPED.test(route.url) && (!chain.includes("mtls") || !chain.includes("hmac"))) {
        throw new Error(`executor route ${name} must declare its guard chain (mtls and hmac at least)`);
      }
      const onRequest = chain.filter((g) => guards[g].phase === "onRequest").map((g) => guards[g].hook);
      const preValidation = chain.filter((g) => guards[g].phase === "preValidation").map((g) => guards[g].hook);
      route.onRequest = [...onRequest, ...asArray(route.onRequest)] as onRequestHookHandler[];
      route.preValidation = [...preValidation, rejectInvalidJson, ...asArray(route.preValidation)] as preValidationHookHandler[];
    } else if (decl.plane === "operator") {
      // Operator plane: an API token whose role holds the declared capability (controller/domain/capabilities.ts).
      if (!route.url.startsWith("/api/v1/")) throw new Error(`operator route ${name} must live under /api/v1/`);
      if (decl.guards?.length) throw new Error(`operator route ${name} declares executor guards`);
      if (!isCapability(decl.capability)) {
        throw new Error(`operator route ${name} must declare a known capability (got ${decl.capability === undefined ? "none" : `"${decl.capability}"`})`);
      }
      const guard = requireApiToken(ctx, decl.capability);
      let first: (r: FastifyRequest) => Promise<void> = guard;
      if (decl.auth === "in-band") {
        // Authenticates in its first frame (PROTOCOL §10.1): only a WebSocket route may, and a plain HTTP request to it still meets the guard.
        if ((route as { websocket?: boolean }).websocket !== true) throw new Error(`operator route ${name} authenticates in-band but is not a WebSocket route`);
        first = async function apiTokenGuardUnlessUpgrade(request: FastifyRequest) {
          if (!request.ws) await guard(request);
        };
      } else if (decl.auth !== undefined) {
        throw new Error(`operator route ${name} declares an unknown authentication "${String(decl.auth)}"`);
      }
      route.onRequest = [first, ...asArray(route.onRequest)] as onRequestHookHandler[];
      route.preValidation = [rejectInvalidJson, ...asArray(route.preValidation)] as preValidationHookHandler[];
    } else {
      if (EXECUTOR_SCOPED.test(route.url)) throw new Error(`route ${name} is under an executor path but not on the executor plane`);
      route.preValidation = [rejectInvalidJson, ...asArray(route.preValidation)] as preValidationHookHandler[];
    }
  });

  app.setErrorHandler((err: unknown, request, reply) => {
    if (err instanceof TetherError) {
      if (err.headers) reply.headers(err.headers);
      return reply.code(err.status).send(err.toWire());
    }
    const e = err as { validation?: unknown; code?: string; statusCode?: number; message?: string };
    if (e.validation) {
      return reply.code(400).send({ error: { code: ErrorCode.INVALID_REQUEST, message: e.message ?? "invalid request" } });
    }
    if (e.code === "FST_ERR_CTP_BODY_TOO_LARGE") {
      // Closed after the answer: the rest of the body is not worth reading.
      const limit = request.routeOptions.bodyLimit ?? MAX_EXECUTOR_BODY_BYTES;
      return reply.code(413).header("connection", "close").send({ error: { code: ErrorCode.PAYLOAD_TOO_LARGE, message: `the body exceeds ${limit} bytes` } });
    }
    if (e.statusCode && e.statusCode >= 400 && e.statusCode < 500) {
      return reply.code(e.statusCode).send({ error: { code: ErrorCode.INVALID_REQUEST, message: e.message ?? "invalid request" } });
    }
    request.log.error({ err }, "request failed");
    return reply.code(500).send({ error: { code: ErrorCode.INTERNAL, message: "internal error" } });
  });
  app.setNotFoundHandler((request, reply) =>
    reply.code(404).send({ error: { code: ErrorCode.NOT_FOUND, message: `no route ${request.method} ${request.url.split("?")[0]}` } }),
  );

  mountOpenapi(app); // first: the generator must see every route mounted after it
  app.register(async (scope) => publicRoutes(scope, ctx));
  app.register(async (scope) => uiRoutes(scope)); // the console (PROTOCOL §10.2)
  app.register(async (scope) => executorRoutes(scope, ctx));
  app.register(async (scope) => operatorRoutes(scope, ctx));
  app.register(async (scope) => taskRoutes(scope, ctx));
  app.register(async (scope) => trustRoutes(scope, ctx));
  app.register(async (scope) => eventRoutes(scope, ctx));
  if (ctx.config.env !== "production") app.register(async (scope) => devRoutes(scope, ctx));
  if (ctx.config.bench) {
    // Bench-only baseline route: never in production, whatever the caller asked for.
    if (ctx.config.env === "production") throw new Error("bench routes are refused in production (TETHER_ENV=development|test or --dev)");
    app.register(async (scope) => benchRoutes(scope, ctx));
  }
  return app as unknown as FastifyInstance;
}
