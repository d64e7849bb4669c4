import type { FastifyRequest } from "fastify";
import { TetherError } from "../../../shared/errors.ts";
import type { Audit } from "../../domain/audit.ts";
import { executorIdParam } from "../request-context.ts";

/** Every guard rejection is audited with its code, the executor id and the source address. */
export function guardRejection(
  audit: Audit,
  request: FastifyRequest,
  status: number,
  code: string,
  reason: string,
  message: string,
  details?: Record<string, unknown>,
): TetherError {
  audit.event("guard.rejected", {
    code, reason, executor_id: executorIdParam(request.params), source: request.ip,
    method: request.method, path: request.routeOptions.url,
  });
  return new TetherError(status, code, message, { details });
}
