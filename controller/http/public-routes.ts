/** Public routes (PROTOCOL §4): trust bundle, revocation lists, JWKS, health and readiness. */
import type { FastifyInstance } from "fastify";
import type { TypeBoxTypeProvider } from "@fastify/type-provider-typebox";
import { publicRouteSchemas as schemas } from "../../shared/wire/public.ts";
import { BUNDLE_VERSION_HEADER, paths } from "../../shared/protocol.ts";
import type { ControllerContext } from "../context.ts";
import { storeUnavailable } from "../store/unavailable.ts";

export async function publicRoutes(scope: FastifyInstance, ctx: ControllerContext): Promise<void> {
  const app = scope.withTypeProvider<TypeBoxTypeProvider>();
  const config = { route: { plane: "public" as const } };
  // The bundle and its version from one snapshot of the CA set.
  app.get(paths.caBundle, { config }, async (_request, reply) =>
    reply.type("application/x-pem-file").header(BUNDLE_VERSION_HEADER, String(ctx.cas.version())).send(ctx.cas.bundlePem()),
  );
  // One CRL per CA of the bundle (PROTOCOL §7.5); revocations by any process are in the next answer.
  app.get(paths.caCrl, { config }, async (_request, reply) =>
    reply.type("application/x-pem-file").header("cache-control", "no-cache").send(await ctx.cas.crlPem()),
  );
  app.get("/.well-known/jwks.json", { config, schema: schemas.jwks }, async () => ({ keys: ctx.jwtKeys.jwks() }));
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
