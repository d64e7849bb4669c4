/**
 * The guard chain's domain side (PROTOCOL §3.2): fetches what the rules in
 * executor-auth.ts judge — the executor's row, its HMAC key, the verified JWT — and
 * records the nonce once everything else passed. Knows nothing of HTTP: the guards
 * hand it what they read from the request and map a rejection's code to a response.
 */
import type { ClientCertIdentity } from "../../certs/client-cert.ts";
import { NONCE_RETENTION_MS, verifySignature, type SignedRequest } from "../../shared/hmac.ts";
import type { ExecutorAuthState, Store } from "../store/types.ts";
import {
  ACCEPT, acceptedHmacKeys, checkBearerShape, checkEpoch, checkExecutorCertificate, checkPresentedCertificate, checkSignatureHeaders, checkTimestamp,
  reject, type ExecutorClaims, type Rejection, type SignatureHeaders, type Verdict,
} from "./executor-auth.ts";
import type { ExecutorJwt } from "./jwt.ts";

/** What the mTLS step established, and the token claims once the JWT step passed. */
export interface AuthenticatedExecutor {
  identity: ClientCertIdentity;
  auth: ExecutorAuthState;
  /** The previous certificate, inside its grace window, was presented. */
  viaPrevious: boolean;
  claims?: ExecutorClaims;
}

export type AuthStore = Pick<Store, "getExecutorAuth" | "getHmacKeys" | "rememberNonce" | "confirmCertificate">;

export class ExecutorAuthenticator {
  constructor(
    private readonly store: AuthStore,
    private readonly jwt: ExecutorJwt,
  ) {}

  /**
   * Step 1, on every request: the connection's certificate names the path's executor,
   * and the store (read now, so a revocation by another process counts at once) still
   * takes it as that executor's current certificate, or its previous one in grace.
   */
  async certificate(
    identity: ClientCertIdentity,
    pathExecutorId: string,
    nowMs: number,
  ): Promise<{ ok: true; executor: AuthenticatedExecutor } | Rejection> {
    const presented = checkPresentedCertificate(identity, pathExecutorId, nowMs);
    if (!presented.ok) return presented;
    const current = checkExecutorCertificate(await this.store.getExecutorAuth(pathExecutorId), identity.fingerprint, nowMs);
    if (!current.ok) return current;
    const { auth, previous } = current;
    if (!previous && !auth.certConfirmed) {
      // The first request with a rotated certificate: from now on only it may rotate again.
      await this.store.confirmCertificate(auth.id, identity.fingerprint);
      auth.certConfirmed = true;
    }
    // `claims` is set by the JWT step; declared now so the object keeps one shape.
    return { ok: true, executor: { identity, auth, viaPrevious: previous, claims: undefined } };
  }

  /** Step 2: a JWT bound to the connection's certificate, for this executor, of its current epoch. */
  token(bearer: string | undefined, who: AuthenticatedExecutor, nowMs: number): { ok: true; claims: ExecutorClaims } | Rejection {
    const shape = checkBearerShape(bearer);
    if (!shape.ok) return shape;
    const check = this.jwt.verify(shape.token, { sub: who.auth.id, thumbprint: who.identity.fingerprint }, nowMs);
    if (!check.ok) return check;
    const epoch = checkEpoch(check.claims, who.auth);
    return epoch.ok ? check : epoch;
  }

  /**
   * Step 3: the request signature over the exact bytes received, in the time window,
   * with a nonce this executor never used. The nonce is recorded only after the
   * signature verified, so a forged request cannot burn a legitimate nonce.
   */
  async signature(request: Omit<SignedRequest, "timestamp" | "nonce">, headers: SignatureHeaders, nowMs: number): Promise<Verdict> {
    const shape = checkSignatureHeaders(headers);
    if (!shape.ok) return shape;
    const { timestamp, nonce, signature } = shape.headers;
    const window = checkTimestamp(Number(timestamp), nowMs);
    if (!window.ok) return window;
    const keys = await this.store.getHmacKeys(request.executorId);
    // One object literal of fixed shape (not a spread): this runs on every executor request.
    const signed = { method: request.method, target: request.target, executorId: request.executorId, timestamp, nonce, body: request.body };
    if (!keys || !acceptedHmacKeys(keys, nowMs).some((key) => verifySignature(key, signed, signature))) {
      return reject("SIGNATURE_INVALID", "signature mismatch");
    }
    if (!(await this.store.rememberNonce(request.executorId, nonce, nowMs + NONCE_RETENTION_MS))) return reject("NONCE_REPLAY", "nonce reused");
    return ACCEPT;
  }
}
