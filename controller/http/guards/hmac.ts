/**
 * Guard 3 — the request signature (PROTOCOL §3.2): reads the three headers, the exact
 * request target and the raw body bytes; the authenticator verifies them with the one
 * signer in shared/hmac.ts and records the nonce.
 */
import type { FastifyRequest } from "fastify";
import { HEADER_NONCE, HEADER_SIGNATURE, HEADER_TIMESTAMP } from "../../../shared/hmac.ts";
import { rfc3339 } from "../../../shared/time.ts";
import type { Audit } from "../../domain/audit.ts";
import type { ExecutorAuthenticator } from "../../domain/executor-authenticator.ts";
import { executorIdParam } from "../request-context.ts";
import { guardRejection, type RejectionDeps } from "./reject.ts";

export interface HmacDeps extends RejectionDeps {
  auth: ExecutorAuthenticator;
  audit: Audit;
}

function header(request: FastifyRequest, name: string): string | undefined {
  const v = request.headers[name];
  return typeof v === "string" ? v : undefined;
}

export function requireHmac(deps: HmacDeps) {
  return async function hmacGuard(request: FastifyRequest): Promise<void> {
    const now = Date.now();
    const verdict = await deps.auth.signature(
      { method: request.method, target: request.raw.url ?? request.url, executorId: executorIdParam(request.params), body: request.rawBody },
      { timestamp: header(request, HEADER_TIMESTAMP), nonce: header(request, HEADER_NONCE), signature: header(request, HEADER_SIGNATURE) },
      now,
    );
    if (!verdict.ok) {
      throw guardRejection(deps, request, verdict, verdict.code === "CLOCK_SKEW" ? { server_time: rfc3339(now) } : undefined);
    }
  };
}
