/**
 * Development-only routes. Mounted only when TETHER_ENV is development or test;
 * absent (404) in production. Same creation code as the real path, audited.
 */
import type { FastifyInstance } from "fastify";
import type { ControllerContext } from "../context.ts";

export async function devRoutes(app: FastifyInstance, ctx: ControllerContext): Promise<void> {
  app.post(
    "/v1/dev/enrollment-tokens",
    {
      config: { route: { plane: "dev" } },
      schema: {
        body: {
          anyOf: [
            { type: "null" },
            {
              type: "object",
              properties: {
                ttl_s: { type: "integer", minimum: 1, maximum: 31536000 },
                max_uses: { type: "integer", minimum: 1, maximum: 1000000 },
                labels: { type: "object", additionalProperties: { type: "string" } },
              },
            },
          ],
        },
      },
    },
    async (request, reply) => {
      const body = (request.body ?? {}) as { ttl_s?: number; max_uses?: number; labels?: Record<string, string> };
      const created = await ctx.enrollment.create(
        { ttlSeconds: body.ttl_s, maxUses: body.max_uses, labels: body.labels },
        { via: "dev-route", source: request.ip },
      );
      return reply.code(201).send(created);
    },
  );
}
