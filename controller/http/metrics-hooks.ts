/**
 * Request counts and durations (tether_http_requests_total, tether_http_request_duration_seconds,
 * PROTOCOL §9.1) in one onResponse hook for every route. The `route` label is the route's
 * pattern as declared (`/v1/executors/:id/heartbeat`), never the raw path, so no executor
 * id, lease id or anything a client typed becomes a label; a request that matched no
 * route is "unmatched". Not registered at all when metrics are off.
 */
import type { FastifyInstance } from "fastify";
import type { ControllerMetrics } from "../metrics/metrics.ts";

export const UNMATCHED_ROUTE = "unmatched";

/** Any fastify instance (the server's is typed by its HTTPS server and pino logger). */
type AnyFastify = FastifyInstance<any, any, any, any, any>;

export function registerMetricsHooks(app: AnyFastify, metrics: ControllerMetrics): void {
  if (!metrics.enabled) return;
  app.addHook("onResponse", (request, reply, done) => {
    // routeOptions.url is undefined in the not-found handler.
    metrics.httpRequest(request.routeOptions.url ?? UNMATCHED_ROUTE, reply.statusCode, reply.elapsedTime / 1000);
    done();
  });
}
