/**
 * Guard 1 — mTLS (PROTOCOL §3.2). The certificate's chain and identity are checked
 * once per TLS connection (certs/client-cert.ts; the verdict on a certificate is kept
 * while the trust set is unchanged, its validity period checked each time); whether it is still this executor's
 * certificate, and whether the executor is revoked, is the authenticator's to decide
 * on every request, so a revocation made by another process applies to the very next
 * request, keep-alive or not.
 */
import type { TLSSocket } from "node:tls";
import type { X509Certificate } from "node:crypto";
import type { FastifyRequest } from "fastify";
import { ClientCertChecker, type ClientCertResult } from "../../../certs/client-cert.ts";
import type { Audit } from "../../domain/audit.ts";
import { reject } from "../../domain/executor-auth.ts";
import type { ExecutorAuthenticator } from "../../domain/executor-authenticator.ts";
import { executorIdParam } from "../request-context.ts";
import { guardRejection, type RejectionDeps } from "./reject.ts";

export interface MtlsDeps extends RejectionDeps {
  auth: ExecutorAuthenticator;
  audit: Audit;
  trust: () => { caCerts: X509Certificate[]; trustDomain: string };
}

const perConnection = new WeakMap<TLSSocket, ClientCertResult>();

function connectionIdentity(socket: TLSSocket, deps: MtlsDeps, checker: ClientCertChecker): ClientCertResult {
  let result = perConnection.get(socket);
  if (!result) {
    const peer = typeof socket.getPeerCertificate === "function" ? socket.getPeerCertificate(false) : undefined;
    result = checker.check(peer?.raw, deps.trust());
    perConnection.set(socket, result);
  }
  return result;
}

export function requireMtls(deps: MtlsDeps) {
  // A reconnecting executor's certificate is not parsed and verified again while the trust set is the same.
  const checker = new ClientCertChecker();
  return async function mtlsGuard(request: FastifyRequest): Promise<void> {
    const conn = connectionIdentity(request.raw.socket as TLSSocket, deps, checker);
    if (!conn.ok) throw guardRejection(deps, request, reject("CERT_REQUIRED", conn.reason));
    const result = await deps.auth.certificate(conn.identity, executorIdParam(request.params), Date.now());
    if (!result.ok) throw guardRejection(deps, request, result);
    request.executor = result.executor;
  };
}
