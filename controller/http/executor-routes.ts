/** The executor plane (PROTOCOL §3): each handler reads the request and makes one domain call. */
import type { FastifyInstance, FastifyRequest } from "fastify";
import type { TypeBoxTypeProvider } from "@fastify/type-provider-typebox";
import { TetherError, ErrorCode } from "../../shared/errors.ts";
import { executorRouteSchemas as schemas } from "../../shared/wire/executor.ts";
import type { ControllerContext } from "../context.ts";
import type { Guard } from "./request-context.ts";
import { executorOf, tokenHolderOf } from "./request-context.ts";

const who = (request: FastifyRequest) => ({ source: request.ip });
const chain = (...guards: Guard[]) => ({ route: { plane: "executor" as const, guards } });
/** mTLS + HMAC: renew and re-register work with a lapsed JWT. */
const certAndSignature = chain("mtls", "hmac");
const fullChain = chain("mtls", "jwt", "hmac");

export async function executorRoutes(scope: FastifyInstance, ctx: ControllerContext): Promise<void> {
  const app = scope.withTypeProvider<TypeBoxTypeProvider>();

  app.post("/v1/executors/register", { schema: schemas.register, config: { route: { plane: "executor" } } }, async (request, reply) => {
    const retryAfter = ctx.registerLimiter.take(request.ip);
    if (retryAfter > 0) {
      ctx.audit.rejected("register.rate_limited", { source: request.ip });
      throw new TetherError(429, ErrorCode.RATE_LIMITED, "too many registrations from this address", {
        headers: { "retry-after": String(retryAfter) },
      });
    }
    return reply.code(201).send(await ctx.executors.register(request.body, who(request)));
  });

  app.post("/v1/executors/:id/renew", { schema: schemas.renew, config: certAndSignature }, async (request) =>
    ctx.executors.renew(executorOf(request), request.body.csr_pem, who(request)),
  );

  app.post("/v1/executors/:id/reregister", { schema: schemas.reregister, config: certAndSignature }, async (request) =>
    ctx.executors.reregister(executorOf(request), request.body.csr_pem, who(request)),
  );

  app.post("/v1/executors/:id/heartbeat", { schema: schemas.heartbeat, config: fullChain }, async (request) =>
    ctx.executors.heartbeat(tokenHolderOf(request), request.body),
  );

  app.post("/v1/executors/:id/leases", { schema: schemas.leases, config: fullChain }, async (request, reply) => {
    const { auth } = tokenHolderOf(request);
    // A long poll ends early when the executor goes away.
    const gone = new AbortController();
    reply.raw.once("close", () => gone.abort());
    return { leases: await ctx.tasks.lease(auth.id, auth.epoch, request.body.max, request.body.wait_s, gone.signal) };
  });

  app.post("/v1/executors/:id/leases/:lease_id/complete", { schema: schemas.leaseComplete, config: fullChain }, async (request) => {
    const { auth } = tokenHolderOf(request);
    await ctx.tasks.complete(auth.id, auth.epoch, request.params.lease_id, request.body.result);
    return {};
  });

  app.post("/v1/executors/:id/leases/:lease_id/fail", { schema: schemas.leaseFail, config: fullChain }, async (request) => {
    const { auth } = tokenHolderOf(request);
    await ctx.tasks.fail(auth.id, auth.epoch, request.params.lease_id, request.body.error, request.body.retryable);
    return {};
  });
}
