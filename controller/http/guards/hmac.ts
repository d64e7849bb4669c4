/**
 * Guard 3 — the request signature (PROTOCOL §3.2), verified with the one signer
 * in shared/hmac.ts. The nonce is recorded only after the signature verifies, so
 * a request rejected for its signature does not consume its nonce.
 */
import type { FastifyRequest } from "fastify";
import { ErrorCode } from "../../../shared/errors.ts";
import {
  HEADER_NONCE, HEADER_SIGNATURE, HEADER_TIMESTAMP, MAX_SKEW_MS, NONCE_RETENTION_MS,
  isValidNonce, isValidTimestamp, verifySignature,
} from "../../../shared/hmac.ts";
import { rfc3339 } from "../../../shared/time.ts";
import type { Store } from "../../store/types.ts";
import type { Audit } from "../../domain/audit.ts";
import { executorIdParam } from "../request-context.ts";
import { guardRejection } from "./reject.ts";

export interface HmacDeps {
  store: Store;
  audit: Audit;
}

function header(request: FastifyRequest, name: string): string | undefined {
  const v = request.headers[name];
  return typeof v === "string" ? v : undefined;
}

export function requireHmac(deps: HmacDeps) {
  return async function hmacGuard(request: FastifyRequest): Promise<void> {
    const invalid = (reason: string) =>
      guardRejection(deps.audit, request, 401, ErrorCode.SIGNATURE_INVALID, reason, "missing or invalid request signature");
    const timestamp = header(request, HEADER_TIMESTAMP);
    const nonce = header(request, HEADER_NONCE);
    const signature = header(request, HEADER_SIGNATURE);
    if (!timestamp || !nonce || !signature) throw invalid("missing signature headers");
    if (!isValidTimestamp(timestamp)) throw invalid("malformed timestamp");
    if (!isValidNonce(nonce)) throw invalid("malformed nonce");
    const now = Date.now();
    const skew = now - Number(timestamp);
    if (Math.abs(skew) > MAX_SKEW_MS) {
      throw guardRejection(
        deps.audit, request, 401, ErrorCode.CLOCK_SKEW, `skew ${skew} ms`,
        "the request timestamp is too far from the server's clock", { server_time: rfc3339(now) },
      );
    }
    const executorId = executorIdParam(request.params);
    const key = await deps.store.getHmacKey(executorId);
    const signed = {
      method: request.method, target: request.raw.url ?? request.url, executorId, timestamp, nonce, body: request.rawBody,
    };
    if (!key || !verifySignature(key, signed, signature)) throw invalid("signature mismatch");
    if (!(await deps.store.rememberNonce(executorId, nonce, now + NONCE_RETENTION_MS))) {
      throw guardRejection(deps.audit, request, 409, ErrorCode.NONCE_REPLAY, "nonce reused", "this nonce was already used");
    }
  };
}
