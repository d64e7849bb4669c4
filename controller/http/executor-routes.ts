/** The executor plane (PROTOCOL §3): thin handlers over the ExecutorService. */
import type { FastifyInstance, FastifyRequest } from "fastify";
import { TetherError, ErrorCode } from "../../shared/errors.ts";
import type { HeartbeatRequest, RegisterRequest, RenewRequest } from "../../shared/protocol.ts";
import type { ControllerContext } from "../context.ts";
import { heartbeatSchema, registerSchema, renewSchema, reregisterSchema } from "./schemas.ts";
import { executorIdParam } from "./request-context.ts";

const who = (request: FastifyRequest) => ({ source: request.ip });

export async function executorRoutes(app: FastifyInstance, ctx: ControllerContext): Promise<void> {
  app.post("/v1/executors/register", { schema: registerSchema, config: { route: { plane: "executor" } } }, async (request, reply) => {
    const retryAfter = ctx.registerLimiter.take(request.ip);
    if (retryAfter > 0) {
      ctx.audit.event("register.rate_limited", { source: request.ip });
      throw new TetherError(429, ErrorCode.RATE_LIMITED, "too many registrations from this address", {
        headers: { "retry-after": String(retryAfter) },
      });
    }
    const res = await ctx.executors.register(request.body as RegisterRequest, who(request));
    return reply.code(201).send(res);
  });

  app.post(
    "/v1/executors/:id/renew",
    { schema: renewSchema, config: { route: { plane: "executor", guards: ["mtls", "hmac"] } } },
    async (request) => {
      const body = request.body as RenewRequest;
      return ctx.executors.renew(executorIdParam(request.params), request.certIdentity!.fingerprint, body.csr_pem, who(request));
    },
  );

  app.post(
    "/v1/executors/:id/reregister",
    { schema: reregisterSchema, config: { route: { plane: "executor", guards: ["mtls", "hmac"] } } },
    async (request) => {
      const body = request.body as RenewRequest;
      return ctx.executors.reregister(executorIdParam(request.params), request.certIdentity!.fingerprint, body.csr_pem, who(request));
    },
  );

  app.post(
    "/v1/executors/:id/heartbeat",
    { schema: heartbeatSchema, config: { route: { plane: "executor", guards: ["mtls", "jwt", "hmac"] } } },
    async (request) => ctx.executors.heartbeat(request.executorAuth!, request.jwtClaims!, request.body as HeartbeatRequest),
  );
}
