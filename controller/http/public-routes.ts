/** Public routes (PROTOCOL §4): trust bundle, JWKS, health and readiness. */
import type { FastifyInstance } from "fastify";
import type { TypeBoxTypeProvider } from "@fastify/type-provider-typebox";
import { publicRouteSchemas as schemas } from "../../shared/wire/public.ts";
import type { ControllerContext } from "../context.ts";
import { storeUnavailable } from "../store/unavailable.ts";

export async function publicRoutes(scope: FastifyInstance, ctx: ControllerContext): Promise<void> {
  const app = scope.withTypeProvider<TypeBoxTypeProvider>();
  const config = { route: { plane: "public" as const } };
  app.get("/v1/ca/bundle.pem", { config }, async (_request, reply) =>
    reply.type("application/x-pem-file").send(ctx.executors.trustBundlePem()),
  );
  app.get("/.well-known/jwks.json", { config, schema: schemas.jwks }, async () => ({ keys: [ctx.jwtKey.publicJwk] }));
  app.get("/healthz", { config, schema: schemas.healthz }, async () => ({ status: "ok" }));
  // Ready while the store answers: it can be read and its write lock taken. Anything else is 503 UNAVAILABLE.
  app.get("/readyz", { config, schema: schemas.healthz }, async () => {
    try {
      await ctx.store.ping();
    } catch (e) {
      throw storeUnavailable(e);
    }
    return { status: "ready" };
  });
}
