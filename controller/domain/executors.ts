/**
 * Executor lifecycle: registration against an enrollment token, credential
 * renewal, re-registration (epoch + 1), heartbeats and revocation. Knows nothing
 * of HTTP; failures are TetherErrors with the wire code of PROTOCOL §3.
 */
import { randomBytes } from "node:crypto";
import { TetherError, ErrorCode } from "../../shared/errors.ts";
import { CERT_GRACE_MS, renewAt } from "../../shared/protocol.ts";
import type { HeartbeatRequest, HeartbeatResponse, RegisterRequest, RegisterResponse, RenewResponse } from "../../shared/wire/executor.ts";
import type { ExecutorView } from "../../shared/wire/operator.ts";
import type { CertThumbprint } from "../../shared/fingerprint.ts";
import { randomB64u } from "../../shared/random.ts";
import { rfc3339 } from "../../shared/time.ts";
import { CsrError, parseAndVerifyCsr, type ParsedCsr } from "../../certs/csr.ts";
import { issueExecutorCert, type IssuedCert } from "../../certs/profiles.ts";
import type { Ca } from "../../certs/ca.ts";
import type { IssuedCertificate } from "../store/trust-types.ts";
import type { ExecutorAuthState, ExecutorRecord, Store, TokenDenyReason } from "../store/types.ts";
import type { Audit, AuditFields } from "./audit.ts";
import { hashEnrollmentToken } from "./enrollment.ts";
import type { ExecutorJwt } from "./jwt.ts";
import type { AuthenticatedExecutor } from "./executor-authenticator.ts";
import { checkMayRotate, rejectionError, type ExecutorClaims } from "./executor-auth.ts";
import type { LeaseLedger } from "./lease-ledger.ts";
import { executorLiveness, notSuspectSince, offlineBefore } from "./liveness.ts";
import { noMetrics, type ControllerMetrics, type RegistrationResult } from "../metrics/metrics.ts";
import type { ExecutorCounts } from "../store/counts.ts";
import { noEvents, type EventSink } from "./events.ts";
import type { ExecutorLiveness } from "../../shared/wire/operator.ts";


/** What the executor lifecycle needs from the CA set (controller/domain/trust/ca-set.ts). */
export interface ExecutorTrust {
  bundlePem(): string;
  version(): number;
  active(): { id: string; ca: Ca };
  recordIssued(c: IssuedCertificate): Promise<void>;
  /** When an executor whose certificate came from `certCaId` must renew to move to the active CA; undefined when it is on it. */
  renewDeadline(executorId: string, certCaId: string | null): number | undefined;
}

/** An executor certificate and the CA that issued it. */
type IssuedExecutorCert = IssuedCert & { caId: string };

export interface ExecutorSettings {
  trustDomain: string;
  certTtlSeconds: number;
  jwtTtlSeconds: number;
  heartbeatIntervalSeconds: number;
}

const ENROLLMENT_DENIED = () => new TetherError(401, ErrorCode.ENROLLMENT_DENIED, "enrollment denied");

/** How a failed registration ended, for tether_registrations_total{result}. */
function registrationResult(e: unknown): RegistrationResult {
  if (!(e instanceof TetherError)) return "error";
  if (e.code === ErrorCode.ENROLLMENT_DENIED) return "denied";
  if (e.code === ErrorCode.INVALID_CSR) return "invalid_csr";
  if (e.code === ErrorCode.UNAVAILABLE) return "unavailable";
  return "error";
}

/** The source address of a request's audit fields ("local" for in-process callers). */
const sourceOf = (who: AuditFields): string => (typeof who.source === "string" ? who.source : "local");

export class ExecutorService {
  constructor(
    private readonly store: Store,
    private readonly audit: Audit,
    private readonly trust: ExecutorTrust,
    private readonly jwt: ExecutorJwt,
    private readonly settings: ExecutorSettings,
    private readonly leases: LeaseLedger,
    private readonly metrics: ControllerMetrics = noMetrics,
    private readonly events: EventSink = noEvents,
  ) {}

  /**
   * The liveness each executor was last reported with on the event bus (PROTOCOL §10.1),
   * so `executor.status` is sent on a change only. Per process; filled by registrations,
   * heartbeats and `sweepLiveness`.
   */
  private readonly lastStatus = new Map<string, ExecutorLiveness>();

  private statusSeen(id: string, status: ExecutorLiveness, drain?: boolean, now = Date.now()): void {
    const previous = this.lastStatus.get(id) ?? null;
    this.lastStatus.set(id, status);
    if (previous !== null && previous !== status) this.events.emit("executor.status", { executor_id: id, status, previous, ...(drain === undefined ? {} : { drain }) }, now);
  }

