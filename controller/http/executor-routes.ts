/** The executor plane (PROTOCOL §3): thin handlers over the ExecutorService. */
import type { FastifyInstance, FastifyRequest } from "fastify";
import { TetherError, ErrorCode } from "../../shared/errors.ts";
import type { HeartbeatRequest, LeaseCompleteRequest, LeaseFailRequest, LeasesRequest, RegisterRequest, RenewRequest } from "../../shared/protocol.ts";
import type { ControllerContext } from "../context.ts";
import { heartbeatSchema, leaseCompleteSchema, leaseFailSchema, leasesSchema, registerSchema, renewSchema, reregisterSchema } from "./schemas.ts";
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
    async (request) => {
      const body = request.body as HeartbeatRequest;
      const auth = request.executorAuth!;
      const cancel = await ctx.tasks.onHeartbeat(auth.id, auth.epoch, body.leases);
      return ctx.executors.heartbeat(auth, request.jwtClaims!, body, cancel);
    },
  );

  const fullChain = { route: { plane: "executor" as const, guards: ["mtls", "jwt", "hmac"] as ("mtls" | "jwt" | "hmac")[] } };

  app.post("/v1/executors/:id/leases", { schema: leasesSchema, config: fullChain }, async (request, reply) => {
    const body = request.body as LeasesRequest;
    const auth = request.executorAuth!;
    // A long poll ends early when the executor goes away.
    const gone = new AbortController();
    reply.raw.once("close", () => gone.abort());
    return { leases: await ctx.tasks.lease(auth.id, auth.epoch, body.max, body.wait_s, gone.signal) };
  });

  app.post("/v1/executors/:id/leases/:lease_id/complete", { schema: leaseCompleteSchema, config: fullChain }, async (request) => {
    const auth = request.executorAuth!;
    await ctx.tasks.complete(auth.id, auth.epoch, (request.params as { lease_id: string }).lease_id, (request.body as LeaseCompleteRequest).result);
    return {};
  });

  app.post("/v1/executors/:id/leases/:lease_id/fail", { schema: leaseFailSchema, config: fullChain }, async (request) => {
    const auth = request.executorAuth!;
    const body = request.body as LeaseFailRequest;
    await ctx.tasks.fail(auth.id, auth.epoch, (request.params as { lease_id: string }).lease_id, body.error, body.retryable);
    return {};
  });
}
