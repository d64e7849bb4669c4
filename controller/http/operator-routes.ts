/**
 * The operator plane (PROTOCOL §5): thin handlers over the domain services. Every
 * route declares the capability it needs; the server attaches the API-token guard
 * from that declaration (and refuses to start without one).
 */
import type { FastifyInstance, FastifyRequest } from "fastify";
import type { TypeBoxTypeProvider } from "@fastify/type-provider-typebox";
import { TetherError, ErrorCode } from "../../shared/errors.ts";
import { rfc3339 } from "../../shared/time.ts";
import { AUDIT_DEFAULT_LIMIT, AUDIT_MAX_LIMIT, operatorRouteSchemas as schemas, type Capability } from "../../shared/wire/operator.ts";
import type { ControllerContext } from "../context.ts";
import { operatorActor } from "../domain/api-tokens.ts";
import { readAuditEvents } from "../domain/audit-reader.ts";
import { capabilitiesOf } from "../domain/capabilities.ts";
import { operatorOf } from "./request-context.ts";

export const route = (capability: Capability) => ({ route: { plane: "operator" as const, capability } });

/** Audit fields of an operator request: the API token (id, name, role) as actor, and the source address. */
export function who(request: FastifyRequest) {
  return { ...operatorActor(operatorOf(request)), source: request.ip };
}

export async function operatorRoutes(scope: FastifyInstance, ctx: ControllerContext): Promise<void> {
  const app = scope.withTypeProvider<TypeBoxTypeProvider>();

  app.get("/api/v1/whoami", { config: route("self:read"), schema: schemas.whoami }, async (request) => {
    const p = operatorOf(request);
    return {
      id: p.tokenId, name: p.name, role: p.role, capabilities: capabilitiesOf(p.role),
      expires_at: p.expiresAt === null ? null : rfc3339(p.expiresAt),
    };
  });

  // ---- enrollment tokens
  app.post("/api/v1/enrollment-tokens", { config: route("enrollment_tokens:write"), schema: schemas.createEnrollmentToken }, async (request, reply) => {
    const body = request.body ?? {};
    const created = await ctx.enrollment.create({ ttlSeconds: body.ttl_s, maxUses: body.max_uses, labels: body.labels }, who(request));
    return reply.code(201).send(created);
  });

  app.get("/api/v1/enrollment-tokens", { config: route("enrollment_tokens:read"), schema: schemas.listEnrollmentTokens }, async () => ({
    enrollment_tokens: await ctx.enrollment.list(),
  }));

  app.delete("/api/v1/enrollment-tokens/:id", { config: route("enrollment_tokens:write"), schema: schemas.revokeEnrollmentToken }, async (request) => {
    const { id } = request.params;
    if (!(await ctx.enrollment.revoke(id, who(request)))) {
      throw new TetherError(404, ErrorCode.NOT_FOUND, `no active enrollment token ${id}`);
    }
    return { id, revoked: true };
  });

  // ---- executors
  app.get("/api/v1/executors", { config: route("executors:read"), schema: schemas.listExecutors }, async () => ({
    executors: await ctx.executors.list(),
  }));

  app.get("/api/v1/executors/:id", { config: route("executors:read"), schema: schemas.showExecutor }, async (request) =>
    ctx.executors.show(request.params.id),
  );

  app.post("/api/v1/executors/:id/revoke", { config: route("executors:revoke"), schema: schemas.executorAction }, async (request) =>
    ctx.executors.revoke(request.params.id, who(request)),
  );

  app.post("/api/v1/executors/:id/drain", { config: route("executors:drain"), schema: schemas.executorAction }, async (request) =>
    ctx.executors.setDrain(request.params.id, true, who(request)),
  );

  // ---- API tokens
  app.post("/api/v1/tokens", { config: route("api_tokens:write"), schema: schemas.createApiToken }, async (request, reply) => {
    const { name, role, ttl_s } = request.body;
    const created = await ctx.apiTokens.create({ name, role, ttlSeconds: ttl_s }, `api_token:${operatorOf(request).tokenId}`, who(request));
    return reply.code(201).send(created);
  });

  app.get("/api/v1/tokens", { config: route("api_tokens:read"), schema: schemas.listApiTokens }, async () => ({
    tokens: await ctx.apiTokens.list(),
  }));

  app.delete("/api/v1/tokens/:id", { config: route("api_tokens:write"), schema: schemas.revokeApiToken }, async (request) => {
    const { id } = request.params;
    if (!(await ctx.apiTokens.revoke(id, who(request)))) throw new TetherError(404, ErrorCode.NOT_FOUND, `no active API token ${id}`);
    return { id, revoked: true };
  });

  // ---- audit
  app.get("/api/v1/audit", { config: route("audit:read"), schema: schemas.audit }, async (request) => {
    const q = request.query;
    const since = q.since === undefined ? undefined : Date.parse(q.since);
    if (since !== undefined && !Number.isFinite(since)) throw new TetherError(400, ErrorCode.INVALID_REQUEST, "since must be an RFC 3339 time");
    const limit = q.limit === undefined ? AUDIT_DEFAULT_LIMIT : Number(q.limit);
    if (!Number.isInteger(limit) || limit < 1 || limit > AUDIT_MAX_LIMIT) throw new TetherError(400, ErrorCode.INVALID_REQUEST, `limit must be between 1 and ${AUDIT_MAX_LIMIT}`);
    return { events: await readAuditEvents(ctx.config.dataDir, { since, limit }) };
  });
}
