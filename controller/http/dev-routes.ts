/**
 * Development-only routes. Mounted only when TETHER_ENV is development or test;
 * absent (404) in production. Same creation code as the real path, audited.
 */
import type { FastifyInstance } from "fastify";
import type { TypeBoxTypeProvider } from "@fastify/type-provider-typebox";
import { operatorRouteSchemas } from "../../shared/wire/operator.ts";
import type { ControllerContext } from "../context.ts";

export async function devRoutes(scope: FastifyInstance, ctx: ControllerContext): Promise<void> {
  const app = scope.withTypeProvider<TypeBoxTypeProvider>();
  app.post(
    "/v1/dev/enrollment-tokens",
    { config: { route: { plane: "dev" } }, schema: { body: operatorRouteSchemas.createEnrollmentToken.body } },
    async (request, reply) => {
      const body = request.body ?? {};
      const created = await ctx.enrollment.create(
        { ttlSeconds: body.ttl_s, maxUses: body.max_uses, labels: body.labels },
        { via: "dev-route", source: request.ip },
      );
      return reply.code(201).send(created);
    },
  );
}
