/**
 * The operator-plane guard (PROTOCOL §5): `Authorization: Bearer tet_pat_…`, checked
 * against the database on every request, then the route's declared capability
 * against the token's role. Every authentication failure — missing, garbage,
 * unknown, expired, revoked, an executor JWT, an enrollment token, a connection
 * that presents a client certificate — gets the same 401 body; the reason goes to
 * the audit log only. A role without the capability gets 403 FORBIDDEN.
 */
import type { TLSSocket } from "node:tls";
import type { FastifyRequest } from "fastify";
import { ErrorCode, TetherError } from "../../../shared/errors.ts";
import type { Audit } from "../../domain/audit.ts";
import { operatorActor, type ApiTokens, type AuthFailure } from "../../domain/api-tokens.ts";
import { roleHas } from "../../domain/capabilities.ts";
import type { Capability } from "../../../shared/wire/operator.ts";
import type { ControllerMetrics } from "../../metrics/metrics.ts";

export interface ApiTokenDeps {
  apiTokens: ApiTokens;
  audit: Audit;
  metrics: Pick<ControllerMetrics, "guardRejection">;
}

export const UNAUTHENTICATED_MESSAGE = "auth failure";
const BEARER = /^Bearer +([^\s]+) *$/i;

export function unauthenticated(): TetherError {
  return new TetherError(401, ErrorCode.UNAUTHENTICATED, UNAUTHENTICATED_MESSAGE, {
    headers: { "www-authenticate": 'Bearer realm="tether"' },
  });
}

/** Whether the TLS connection carries a client certificate: an executor's connection, never an operator's. */
const certOnConnection = new WeakMap<TLSSocket, boolean>();
function presentsClientCert(request: FastifyRequest): boolean {
  const socket = request.raw.socket as TLSSocket;
  if (typeof socket?.getPeerCertificate !== "function") return false;
  let has = certOnConnection.get(socket);
  if (has === undefined) {
    const peer = socket.getPeerCertificate(false);
    has = !!peer && !!peer.raw && peer.raw.length > 0;
    certOnConnection.set(socket, has);
  }
  return has;
}

export function requireApiToken(deps: ApiTokenDeps, capability: Capability) {
  return async function apiTokenGuard(request: FastifyRequest): Promise<void> {
    const where = { source: request.ip, method: request.method, path: request.routeOptions.url };
    // Anyone can fail here: aggregated per source, reason and token (controller/domain/audit-aggregate.ts).
    const fail = (reason: AuthFailure | "client_certificate", tokenId?: string) => {
      deps.metrics.guardRejection(ErrorCode.UNAUTHENTICATED);
      deps.audit.rejected("operator.auth_failed", { source: request.ip, reason, ...(tokenId ? { token_id: tokenId } : {}) }, {
        method: request.method, path: request.routeOptions.url,
      });
      return unauthenticated();
    };
    if (presentsClientCert(request)) throw fail("client_certificate");
    const header = request.headers.authorization;
    let presented: string | undefined;
    if (typeof header === "string" && header !== "") {
      const m = BEARER.exec(header);
      if (!m) throw fail("malformed");
      presented = m[1];
    }
    const result = await deps.apiTokens.authenticate(presented, request.ip);
    if (!result.ok) throw fail(result.reason, result.tokenId);
    const p = result.principal;
    if (!roleHas(p.role, capability)) {
      deps.metrics.guardRejection(ErrorCode.FORBIDDEN);
      deps.audit.event("operator.forbidden", { token_id: p.tokenId, capability, ...operatorActor(p), ...where });
      throw new TetherError(403, ErrorCode.FORBIDDEN, `the ${p.role} role does not allow ${capability}`);
    }
    request.operator = p;
  };
}