  /**
   * Status changes that happen by time (suspect, offline: liveness.ts) are found here:
   * the server calls it periodically (controller/http/events-routes.ts). The first sweep
   * only learns the statuses; later ones publish the changes.
   */
  async sweepLiveness(now = Date.now()): Promise<void> {
    const seen = new Set<string>();
    for (const e of await this.store.listExecutors()) {
      seen.add(e.id);
      const status = executorLiveness(e, this.settings.heartbeatIntervalSeconds * 1000, now);
      this.statusSeen(e.id, status, undefined, now);
    }
    for (const id of this.lastStatus.keys()) if (!seen.has(id)) this.lastStatus.delete(id);
  }

  /** Every CA of the trust bundle, PEM (PROTOCOL §7.1). */
  trustBundlePem(): string {
    return this.trust.bundlePem();
  }

  /** The version of trustBundlePem() (PROTOCOL §7.1). */
  trustBundleVersion(): number {
    return this.trust.version();
  }

  view(e: ExecutorRecord, now = Date.now()): ExecutorView {
    return {
      id: e.id, name: e.name, epoch: e.epoch, status: executorLiveness(e, this.settings.heartbeatIntervalSeconds * 1000, now), labels: e.labels, capacity: e.capacity,
      cert_expires_at: rfc3339(e.certExpiresAt), last_seen_at: e.lastSeenAt === null ? null : rfc3339(e.lastSeenAt),
      revoked: e.revokedAt !== null, drain: e.drain, created_at: rfc3339(e.createdAt),
    };
  }

  async list(): Promise<ExecutorView[]> {
    const now = Date.now();
    return (await this.store.listExecutors()).map((e) => this.view(e, now));
  }

  async show(id: string): Promise<ExecutorView> {
    const e = await this.store.getExecutor(id);
    if (!e) throw new TetherError(404, ErrorCode.NOT_FOUND, `no executor ${id}`);
    return this.view(e);
  }

  /** Executors by the liveness `view()` reports, counted by the store in one query (metrics, PROTOCOL §9.1). */
  counts(now = Date.now()): Promise<ExecutorCounts> {
    const intervalMs = this.settings.heartbeatIntervalSeconds * 1000;
    return this.store.executorCounts({ suspectBefore: notSuspectSince(intervalMs, now), offlineBefore: offlineBefore(intervalMs, now) });
  }

  /** A registration, counted by how it ended (tether_registrations_total). */
  async register(req: RegisterRequest, who: AuditFields): Promise<RegisterResponse> {
    try {
      const res = await this.registerOnce(req, who);
      this.metrics.registration("success");
      return res;
    } catch (e) {
      this.metrics.registration(registrationResult(e));
      throw e;
    }
  }

  private async registerOnce(req: RegisterRequest, who: AuditFields): Promise<RegisterResponse> {
    const now = Date.now();
    const deny = (reason: TokenDenyReason | "malformed", tokenId?: string) => {
      // Anyone can provoke this: counted per source and reason, not one line per request.
      this.audit.rejected("enrollment.denied", { source: sourceOf(who), reason }, { ...(tokenId ? { token_id: tokenId } : {}), ...who });
      return ENROLLMENT_DENIED();
    };
    const tokenHash = hashEnrollmentToken(req.enrollment_token);
    if (!tokenHash) throw deny("malformed");
    // Cheap check first, so a bad token costs no certificate issuance.
    const check = await this.store.checkEnrollmentToken(tokenHash, now);
    if (!check.ok) throw deny(check.reason);
    const csr = await this.parseCsr(req.csr_pem, who);
    const id = "ex_" + randomB64u(12);
    const cert = await this.issue(id, csr);
    const hmacKey = randomBytes(32);
    const labels = { ...(req.labels ?? {}), ...check.token.labels };
    const enrolled = await this.store.enrollExecutor(tokenHash, {
      id, name: req.name ?? id, labels, capacity: req.capacity ?? 1,
      certFingerprint: cert.fingerprint, certIssuedAt: now, certExpiresAt: cert.notAfter.getTime(),
      hmacKey, now, certCaId: cert.caId,
    });
    // Lost a race for the token's last use: the certificate is discarded unused.
    if (!enrolled.ok) throw deny(enrolled.reason, check.token.id);
    this.audit.event("enrollment_token.used", { token_id: enrolled.tokenId, executor_id: id, ...who });
    this.audit.event("executor.registered", { executor_id: id, name: req.name ?? id, key_type: csr.keyAlg, cert_serial: cert.serialHex, ...who });
    this.lastStatus.set(id, "ready");
    this.events.emit("executor.registered", { executor_id: id, name: req.name ?? id, labels, epoch: 1, status: "ready" }, now);
    const { jwt, claims } = this.jwt.mint(id, 1, cert.fingerprint, now);
    return {
      executor_id: id, epoch: 1, certificate_pem: cert.pem, ca_bundle_pem: this.trustBundlePem(), trust_bundle_version: this.trustBundleVersion(),
      cert_expires_at: rfc3339(cert.notAfter), jwt, jwt_expires_at: rfc3339(claims.exp * 1000),
      hmac_key: hmacKey.toString("base64url"), heartbeat_interval_s: this.settings.heartbeatIntervalSeconds,
    };
  }

