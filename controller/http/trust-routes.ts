/**
 * The trust routes of the operator plane (PROTOCOL §5, §7): the CA set with adoption and
 * the JWT key ring; CA rotation (prepare) and activation, gated on adoption.
 */
import type { FastifyInstance } from "fastify";
import type { TypeBoxTypeProvider } from "@fastify/type-provider-typebox";
import { operatorRouteSchemas as schemas } from "../../shared/wire/operator.ts";
import type { ControllerContext } from "../context.ts";
import { trustStatus } from "../domain/trust/status.ts";
import { route, who } from "./operator-routes.ts";

export async function trustRoutes(scope: FastifyInstance, ctx: ControllerContext): Promise<void> {
  const app = scope.withTypeProvider<TypeBoxTypeProvider>();

  app.get("/api/v1/ca", { config: route("trust:read"), schema: schemas.trustStatus }, async () => trustStatus(ctx.cas, ctx.jwtKeys));

  // 201 with the prepared CA; 409 CONFLICT while one is prepared already.
  app.post("/api/v1/ca/rotate", { config: route("trust:write"), schema: schemas.rotateCa }, async (request, reply) =>
    reply.code(201).send(await ctx.cas.prepare(who(request))),
  );

  // 200 with the activated CA (the server certificate is already re-issued); 409 ADOPTION_INCOMPLETE
  // with `pending` (the executors that do not hold it yet) unless `force`; 409 CONFLICT with nothing prepared.
  app.post("/api/v1/ca/activate", { config: route("trust:write"), schema: schemas.activateCa }, async (request) =>
    ctx.cas.activate({ force: request.body?.force === true }, who(request)),
  );

  // 201 with the ring after next → active; 409 CONFLICT with Retry-After while the next key has not
  // been published for one JWT lifetime (PROTOCOL §7.3: it must be in the JWKS that long before it signs).
  app.post("/api/v1/jwt-keys/rotate", { config: route("trust:write"), schema: schemas.rotateJwtKey }, async (request, reply) =>
    reply.code(201).send({ jwt_keys: await ctx.jwtKeys.rotate(who(request)) }),
  );
}
