/**
 * Benchmark-only routes (`tether controller start --bench`, see bench/). Mounted
 * only when the controller was started with the bench flag in development/test;
 * never in production (buildServer refuses the combination), and absent (404)
 * otherwise.
 *
 * `POST /v1/bench/bare` is the bare-TLS baseline of the heartbeat benchmark: the
 * same listener, the same keep-alive mTLS connections, the same body parser and
 * the same response serializer and size as `POST /v1/executors/{id}/heartbeat`,
 * but no guard chain, no validation and no store access — so the ratio of the two
 * is the cost of the guard chain and the heartbeat itself.
 */
import type { FastifyInstance } from "fastify";
import { rfc3339 } from "../../shared/time.ts";
import type { ControllerContext } from "../context.ts";
import { executorRouteSchemas } from "../../shared/wire/executor.ts";

export const BENCH_BARE_PATH = "/v1/bench/bare";

export async function benchRoutes(app: FastifyInstance, ctx: ControllerContext): Promise<void> {
  app.post(BENCH_BARE_PATH, { config: { route: { plane: "dev" } }, schema: { response: executorRouteSchemas.heartbeat.response } }, async () => {
    const now = Date.now();
    return {
      server_time: rfc3339(now),
      next_heartbeat_s: ctx.config.heartbeatIntervalSeconds,
      jwt_renew_after: rfc3339(now),
      cert_renew_after: rfc3339(now),
      drain: false,
      cancel_leases: [],
      trust_bundle_version: ctx.executors.trustBundleVersion(),
    };
  });
}