  /**
   * New JWT for the current epoch; with a CSR also a new certificate, and the one
   * presented stays accepted for the grace window.
   */
  async renew(caller: AuthenticatedExecutor, csrPem: string | undefined, who: AuditFields): Promise<RenewResponse> {
    const id = caller.auth.id;
    if (csrPem !== undefined) this.mayRotate(caller, who);
    const e = await this.mustGet(id);
    // A new certificate comes with a new HMAC key (PROTOCOL §7.4).
    const res = await this.credentials(e, caller.identity.fingerprint, csrPem, e.epoch, who, csrPem !== undefined);
    this.audit.event("executor.renewed", { executor_id: id, epoch: e.epoch, cert_rotated: csrPem !== undefined, ...who });
    return res;
  }

  /** epoch + 1 after an executor restart; work held under the old epoch is released. */
  async reregister(caller: AuthenticatedExecutor, csrPem: string | undefined, who: AuditFields): Promise<RenewResponse> {
    const id = caller.auth.id;
    this.mayRotate(caller, who);
    const e = await this.mustGet(id);
    const csr = csrPem === undefined ? undefined : await this.parseCsr(csrPem, { executor_id: id, ...who });
    const epoch = await this.store.bumpEpoch(id);
    // Re-registering is a sign of life: the executor is ready again.
    await this.store.recordHeartbeat(id, "ready", Date.now());
    this.statusSeen(id, "ready");
    await this.leases.epochChanged(id, epoch);
    // Every re-registration gets a new HMAC key (PROTOCOL §7.4).
    const res = await this.credentials({ ...e, epoch }, caller.identity.fingerprint, csr, epoch, who, true);
    this.audit.event("executor.reregistered", { executor_id: id, old_epoch: epoch - 1, epoch, cert_rotated: csr !== undefined, ...who });
    return res;
  }

  /**
   * One heartbeat, one call: the leases it lists are extended (those the executor must
   * stop come back in `cancel_leases`), the executor is seen now with the status it
   * reports, and the answer carries the renewal hints and the drain flag.
   */
  async heartbeat(who: AuthenticatedExecutor & { claims: ExecutorClaims }, hb: HeartbeatRequest, now = Date.now()): Promise<HeartbeatResponse> {
    const { auth, claims } = who;
    const cancel = await this.leases.heartbeat(auth.id, auth.epoch, hb.leases, now);
    await this.store.recordHeartbeat(auth.id, hb.status, now, hb.trust_bundle_version);
    this.statusSeen(auth.id, hb.status, auth.drain, now);
    return {
      server_time: rfc3339(now),
      next_heartbeat_s: this.settings.heartbeatIntervalSeconds,
      jwt_renew_after: rfc3339(renewAt(claims.iat * 1000, claims.exp * 1000)),
      cert_renew_after: rfc3339(this.certRenewAfter(auth)),
      drain: auth.drain,
      cancel_leases: cancel,
      trust_bundle_version: this.trustBundleVersion(),
    };
  }

  async revoke(id: string, who: AuditFields): Promise<ExecutorView> {
    await this.mustGet(id);
    if (await this.store.revokeExecutor(id, Date.now())) {
      this.audit.event("executor.revoked", { executor_id: id, ...who });
      this.lastStatus.set(id, "revoked");
      this.events.emit("executor.revoked", { executor_id: id });
      await this.leases.revoked(id);
    }
    return this.show(id);
  }

  async setDrain(id: string, drain: boolean, who: AuditFields): Promise<ExecutorView> {
    await this.mustGet(id);
    await this.store.setDrain(id, drain);
    this.audit.event(drain ? "executor.drained" : "executor.undrained", { executor_id: id, ...who });
    const view = await this.show(id);
    // The drain flag is news even before the executor reports "draining" in its next heartbeat.
    const previous = this.lastStatus.get(id) ?? null;
    this.lastStatus.set(id, view.status);
    this.events.emit("executor.status", { executor_id: id, status: view.status, previous, drain });
    return view;
  }

