/**
 * Guard 1 — mTLS (PROTOCOL §3.2). The certificate's identity is resolved once per
 * TLS connection; whether it is still this executor's current (or grace-window
 * previous) certificate, and whether the executor is revoked, is read from the
 * store on every request, so a revocation made by another process takes effect
 * on the very next request, keep-alive or not.
 */
import type { TLSSocket } from "node:tls";
import type { X509Certificate } from "node:crypto";
import type { FastifyRequest } from "fastify";
import { ErrorCode } from "../../../shared/errors.ts";
import { checkClientCert, type ClientCertResult } from "../../../certs/client-cert.ts";
import type { Store } from "../../store/types.ts";
import type { Audit } from "../../domain/audit.ts";
import { executorIdParam } from "../request-context.ts";
import { guardRejection } from "./reject.ts";

export interface MtlsDeps {
  store: Store;
  audit: Audit;
  trust: () => { caCerts: X509Certificate[]; trustDomain: string };
}

const perConnection = new WeakMap<TLSSocket, ClientCertResult>();

function connectionIdentity(socket: TLSSocket, deps: MtlsDeps): ClientCertResult {
  let result = perConnection.get(socket);
  if (!result) {
    const peer = typeof socket.getPeerCertificate === "function" ? socket.getPeerCertificate(false) : undefined;
    result = checkClientCert(peer?.raw, deps.trust());
    perConnection.set(socket, result);
  }
  return result;
}

export function requireMtls(deps: MtlsDeps) {
  return async function mtlsGuard(request: FastifyRequest): Promise<void> {
    const reject = (status: number, code: string, reason: string, message: string) =>
      guardRejection(deps.audit, request, status, code, reason, message);
    const CERT_REQUIRED = (reason: string) =>
      reject(401, ErrorCode.CERT_REQUIRED, reason, "a valid client certificate issued by this controller is required");

    const result = connectionIdentity(request.raw.socket as TLSSocket, deps);
    if (!result.ok) throw CERT_REQUIRED(result.reason);
    const identity = result.identity;
    const now = Date.now();
    if (identity.notAfter <= now) throw CERT_REQUIRED("expired");
    const id = executorIdParam(request.params);
    if (identity.executorId !== id) {
      throw reject(403, ErrorCode.IDENTITY_MISMATCH, `certificate of ${identity.executorId}`, "the client certificate names another executor");
    }
    const auth = await deps.store.getExecutorAuth(id);
    if (!auth) throw CERT_REQUIRED("unknown executor");
    if (auth.revoked) throw reject(401, ErrorCode.CERT_REVOKED, "executor revoked", "this executor has been revoked");
    const current = auth.certFingerprint === identity.fingerprint;
    const previousInGrace =
      auth.prevCertFingerprint === identity.fingerprint && auth.prevCertGraceUntil !== null && now < auth.prevCertGraceUntil;
    if (!current && !previousInGrace) throw CERT_REQUIRED("not the executor's current certificate");
    request.certIdentity = identity;
    request.executorAuth = auth;
  };
}
