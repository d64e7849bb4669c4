/**
 * A guard-chain rejection (a domain verdict) as the request's answer: counted by its code
 * (tether_guard_rejections_total: every rejection of the chain passes here), audited with
 * its code, reason and source — aggregated, since anyone can cause one
 * (domain/audit-aggregate.ts) — and the path's executor id only when it is a well-formed
 * one (the raw path never), then mapped by the domain's one table.
 */
import type { FastifyRequest } from "fastify";
import type { TetherError } from "../../../shared/errors.ts";
import { rejectionError, type Rejection } from "../../domain/executor-auth.ts";
import type { Audit } from "../../domain/audit.ts";
import { isExecutorId } from "../../../shared/ids.ts";
import { executorIdParam } from "../request-context.ts";
import type { ControllerMetrics } from "../../metrics/metrics.ts";

export interface RejectionDeps {
  audit: Audit;
  metrics: Pick<ControllerMetrics, "guardRejection">;
}

export function guardRejection(deps: RejectionDeps, request: FastifyRequest, r: Rejection, details?: Record<string, unknown>): TetherError {
  const id = executorIdParam(request.params);
  deps.metrics.guardRejection(r.code);
  deps.audit.rejected("guard.rejected", { source: request.ip, code: r.code, reason: r.reason }, {
    ...(isExecutorId(id) ? { executor_id: id } : {}), method: request.method, path: request.routeOptions.url,
  });
  return rejectionError(r, details);
}