  /** Renewing with a CSR and re-registering rotate credentials: the current certificate's right (executor-auth.ts). */
  private mayRotate(caller: AuthenticatedExecutor, who: AuditFields): void {
    const verdict = checkMayRotate(caller);
    if (verdict.ok) return;
    this.audit.event("credentials.rotation_refused", { executor_id: caller.auth.id, code: verdict.code, reason: verdict.reason, ...who });
    this.metrics.guardRejection(verdict.code);
    throw rejectionError(verdict);
  }

  private async credentials(
    e: ExecutorRecord,
    presentedFingerprint: CertThumbprint,
    csr: string | ParsedCsr | undefined,
    epoch: number,
    who: AuditFields,
    rotateHmacKey: boolean,
  ): Promise<RenewResponse> {
    const now = Date.now();
    let fingerprint = presentedFingerprint;
    let certExpiresAt = e.certExpiresAt;
    let newCert: IssuedExecutorCert | undefined;
    if (csr !== undefined) {
      const parsed = typeof csr === "string" ? await this.parseCsr(csr, { executor_id: e.id, ...who }) : csr;
      newCert = await this.issue(e.id, parsed);
      await this.store.rotateCertificate(e.id, {
        certFingerprint: newCert.fingerprint, certIssuedAt: now, certExpiresAt: newCert.notAfter.getTime(),
        prevCertGraceUntil: now + CERT_GRACE_MS, certCaId: newCert.caId,
      });
      fingerprint = newCert.fingerprint;
      certExpiresAt = newCert.notAfter.getTime();
    }
    // The old key stays accepted for the grace window: requests in flight, and a daemon
    // that crashed before it saved the new one, still pass.
    const hmacKey = rotateHmacKey ? randomBytes(32) : undefined;
    if (hmacKey) await this.store.rotateHmacKey(e.id, hmacKey, now + CERT_GRACE_MS);
    // The token is bound to the certificate the executor will use next.
    const { jwt, claims } = this.jwt.mint(e.id, epoch, fingerprint, now);
    return {
      epoch, jwt, jwt_expires_at: rfc3339(claims.exp * 1000), cert_expires_at: rfc3339(certExpiresAt),
      ca_bundle_pem: this.trustBundlePem(), trust_bundle_version: this.trustBundleVersion(),
      ...(newCert ? { certificate_pem: newCert.pem } : {}),
      ...(hmacKey ? { hmac_key: hmacKey.toString("base64url") } : {}),
    };
  }

  private async parseCsr(pem: string, who: AuditFields): Promise<ParsedCsr> {
    try {
      return parseAndVerifyCsr(pem);
    } catch (e) {
      if (!(e instanceof CsrError)) throw e;
      this.audit.rejected("csr.rejected", { source: sourceOf(who), reason: e.message }, who);
      throw new TetherError(400, ErrorCode.INVALID_CSR, "the CSR could not be parsed, uses an unsupported key type, or its signature does not verify");
    }
  }

  /**
   * A certificate from the active CA, recorded (serial, CA, executor, notAfter) before it
   * is handed out: for the CRLs, and so its CA stays in the bundle while it is valid.
   */
  private async issue(id: string, csr: ParsedCsr): Promise<IssuedExecutorCert> {
    const active = this.trust.active();
    const cert = await issueExecutorCert(active.ca, {
      executorId: id, trustDomain: this.settings.trustDomain, publicKey: csr.publicKey, ttlSeconds: this.settings.certTtlSeconds,
    });
    await this.trust.recordIssued({ serialHex: cert.serialHex, caId: active.id, executorId: id, notAfter: cert.notAfter.getTime(), issuedAt: Date.now() });
    this.metrics.certificateIssued("executor");
    return { ...cert, caId: active.id };
  }

  /**
   * The heartbeat's `cert_renew_after`: at 2/3 of the certificate's life, or — when it is
   * not from the active CA (after an activation) — within a heartbeat interval plus a
   * jitter fixed per executor (PROTOCOL §7.2), whichever comes first.
   */
  private certRenewAfter(auth: ExecutorAuthState): number {
    const usual = renewAt(auth.certIssuedAt, auth.certExpiresAt);
    const moveBy = this.trust.renewDeadline(auth.id, auth.certCaId);
    return moveBy === undefined ? usual : Math.min(usual, moveBy);
  }

  private async mustGet(id: string): Promise<ExecutorRecord> {
    const e = await this.store.getExecutor(id);
    if (!e) throw new TetherError(404, ErrorCode.NOT_FOUND, `no executor ${id}`);
    return e;
  }
}
