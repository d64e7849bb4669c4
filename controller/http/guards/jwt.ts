/** Guard 2 — the executor JWT (PROTOCOL §3.2): reads the bearer value; the authenticator judges it. */
import type { FastifyRequest } from "fastify";
import type { Audit } from "../../domain/audit.ts";
import type { ExecutorAuthenticator } from "../../domain/executor-authenticator.ts";
import { executorOf } from "../request-context.ts";
import { guardRejection, type RejectionDeps } from "./reject.ts";

export interface JwtDeps extends RejectionDeps {
  auth: ExecutorAuthenticator;
  audit: Audit;
}

export function requireJwt(deps: JwtDeps) {
  return async function jwtGuard(request: FastifyRequest): Promise<void> {
    const who = executorOf(request);
    const header = request.headers.authorization;
    const bearer = header?.startsWith("Bearer ") ? header.slice(7).trim() : undefined;
    const result = deps.auth.token(bearer, who, Date.now());
    if (!result.ok) throw guardRejection(deps, request, result);
    who.claims = result.claims;
  };
}
