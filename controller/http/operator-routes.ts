/**
 * The operator plane (PROTOCOL §5): thin handlers over the domain services. Every
 * route declares the capability it needs; the server attaches the API-token guard
 * from that declaration (and refuses to start without one).
 */
import type { FastifyInstance, FastifyRequest } from "fastify";
import { TetherError, ErrorCode } from "../../shared/errors.ts";
import type { ControllerContext } from "../context.ts";
import { operatorActor, type CreateApiToken } from "../domain/api-tokens.ts";
import { AUDIT_DEFAULT_LIMIT, AUDIT_MAX_LIMIT, readAuditEvents } from "../domain/audit-reader.ts";
import { capabilitiesOf, type Capability } from "../domain/capabilities.ts";
import { rfc3339 } from "../../shared/time.ts";
import {
  auditSchema, createApiTokenSchema, createEnrollmentTokenSchema, executorActionSchema, listApiTokensSchema,
  listEnrollmentTokensSchema, listExecutorsSchema, revokeApiTokenSchema, revokeEnrollmentTokenSchema,
  showExecutorSchema, whoamiSchema,
} from "./operator-schemas.ts";

export const route = (capability: Capability) => ({ route: { plane: "operator" as const, capability } });

/** Audit fields of an operator request: the API token (id, name, role) as actor, and the source address. */
export function who(request: FastifyRequest) {
  return { ...operatorActor(request.operator!), source: request.ip };
}

export function idParam(request: FastifyRequest): string {
  return (request.params as { id: string }).id;
}

export async function operatorRoutes(app: FastifyInstance, ctx: ControllerContext): Promise<void> {
  app.get("/api/v1/whoami", { config: route("self:read"), schema: whoamiSchema }, async (request) => {
    const p = request.operator!;
    return {
      id: p.tokenId, name: p.name, role: p.role, capabilities: capabilitiesOf(p.role),
      expires_at: p.expiresAt === null ? null : rfc3339(p.expiresAt),
    };
  });

  // ---- enrollment tokens
  app.post("/api/v1/enrollment-tokens", { config: route("enrollment_tokens:write"), schema: createEnrollmentTokenSchema }, async (request, reply) => {
    const body = (request.body ?? {}) as { ttl_s?: number; max_uses?: number; labels?: Record<string, string> };
    const created = await ctx.enrollment.create({ ttlSeconds: body.ttl_s, maxUses: body.max_uses, labels: body.labels }, who(request));
    return reply.code(201).send(created);
  });

  app.get("/api/v1/enrollment-tokens", { config: route("enrollment_tokens:read"), schema: listEnrollmentTokensSchema }, async () => ({
    enrollment_tokens: await ctx.enrollment.list(),
  }));

  app.delete("/api/v1/enrollment-tokens/:id", { config: route("enrollment_tokens:write"), schema: revokeEnrollmentTokenSchema }, async (request) => {
    const id = idParam(request);
    if (!(await ctx.enrollment.revoke(id, who(request)))) {
      throw new TetherError(404, ErrorCode.NOT_FOUND, `no active enrollment token ${id}`);
    }
    return { id, revoked: true };
  });

  // ---- executors
  app.get("/api/v1/executors", { config: route("executors:read"), schema: listExecutorsSchema }, async () => ({
    executors: await ctx.executors.list(),
  }));

  app.get("/api/v1/executors/:id", { config: route("executors:read"), schema: showExecutorSchema }, async (request) =>
    ctx.executors.show(idParam(request)),
  );

  app.post("/api/v1/executors/:id/revoke", { config: route("executors:revoke"), schema: executorActionSchema }, async (request) =>
    ctx.executors.revoke(idParam(request), who(request)),
  );

  app.post("/api/v1/executors/:id/drain", { config: route("executors:drain"), schema: executorActionSchema }, async (request) =>
    ctx.executors.setDrain(idParam(request), true, who(request)),
  );

  // ---- API tokens
  app.post("/api/v1/tokens", { config: route("api_tokens:write"), schema: createApiTokenSchema }, async (request, reply) => {
    const body = request.body as { name: string; role: CreateApiToken["role"]; ttl_s?: number };
    const created = await ctx.apiTokens.create(
      { name: body.name, role: body.role, ttlSeconds: body.ttl_s },
      `api_token:${request.operator!.tokenId}`,
      who(request),
    );
    return reply.code(201).send(created);
  });

  app.get("/api/v1/tokens", { config: route("api_tokens:read"), schema: listApiTokensSchema }, async () => ({
    tokens: await ctx.apiTokens.list(),
  }));

  app.delete("/api/v1/tokens/:id", { config: route("api_tokens:write"), schema: revokeApiTokenSchema }, async (request) => {
    const id = idParam(request);
    if (!(await ctx.apiTokens.revoke(id, who(request)))) throw new TetherError(404, ErrorCode.NOT_FOUND, `no active API token ${id}`);
    return { id, revoked: true };
  });

  // ---- audit
  app.get("/api/v1/audit", { config: route("audit:read"), schema: auditSchema }, async (request) => {
    const q = request.query as { since?: string; limit?: string };
    const since = q.since === undefined ? undefined : Date.parse(q.since);
    if (since !== undefined && !Number.isFinite(since)) throw new TetherError(400, ErrorCode.INVALID_REQUEST, "since must be an RFC 3339 time");
    const limit = q.limit === undefined ? AUDIT_DEFAULT_LIMIT : Number(q.limit);
    if (!Number.isInteger(limit) || limit < 1 || limit > AUDIT_MAX_LIMIT) throw new TetherError(400, ErrorCode.INVALID_REQUEST, `limit must be between 1 and ${AUDIT_MAX_LIMIT}`);
    return { events: await readAuditEvents(ctx.config.dataDir, { since, limit }) };
  });
}
