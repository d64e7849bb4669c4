/**
 * Guard 2 — the executor JWT (PROTOCOL §3.2): signature (cached once verified),
 * claims, binding to the connection's certificate, then the epoch from the store.
 */
import type { FastifyRequest } from "fastify";
import { ErrorCode } from "../../../shared/errors.ts";
import type { Audit } from "../../domain/audit.ts";
import type { ExecutorJwt } from "../../domain/jwt.ts";
import { executorIdParam } from "../request-context.ts";
import { guardRejection } from "./reject.ts";

export interface JwtDeps {
  audit: Audit;
  jwt: ExecutorJwt;
}

export function requireJwt(deps: JwtDeps) {
  return async function jwtGuard(request: FastifyRequest): Promise<void> {
    const invalid = (reason: string) =>
      guardRejection(deps.audit, request, 401, ErrorCode.TOKEN_INVALID, reason, "missing or invalid executor token");
    const identity = request.certIdentity;
    const auth = request.executorAuth;
    if (!identity || !auth) throw invalid("jwt guard mounted without mtls");
    const header = request.headers.authorization;
    if (!header || !header.startsWith("Bearer ")) throw invalid("no bearer token");
    const token = header.slice(7).trim();
    if (token.startsWith("tet_")) throw invalid("API or enrollment token on an executor route");
    const check = deps.jwt.verify(token, { sub: executorIdParam(request.params), certFingerprint: identity.fingerprint });
    if (!check.ok) {
      if (check.code === "TOKEN_EXPIRED") {
        throw guardRejection(deps.audit, request, 401, ErrorCode.TOKEN_EXPIRED, check.reason, "the executor token has expired; renew it");
      }
      throw invalid(check.reason);
    }
    if (check.claims.epoch !== auth.epoch) {
      throw guardRejection(
        deps.audit, request, 401, ErrorCode.EPOCH_MISMATCH, `token epoch ${check.claims.epoch}, current ${auth.epoch}`,
        "the token is from an older epoch; re-register",
      );
    }
    request.jwtClaims = check.claims;
  };
}
