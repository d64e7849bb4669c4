/** Public routes (PROTOCOL §4): trust bundle, JWKS, health. */
import type { FastifyInstance } from "fastify";
import type { ControllerContext } from "../context.ts";

export async function publicRoutes(app: FastifyInstance, ctx: ControllerContext): Promise<void> {
  const config = { route: { plane: "public" as const } };
  app.get("/v1/ca/bundle.pem", { config }, async (_request, reply) =>
    reply.type("application/x-pem-file").send(ctx.executors.trustBundlePem()),
  );
  app.get(
    "/.well-known/jwks.json",
    {
      config,
      schema: {
        response: {
          200: {
            type: "object",
            properties: {
              keys: {
                type: "array",
                items: {
                  type: "object",
                  properties: { kty: { type: "string" }, crv: { type: "string" }, x: { type: "string" }, kid: { type: "string" }, alg: { type: "string" }, use: { type: "string" } },
                },
              },
            },
          },
        },
      },
    },
    async () => ({ keys: [ctx.jwtKey.publicJwk] }),
  );
  app.get(
    "/healthz",
    { config, schema: { response: { 200: { type: "object", properties: { status: { type: "string" } } } } } },
    async () => ({ status: "ok" }),
  );
}
