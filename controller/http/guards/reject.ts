/**
 * The one mapping from a guard-chain rejection (a domain verdict code) to its HTTP
 * answer. Every rejection is audited with its code, reason, executor id and source.
 */
import type { FastifyRequest } from "fastify";
import { TetherError } from "../../../shared/errors.ts";
import type { AuthCode, Rejection } from "../../domain/executor-auth.ts";
import type { Audit } from "../../domain/audit.ts";
import { executorIdParam } from "../request-context.ts";

const RESPONSES: Readonly<Record<AuthCode, { status: number; message: string }>> = {
  CERT_REQUIRED: { status: 401, message: "a valid client certificate issued by this controller is required" },
  IDENTITY_MISMATCH: { status: 403, message: "the client certificate names another executor" },
  CERT_REVOKED: { status: 401, message: "this executor has been revoked" },
  TOKEN_INVALID: { status: 401, message: "missing or invalid executor token" },
  TOKEN_EXPIRED: { status: 401, message: "the executor token has expired; renew it" },
  EPOCH_MISMATCH: { status: 401, message: "the token is from an older epoch; re-register" },
  CLOCK_SKEW: { status: 401, message: "the request timestamp is too far from the server's clock" },
  SIGNATURE_INVALID: { status: 401, message: "missing or invalid request signature" },
  NONCE_REPLAY: { status: 409, message: "this nonce was already used" },
};

export function guardRejection(audit: Audit, request: FastifyRequest, r: Rejection, details?: Record<string, unknown>): TetherError {
  audit.event("guard.rejected", {
    code: r.code, reason: r.reason, executor_id: executorIdParam(request.params), source: request.ip,
    method: request.method, path: request.routeOptions.url,
  });
  const { status, message } = RESPONSES[r.code];
  return new TetherError(status, r.code, message, { details });
}
