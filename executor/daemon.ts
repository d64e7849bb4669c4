/**
 * The executor daemon: gets an identity (enroll with a token, or reuse the saved
 * one and re-register at epoch + 1), then runs two loops until stopped —
 *
 *   heartbeat  every `next_heartbeat_s` (±10 %), reporting ready/draining and the work held;
 *   renewal    the JWT at ~2/3 of its life, the certificate at ~2/3 of its life with a
 *              fresh key; both times come from the controller's hints when it sent them.
 *
 * Every controller answer goes through one reaction table (reactions.ts):
 * renew, re-register, re-enroll, warn about the clock, retry with a new nonce,
 * back off, or stop with an exit code (exit-codes.ts). Credential changes
 * (renew / rotate / re-register / re-enroll) run one at a time.
 */
import { readFileSync } from "node:fs";
import type { Logger } from "pino";
import { TetherError } from "../shared/errors.ts";
import type { HeartbeatResponse, RegisterResponse, RenewResponse } from "../shared/protocol.ts";
import { rfc3339 } from "../shared/time.ts";
import { Backoff, DEFAULT_BACKOFF, heartbeatDelay, retryAfterDelay, type BackoffOptions, type Random } from "./backoff.ts";
import { certInfo, chainsTo, keyMatchesCert, mergeBundles, type CertInfo } from "./certificate.ts";
import { ExecutorClient, type CallOptions, type CallResult } from "./client.ts";
import { newKeyAndCsr, type KeyType } from "./csr.ts";
import { DaemonExit, ExitCode } from "./exit-codes.ts";
import { IdentityStore, IdentityStoreError, type IdentityRecord, type LoadedIdentity, type SessionRecord, type StepHook } from "./identity-store.ts";
import { classify } from "./reactions.ts";
import { delayUntil, measureClockOffset, renewDeadline, serverTimeToLocal, type RenewPlan } from "./renew-timing.ts";
import { acquireStateLock, StateLockError, type StateLock } from "./state-lock.ts";
import { abortError, sleep, Trigger } from "./timers.ts";
import { NoWork, type DropReason, type WorkContext, type WorkSource } from "./work.ts";

export interface DaemonOptions {
  controllerUrl: string;
  /** Contents of `--ca-file`: trusted for the controller, always, next to the bundle it sends. */
  caFilePem: string;
  stateDir: string;
  /** Reads the enrollment token (from --token or --token-file) when one is needed; undefined when none was given. */
  token?: () => string | undefined;
  /** How the token was given, for messages ("--token-file /etc/tether/token"). */
  tokenSource?: string;
  name?: string;
  labels: Record<string, string>;
  capacity: number;
  allowedCommands: string[];
  keyType: KeyType;
  /** How long SIGTERM waits for running work before handing it back. */
  drainTimeoutMs: number;
  backoff?: BackoffOptions;
  requestTimeoutMs?: number;
}

export interface DaemonDeps {
  log: Logger;
  work?: WorkSource;
  random?: Random;
  now?: () => number;
  /** Test instrumentation of the identity store (simulated crashes). */
  storeHook?: StepHook;
}

interface Plan extends RenewPlan {
  /** The JWT or certificate fingerprint this plan is for. */
  subject: string;
}

/** |offset| at or above which the signing clock is corrected (server_time has 1 s precision). */
const SKEW_CORRECT_MS = 2_000;
/** |offset| above which the daemon warns even without a CLOCK_SKEW answer. */
const SKEW_WARN_MS = 30_000;
const DRAIN_HEARTBEAT_TIMEOUT_MS = 5_000;

function jwtTimes(jwt: string): { iatMs?: number } {
  try {
    const payload = JSON.parse(Buffer.from(jwt.split(".")[1] ?? "", "base64url").toString("utf8")) as { iat?: unknown };
    return typeof payload.iat === "number" ? { iatMs: payload.iat * 1000 } : {};
  } catch {
    return {};
  }
}

export class ExecutorDaemon {
  readonly store: IdentityStore;
  readonly client: ExecutorClient;
  private readonly log: Logger;
  private readonly work: WorkSource;
  private readonly random: Random;
  private readonly now: () => number;
  private readonly backoffOpts: BackoffOptions;

  // Identity (valid once established).
  private record?: IdentityRecord;
  private keyPem = "";
  private certPem = "";
  private cert?: CertInfo;
  private caPem = "";
  private session?: SessionRecord;
  private jwtPlan?: Plan;
  private certPlan?: Plan;
  /** Fingerprint of a rotated certificate not yet confirmed by a successful request. */
  private pendingPromotion?: string;

  // Run state.
  private readonly stopCtl = new AbortController();
  private readonly drainCtl = new AbortController();
  private readonly renewWake = new Trigger();
  private readonly heartbeatWake = new Trigger();
  private established = false;
  private shuttingDown = false;
  private operatorDrain = false;
  private fatal?: DaemonExit;
  private exit?: DaemonExit;
  private stopRequested!: () => void;
  private readonly stopRequestedP = new Promise<void>((r) => (this.stopRequested = r));
  private drainingAnnounced!: () => void;
  private readonly drainingAnnouncedP = new Promise<void>((r) => (this.drainingAnnounced = r));
  private credChain: Promise<unknown> = Promise.resolve();
  private clockOffsetMs = 0;
  private lastSkewWarnAt = 0;
  private readySeen = false;
  /** Whether the identity in use was enrolled by this process, and whether the controller has accepted it since. */
  private enrolledHere = false;
  private acceptedSinceEnroll = false;
  private reenrollments = 0;
  private failingSince?: number;

  constructor(
    private readonly opts: DaemonOptions,
    deps: DaemonDeps,
  ) {
    this.log = deps.log;
    this.work = deps.work ?? new NoWork();
    this.random = deps.random ?? Math.random;
    this.now = deps.now ?? Date.now;
    this.backoffOpts = opts.backoff ?? DEFAULT_BACKOFF;
    this.store = new IdentityStore(opts.stateDir, deps.storeHook);
    this.client = new ExecutorClient({ baseUrl: opts.controllerUrl, timeoutMs: opts.requestTimeoutMs, now: this.now });
  }

  get executorId(): string | undefined {
    return this.record?.executor_id;
  }

  get epoch(): number | undefined {
    return this.session?.epoch;
  }

  /** Why the daemon ended, when it ended with a non-zero code. */
  get lastExit(): DaemonExit | undefined {
    return this.exit;
  }

  /**
   * Runs until SIGTERM (→ 0 after draining) or a terminal condition (→ its exit
   * code). Never throws.
   */
  async run(): Promise<number> {
    let lock: StateLock | undefined;
    try {
      this.store.init();
      lock = acquireStateLock(this.opts.stateDir);
      this.log.info({ event: "daemon.starting", state_dir: this.opts.stateDir, controller: this.opts.controllerUrl, capacity: this.opts.capacity }, "executor starting");
      await this.establish();
      this.established = true;
      this.work.start(this.workContext());
      const loops = Promise.allSettled([this.heartbeatLoop(), this.renewLoop()]);
      await this.stopRequestedP;
      if (!this.fatal) await this.drainAndStop();
      this.stopCtl.abort();
      await loops;
      if (this.fatal) throw this.fatal;
      await this.client.close();
      this.log.info({ event: "stopped", executor_id: this.executorId, exit_code: ExitCode.OK }, "executor stopped");
      return ExitCode.OK;
    } catch (e) {
      this.stopCtl.abort();
      if ((e as Error)?.name === "AbortError" && !this.fatal) {
        // Stopped before an identity was established.
        await this.client.close(true);
        this.log.info({ event: "stopped", exit_code: ExitCode.OK }, "executor stopped before it was registered");
        return ExitCode.OK;
      }
      const exit = this.fatal ?? this.toExit(e);
      this.exit = exit;
      if (exit.exitCode === ExitCode.REVOKED && this.session && !this.session.revoked_at) {
        this.session.revoked_at = rfc3339(this.now());
        this.saveSession();
      }
      this.work.drop(exit.exitCode === ExitCode.REVOKED ? "revoked" : "identity-lost");
      await this.client.close(true);
      this.log.fatal({ event: exit.event, executor_id: this.executorId, exit_code: exit.exitCode }, exit.message);
      return exit.exitCode;
    } finally {
      lock?.release();
    }
  }

  /**
   * SIGTERM/SIGINT: heartbeat `draining`, finish or hand back the work, exit 0.
   * A second call stops waiting for the work (it is handed back at once).
   */
  shutdown(reason: string): void {
    if (this.shuttingDown) {
      this.log.warn({ event: "shutdown.forced", reason }, "second stop signal: handing back running work now");
      this.drainCtl.abort();
      return;
    }
    this.shuttingDown = true;
    this.log.info({ event: "shutdown.started", reason }, `stopping (${reason}): draining`);
    if (!this.established) {
      this.stopCtl.abort();
      this.stopRequested();
      return;
    }
    this.work.setAccepting(false);
    this.heartbeatWake.fire();
    this.stopRequested();
  }

  // ─── establishing an identity ─────────────────────────────────────────

  private async establish(): Promise<void> {
    let loaded: LoadedIdentity | undefined;
    try {
      loaded = this.store.load();
    } catch (e) {
      if (e instanceof IdentityStoreError) throw new DaemonExit(ExitCode.ERROR, e.message, "identity.unusable");
      throw e;
    }
    if (!loaded) {
      const token = this.readToken();
      if (!token) {
        throw new DaemonExit(
          ExitCode.ENROLLMENT_FAILED,
          `no identity in ${this.opts.stateDir} and no enrollment token: create one with "tether token create" and start with --token-file FILE`,
          "enrollment.no_token",
        );
      }
      await this.enroll(token, "first start");
      return;
    }
    this.adopt(loaded);
    const id = loaded.executorId;
    if (loaded.session.revoked_at) {
      throw new DaemonExit(
        ExitCode.REVOKED,
        `executor ${id} was revoked by the controller (CERT_REVOKED at ${loaded.session.revoked_at}); it cannot come back — enroll a new executor with a new token in a fresh --state-dir`,
        "revoked",
      );
    }
    if (loaded.cert.notAfterMs <= this.now()) {
      const expired = rfc3339(loaded.cert.notAfterMs);
      const token = this.readToken();
      if (token) {
        this.log.warn({ event: "reenrolling", executor_id: id, cert_expired_at: expired }, `the identity of executor ${id} expired at ${expired}; re-enrolling with the token from ${this.opts.tokenSource}`);
        await this.enroll(token, "identity expired");
        return;
      }
      throw new DaemonExit(
        ExitCode.REENROLL_REQUIRED,
        `the identity of executor ${id} expired at ${expired} while the executor was stopped; re-enroll: create a token with "tether token create" and start again with --token-file FILE (the expired identity in ${this.opts.stateDir} is then replaced)`,
        "identity.expired",
      );
    }
    if (this.readToken() !== undefined) {
      this.log.info({ event: "token.ignored", executor_id: id }, `reusing the identity of executor ${id} in ${this.opts.stateDir}; the enrollment token is not used`);
    }
    this.log.info(
      { event: "identity.loaded", executor_id: id, last_epoch: loaded.session.epoch, cert_expires_at: rfc3339(loaded.cert.notAfterMs) },
      `loaded the identity of executor ${id}`,
    );
    const r = loaded.record;
    if (r.controller_url !== this.opts.controllerUrl) {
      this.log.info({ event: "controller.changed", executor_id: id, enrolled_with: r.controller_url }, `enrolled with ${r.controller_url}, now talking to ${this.opts.controllerUrl}`);
    }
    if (JSON.stringify(r.labels) !== JSON.stringify(this.opts.labels) || (this.opts.name !== undefined && this.opts.name !== r.name)) {
      this.log.warn({ event: "labels.unchanged", executor_id: id, labels: r.labels, name: r.name }, "--label/--name apply at enrollment only; the controller keeps the enrolled ones");
    }
    this.installCredentials();
    await this.withReactions("reregister", () => this.reregister(undefined, "restart"));
    if (loaded.interruptedRotation) {
      this.log.warn({ event: "cert.rotation_resumed", executor_id: id }, "a certificate rotation was interrupted; rotating again now");
      await this.withReactions("certificate renewal", () => this.rotateCert());
    }
  }

  /** Registers with an enrollment token: fresh key, CSR, `POST /register`, identity committed to disk. */
  private async enroll(token: string, reason: string): Promise<void> {
    const { keyPem, csrPem } = await newKeyAndCsr(this.opts.keyType, this.opts.name ?? "tether-executor");
    const trust = mergeBundles(this.opts.caFilePem, this.caPem);
    const req = {
      enrollment_token: token,
      csr_pem: csrPem,
      ...(this.opts.name ? { name: this.opts.name } : {}),
      labels: this.opts.labels,
      capacity: this.opts.capacity,
    };
    const res = await this.withReactions("register", () => this.client.register(req, trust, { signal: this.stopCtl.signal }), { inCredOp: true });
    const reg = res.data;
    this.validateRegistration(reg, keyPem);
    const now = this.now();
    const info = certInfo(reg.certificate_pem);
    const record: IdentityRecord = {
      version: 1,
      executor_id: reg.executor_id,
      hmac_key: reg.hmac_key,
      controller_url: this.opts.controllerUrl,
      ...(this.opts.name ? { name: this.opts.name } : {}),
      labels: this.opts.labels,
      key_type: this.opts.keyType,
      enrolled_at: rfc3339(now),
    };
    const session: SessionRecord = {
      version: 1,
      executor_id: reg.executor_id,
      epoch: reg.epoch,
      jwt: reg.jwt,
      jwt_issued_at: rfc3339(jwtTimes(reg.jwt).iatMs ?? now),
      jwt_expires_at: reg.jwt_expires_at,
      cert_fingerprint: info.fingerprint,
      cert_received_at: rfc3339(now),
      cert_expires_at: reg.cert_expires_at,
      last_contact_at: rfc3339(res.receivedAtMs),
      heartbeat_interval_s: reg.heartbeat_interval_s,
    };
    const previous = this.record?.executor_id;
    this.enrolledHere = true;
    this.acceptedSinceEnroll = false;
    this.store.saveEnrollment({ record, keyPem, certPem: reg.certificate_pem, caPem: reg.ca_bundle_pem, session });
    this.adopt({
      executorId: reg.executor_id, hmacKey: Buffer.from(reg.hmac_key, "base64url"), record, keyPem, certPem: reg.certificate_pem,
      cert: info, caPem: reg.ca_bundle_pem, session, pendingPromotion: false, interruptedRotation: false,
    });
    this.installCredentials();
    this.log.info(
      {
        event: "enrolled", executor_id: reg.executor_id, epoch: reg.epoch, cert_expires_at: reg.cert_expires_at, jwt_expires_at: reg.jwt_expires_at,
        reason, ...(previous && previous !== reg.executor_id ? { previous_executor_id: previous } : {}),
      },
      `enrolled as executor ${reg.executor_id}`,
    );
  }

  private validateRegistration(reg: RegisterResponse, keyPem: string): void {
    const problems: string[] = [];
    if (typeof reg.executor_id !== "string" || !reg.executor_id) problems.push("no executor_id");
    if (typeof reg.hmac_key !== "string" || Buffer.from(reg.hmac_key, "base64url").length !== 32) problems.push("hmac_key is not 32 bytes");
    if (typeof reg.jwt !== "string") problems.push("no jwt");
    if (typeof reg.certificate_pem !== "string" || !keyMatchesCert(keyPem, reg.certificate_pem)) problems.push("the certificate is not for our key");
    else if (certInfo(reg.certificate_pem).executorId !== reg.executor_id) problems.push("the certificate names another executor");
    else if (!chainsTo(reg.certificate_pem, reg.ca_bundle_pem)) problems.push("the certificate does not chain to the returned CA bundle");
    if (problems.length) throw new DaemonExit(ExitCode.ERROR, `the controller's registration answer is unusable: ${problems.join("; ")}`, "enrollment.invalid_response");
  }

  private adopt(l: LoadedIdentity): void {
    this.record = l.record;
    this.keyPem = l.keyPem;
    this.certPem = l.certPem;
    this.cert = l.cert;
    this.caPem = l.caPem;
    this.session = { ...l.session };
    this.pendingPromotion = l.pendingPromotion ? l.cert.fingerprint : undefined;
    this.jwtPlan = undefined;
    this.certPlan = undefined;
    if (l.session.jwt && l.session.jwt_expires_at) this.planJwt(l.session.jwt, l.session.jwt_expires_at, l.session.jwt_issued_at);
    this.planCert();
  }

  /** Puts the identity in memory into the client (a new agent when the certificate, key or trust changed). */
  private installCredentials(): void {
    this.client.setCredentials({
      executorId: this.record!.executor_id,
      keyPem: this.keyPem,
      certPem: this.certPem,
      trustPem: mergeBundles(this.caPem, this.opts.caFilePem),
      hmacKey: Buffer.from(this.record!.hmac_key, "base64url"),
      jwt: this.session?.jwt,
    });
  }

  // ─── credential operations (one at a time) ────────────────────────────

  private credOp<T>(fn: () => Promise<T>): Promise<T> {
    const p = this.credChain.then(fn, fn);
    this.credChain = p.catch(() => {});
    return p;
  }

  /** `POST …/reregister` → epoch + 1; the work held under the old epoch is dropped first. */
  private reregister(seenEpoch: number | undefined, reason: string): Promise<void> {
    return this.credOp(async () => {
      if (seenEpoch !== undefined && this.session!.epoch !== seenEpoch) return; // already done by someone else
      this.work.drop("epoch-changed");
      const res = await this.withReactions("reregister", () => this.client.reregister({ signal: this.stopCtl.signal }), { inCredOp: true });
      this.contact(res);
      const old = this.session!.epoch;
      this.applyCredentials(res.data, { epochChangeExpected: true });
      if (this.pendingPromotion === res.certFingerprint) this.promote();
      this.log.info({ event: "reregistered", executor_id: this.executorId, epoch: res.data.epoch, previous_epoch: old, reason }, `re-registered at epoch ${res.data.epoch}`);
    });
  }

  /** A new JWT for the current certificate (`POST …/renew` without a CSR). */
  private renewJwt(seenJwt: string | undefined, reason: string): Promise<void> {
    return this.credOp(async () => {
      if (seenJwt !== undefined && this.session!.jwt !== seenJwt) return; // renewed meanwhile
      const res = await this.withReactions("renew", () => this.client.renew(undefined, { signal: this.stopCtl.signal }), { inCredOp: true });
      this.contact(res);
      this.applyCredentials(res.data);
      this.log.info({ event: "jwt.renewed", executor_id: this.executorId, jwt_expires_at: res.data.jwt_expires_at, reason }, "JWT renewed");
    });
  }

  /**
   * Certificate rotation with a fresh key. The key is staged on disk before the
   * CSR leaves, the certificate as soon as it arrives; the old pair stays on disk
   * until a request made with the new one succeeds (then `promote()`).
   */
  private rotateCert(): Promise<void> {
    return this.credOp(async () => {
      // The staging slots must be free: a previous rotation not yet confirmed is final by now.
      if (this.pendingPromotion !== undefined) this.promote();
      if (this.pendingPromotion !== undefined) throw new Error("the previous certificate rotation could not be finished on disk; not starting another");
      const { keyPem, csrPem } = await newKeyAndCsr(this.record!.key_type ?? this.opts.keyType, this.executorId);
      this.store.stageKey(keyPem);
      let res: CallResult<RenewResponse>;
      try {
        res = await this.withReactions("renew (certificate)", () => this.client.renew(csrPem, { signal: this.stopCtl.signal }), { inCredOp: true });
      } catch (e) {
        // Only a definite answer means no certificate was issued. After an abort or
        // a lost response the staged key stays, and the next start rotates again.
        if (e instanceof TetherError) this.store.discardStagedKey();
        throw e;
      }
      this.contact(res);
      const certPem = res.data.certificate_pem;
      const trust = mergeBundles(res.data.ca_bundle_pem, this.caPem, this.opts.caFilePem);
      if (!certPem || !keyMatchesCert(keyPem, certPem) || certInfo(certPem).executorId !== this.executorId || !chainsTo(certPem, trust)) {
        this.store.discardStagedKey();
        throw new DaemonExit(ExitCode.ERROR, "the controller answered a certificate renewal with a certificate that is not for our new key, our executor id or our CA", "cert.invalid_response");
      }
      this.store.stageCert(certPem);
      this.applyCredentials(res.data, { newKeyPem: keyPem });
      this.pendingPromotion = this.cert!.fingerprint;
      this.heartbeatWake.fire(); // confirm the new certificate soon
      this.log.info(
        { event: "cert.renewed", executor_id: this.executorId, serial: this.cert!.serial, not_after: rfc3339(this.cert!.notAfterMs), key_type: this.record!.key_type },
        "certificate renewed with a fresh key",
      );
    });
  }

  /** Re-enrollment after the controller stopped accepting this identity (CERT_REQUIRED) while running. */
  private reenroll(token: string, code: string): Promise<void> {
    return this.credOp(async () => {
      this.log.warn({ event: "reenrolling", executor_id: this.executorId, code }, `the controller no longer accepts executor ${this.executorId} (${code}); re-enrolling with the token from ${this.opts.tokenSource}`);
      this.work.drop("identity-lost");
      await this.enroll(token, code);
      this.heartbeatWake.fire();
    });
  }

  private applyCredentials(data: RenewResponse, o: { newKeyPem?: string; epochChangeExpected?: boolean } = {}): void {
    const now = this.now();
    const s = this.session!;
    const newKeyPem = o.newKeyPem;
    if (data.epoch !== s.epoch && !o.epochChangeExpected && this.established) {
      this.log.warn({ event: "epoch.changed", executor_id: this.executorId, epoch: data.epoch, previous_epoch: s.epoch }, "the controller reports another epoch; dropping held work");
      this.work.drop("epoch-changed");
    }
    if (data.certificate_pem && newKeyPem) {
      this.keyPem = newKeyPem;
      this.certPem = data.certificate_pem;
      this.cert = certInfo(data.certificate_pem);
      s.cert_fingerprint = this.cert.fingerprint;
      s.cert_received_at = rfc3339(now);
    }
    s.cert_expires_at = rfc3339(this.cert!.notAfterMs);
    if (data.ca_bundle_pem && data.ca_bundle_pem !== this.caPem) {
      this.store.saveCaBundle(data.ca_bundle_pem);
      const first = this.caPem === "";
      this.caPem = data.ca_bundle_pem;
      if (!first) this.log.info({ event: "trust_bundle.updated", executor_id: this.executorId }, "trust bundle updated; new connections use it");
    }
    s.epoch = data.epoch;
    s.jwt = data.jwt;
    s.jwt_issued_at = rfc3339(jwtTimes(data.jwt).iatMs ?? now);
    s.jwt_expires_at = data.jwt_expires_at;
    // One synchronous step: the JWT is bound to the certificate, so they change together.
    this.installCredentials();
    this.planJwt(data.jwt, data.jwt_expires_at, s.jwt_issued_at);
    if (newKeyPem) this.planCert();
    this.saveSession();
    this.renewWake.fire();
  }

  private promote(): void {
    try {
      this.store.promote();
      this.pendingPromotion = undefined;
      this.log.debug({ event: "cert.promoted", executor_id: this.executorId }, "new certificate confirmed and promoted on disk");
    } catch (e) {
      this.log.error({ event: "error", err: (e as Error).message }, "could not promote the new certificate on disk (will retry)");
    }
  }

  // ─── renewal planning ─────────────────────────────────────────────────

  private planJwt(jwt: string, expiresAt: string, issuedAt?: string): void {
    const expiresAtMs = serverTimeToLocal(expiresAt, this.clockOffsetMs);
    if (expiresAtMs === undefined) return;
    const iat = jwtTimes(jwt).iatMs;
    const issuedAtMs = iat !== undefined ? iat - this.clockOffsetMs : (serverTimeToLocal(issuedAt, 0) ?? this.now());
    this.jwtPlan = { subject: jwt, issuedAtMs, expiresAtMs, r: this.random() };
  }

  private planCert(): void {
    const c = this.cert!;
    const s = this.session;
    const received = s?.cert_fingerprint === c.fingerprint ? serverTimeToLocal(s.cert_received_at, 0) : undefined;
    // notBefore is back-dated for skew, so the local receipt time is the better start.
    const issuedAtMs = received ?? c.notBeforeMs - this.clockOffsetMs;
    this.certPlan = { subject: c.fingerprint, issuedAtMs, expiresAtMs: c.notAfterMs - this.clockOffsetMs, r: this.random() };
  }

  /** The controller's hints apply only to the credentials the heartbeat was made with, if they are still ours. */
  private applyHints(hb: HeartbeatResponse, used: CallResult<unknown>): void {
    let changed = false;
    if (this.jwtPlan && used.jwt === this.jwtPlan.subject && used.jwt === this.session?.jwt) {
      const t = serverTimeToLocal(hb.jwt_renew_after, this.clockOffsetMs);
      if (t !== undefined && t !== this.jwtPlan.suggestedMs) {
        this.jwtPlan.suggestedMs = t;
        changed = true;
      }
    }
    if (this.certPlan && used.certFingerprint === this.certPlan.subject) {
      const t = serverTimeToLocal(hb.cert_renew_after, this.clockOffsetMs);
      if (t !== undefined && t !== this.certPlan.suggestedMs) {
        this.certPlan.suggestedMs = t;
        changed = true;
      }
    }
    if (changed) this.renewWake.fire();
  }

  /** When the next renewal is due, and whether it is the certificate's. */
  nextRenewal(): { atMs: number; cert: boolean } | undefined {
    const j = this.jwtPlan ? renewDeadline(this.jwtPlan) : Infinity;
    const c = this.certPlan ? renewDeadline(this.certPlan) : Infinity;
    if (!Number.isFinite(j) && !Number.isFinite(c)) return undefined;
    return c <= j ? { atMs: c, cert: true } : { atMs: j, cert: false };
  }

  // ─── loops ────────────────────────────────────────────────────────────

  private async heartbeatLoop(): Promise<void> {
    const signal = this.stopCtl.signal;
    let delay = 0;
    for (;;) {
      try {
        await sleep(delay, signal, this.heartbeatWake);
        let announcedShutdown = false;
        const res = await this.withReactions("heartbeat", () => {
          const draining = this.shuttingDown || this.operatorDrain;
          announcedShutdown = this.shuttingDown;
          return this.client.heartbeat(
            { status: draining ? "draining" : "ready", running: this.work.running(), capacity: this.opts.capacity, leases: this.work.leaseIds() },
            { signal },
          );
        });
        if (announcedShutdown) this.drainingAnnounced();
        this.contact(res);
        this.onHeartbeat(res);
        delay = heartbeatDelay(res.data.next_heartbeat_s, this.random);
      } catch (e) {
        if (this.handleLoopError(e, "heartbeat")) return;
        delay = new Backoff(this.backoffOpts, this.random).next();
      }
    }
  }

  private onHeartbeat(res: CallResult<HeartbeatResponse>): void {
    const hb = res.data;
    if (!this.readySeen) {
      this.readySeen = true;
      this.log.info({ event: "ready", executor_id: this.executorId, epoch: this.session!.epoch }, `executor ${this.executorId} is ${this.shuttingDown ? "draining" : "ready"}`);
    }
    this.log.debug({ event: "heartbeat", executor_id: this.executorId, next_heartbeat_s: hb.next_heartbeat_s }, "heartbeat");
    const offset = measureClockOffset(hb.server_time, res.sentAtMs, res.receivedAtMs);
    if (offset !== undefined) this.noteClockOffset(offset, false);
    this.applyHints(hb, res);
    if (hb.drain !== this.operatorDrain) {
      this.operatorDrain = hb.drain;
      if (!this.shuttingDown) this.work.setAccepting(!hb.drain);
      this.log.info({ event: hb.drain ? "drain.requested" : "drain.cleared", executor_id: this.executorId }, hb.drain ? "the controller asks this executor to drain: no new work" : "drain cleared: taking work again");
    }
    if (hb.cancel_leases?.length) this.work.cancel(hb.cancel_leases);
  }

  private async renewLoop(): Promise<void> {
    const signal = this.stopCtl.signal;
    const tooSoon = new Backoff(this.backoffOpts, this.random);
    for (;;) {
      try {
        const next = this.nextRenewal();
        const wait = next ? delayUntil(next.atMs, this.now()) : 60_000;
        if (!next || wait > 0) {
          await sleep(wait, signal, this.renewWake);
          continue; // re-plan: hints or credentials may have changed
        }
        if (next.cert) await this.withReactions("certificate renewal", () => this.rotateCert());
        else await this.withReactions("JWT renewal", () => this.renewJwt(undefined, "schedule"));
        // The credential just renewed being due again at once (a clock far off) must not spin.
        const plan = next.cert ? this.certPlan : this.jwtPlan;
        if (plan && renewDeadline(plan) <= this.now()) {
          const d = tooSoon.next();
          this.log.warn({ event: "renewal.due_again", delay_ms: d }, "the renewed credential is already due for renewal; check the clocks");
          await sleep(d, signal);
        } else tooSoon.reset();
      } catch (e) {
        if (this.handleLoopError(e, "renewal")) return;
        await sleep(tooSoon.next(), signal).catch(() => {});
      }
    }
  }

  /** true when the loop must end. */
  private handleLoopError(e: unknown, loop: string): boolean {
    if (this.stopCtl.signal.aborted || (e as Error)?.name === "AbortError") return true;
    if (e instanceof DaemonExit) {
      this.fail(e);
      return true;
    }
    this.log.error({ event: "error", loop, err: (e as Error)?.message ?? String(e) }, `${loop} loop error`);
    return false;
  }

  private fail(e: DaemonExit): void {
    if (!this.fatal) this.fatal = e;
    this.stopCtl.abort();
    this.drainCtl.abort();
    this.stopRequested();
  }

  private async drainAndStop(): Promise<void> {
    // The draining heartbeat (bounded: an unreachable controller must not hold up the stop).
    await Promise.race([this.drainingAnnouncedP, sleep(DRAIN_HEARTBEAT_TIMEOUT_MS, this.stopCtl.signal).catch(() => {})]);
    const timer = setTimeout(() => this.drainCtl.abort(), this.opts.drainTimeoutMs);
    try {
      await this.work.drain(this.drainCtl.signal);
    } catch (e) {
      this.log.error({ event: "error", err: (e as Error)?.message }, "draining the work failed");
    } finally {
      clearTimeout(timer);
    }
  }

  // ─── reactions ────────────────────────────────────────────────────────

  /**
   * Runs `op` until it succeeds, applying the reaction table to each failure.
   * Inside a credential operation (`inCredOp`) reactions that need another
   * credential operation are passed up instead (no self-deadlock).
   */
  private async withReactions<T>(what: string, op: () => Promise<T>, o: { inCredOp?: boolean; passThrough?: boolean } = {}): Promise<T> {
    const signal = this.stopCtl.signal;
    const backoff = new Backoff(this.backoffOpts, this.random);
    let action: (() => Promise<void>) | undefined;
    let actions = 0;
    let replays = 0;
    for (;;) {
      if (signal.aborted) throw abortError();
      // The credentials the attempt is made with: a reaction must not redo what another caller already did.
      let seen = { jwt: this.session?.jwt, epoch: this.session?.epoch };
      try {
        if (action) {
          const a = action;
          action = undefined;
          await a();
        }
        seen = { jwt: this.session?.jwt, epoch: this.session?.epoch };
        const result = await op();
        if (this.failingSince !== undefined && !o.inCredOp) {
          this.log.info({ event: "contact.restored", after_ms: this.now() - this.failingSince }, "the controller answers again");
          this.failingSince = undefined;
        }
        return result;
      } catch (e) {
        if (e instanceof DaemonExit) throw e;
        const r = classify(e, this.now());
        const retryLater = async (code: string, message: string, retryAfter?: string, level: "warn" | "error" = "warn") => {
          const d = retryAfter !== undefined ? retryAfterDelay(retryAfter, backoff.next()) : backoff.next();
          this.failingSince ??= this.now();
          this.log[level]({ event: "retrying", what, code, attempt: backoff.attempts, delay_ms: d }, `${what} failed (${code}: ${message}); retrying in ${d} ms`);
          await sleep(d, signal);
        };
        switch (r.kind) {
          case "aborted":
            throw e;
          case "renew-jwt":
          case "reregister":
            if (o.inCredOp) {
              await retryLater(r.code, (e as Error).message, undefined, "error");
              continue;
            }
            if (++actions > 3) await retryLater(r.code, "still failing after renewing", undefined, "error");
            if (r.kind === "renew-jwt") {
              this.log.info({ event: r.code === "TOKEN_EXPIRED" ? "token_expired" : "token_invalid", what, code: r.code }, `${what}: ${r.code}, renewing the JWT`);
              action = () => this.renewJwt(seen.jwt, r.code);
            } else {
              this.log.warn({ event: "epoch_mismatch", what, epoch: seen.epoch }, `${what}: EPOCH_MISMATCH, dropping work and re-registering`);
              action = () => this.reregister(seen.epoch, r.code);
            }
            continue;
          case "revoked":
            throw new DaemonExit(
              ExitCode.REVOKED,
              `executor ${this.executorId} has been revoked by the controller (CERT_REVOKED); it stops and will not be accepted again — enroll a new executor with a new token if this host should keep working`,
              "revoked",
            );
          case "identity-rejected": {
            if (o.inCredOp) throw e; // handled by the caller outside the credential lock
            const token = this.readToken();
            const id = this.executorId;
            const expired = this.cert && this.cert.notAfterMs <= this.now();
            if (this.enrolledHere && !this.acceptedSinceEnroll && !expired) {
              // Re-enrolling cannot help when the controller refuses what it has just issued.
              throw new DaemonExit(
                ExitCode.ERROR,
                `the controller refused the certificate it has just issued to executor ${id} (${r.code}: ${r.message}); this is a controller-side problem — see its audit log (guard.rejected)`,
                "identity.rejected",
              );
            }
            if (token && this.reenrollments < 1) {
              this.reenrollments++;
              action = () => this.reenroll(token, r.code);
              continue;
            }
            throw new DaemonExit(
              ExitCode.REENROLL_REQUIRED,
              expired
                ? `the certificate of executor ${id} expired at ${rfc3339(this.cert!.notAfterMs)} and the controller refuses it (${r.code}); re-enroll: create a token with "tether token create" and start again with --token-file FILE`
                : `the controller no longer accepts the identity of executor ${id} (${r.code}: ${r.message}); re-enroll: create a token with "tether token create" and start again with --token-file FILE`,
              "identity.rejected",
            );
          }
          case "clock-skew":
            if (r.offsetMs !== undefined) this.noteClockOffset(r.offsetMs, true);
            else this.log.warn({ event: "clock_skew", what }, `${what}: CLOCK_SKEW without server_time`);
            await retryLater(r.code, (e as Error).message);
            continue;
          case "retry-now":
            if (++replays <= 3) {
              this.log.warn({ event: "nonce_replay", what, attempt: replays }, `${what}: NONCE_REPLAY, retrying with a new nonce`);
              continue;
            }
            await retryLater(r.code, (e as Error).message);
            continue;
          case "enrollment-denied":
            throw new DaemonExit(
              ExitCode.ENROLLMENT_FAILED,
              `the enrollment token${this.opts.tokenSource ? ` from ${this.opts.tokenSource}` : ""} was denied (ENROLLMENT_DENIED: unknown, expired, used up or revoked); create a new one with "tether token create"`,
              "enrollment.denied",
            );
          case "fatal":
            throw new DaemonExit(ExitCode.ERROR, `${what}: ${r.code}: ${r.message}`, "error");
          case "backoff":
            if (o.passThrough && !r.transient && e instanceof TetherError) throw e;
            await retryLater(r.code, r.message, r.retryAfter, r.transient ? "warn" : "error");
            continue;
        }
      }
    }
  }

  /** A successful exchange: last contact, and the confirmation a rotated certificate waits for. */
  private contact(res: CallResult<unknown>): void {
    if (res.generation > 0) this.acceptedSinceEnroll = true;
    if (this.session) {
      this.session.last_contact_at = rfc3339(res.receivedAtMs);
      this.saveSession();
    }
    if (this.pendingPromotion !== undefined && res.certFingerprint === this.pendingPromotion) this.promote();
  }

  private noteClockOffset(offsetMs: number, fromError: boolean): void {
    const correct = Math.abs(offsetMs) >= SKEW_CORRECT_MS;
    const next = correct ? offsetMs : 0;
    const now = this.now();
    if (fromError || (Math.abs(offsetMs) > SKEW_WARN_MS && now - this.lastSkewWarnAt > 600_000)) {
      this.lastSkewWarnAt = now;
      this.log.warn(
        { event: "clock_skew", offset_ms: offsetMs, correcting: correct },
        `this host's clock is ${Math.abs(offsetMs / 1000).toFixed(1)} s ${offsetMs > 0 ? "behind" : "ahead of"} the controller's; signing with the controller's time — fix the clock (NTP)`,
      );
    }
    if (next !== this.clockOffsetMs) {
      this.clockOffsetMs = next;
      this.client.clockOffsetMs = next;
    }
  }

  private saveSession(): void {
    try {
      this.store.saveSession(this.session!);
    } catch (e) {
      this.log.error({ event: "error", err: (e as Error).message }, "could not save session.json");
    }
  }

  private readToken(): string | undefined {
    try {
      const t = this.opts.token?.();
      return t && t.trim() ? t.trim() : undefined;
    } catch (e) {
      this.log.warn({ event: "token.unreadable", source: this.opts.tokenSource, err: (e as Error).message }, "cannot read the enrollment token");
      return undefined;
    }
  }

  private toExit(e: unknown): DaemonExit {
    if (e instanceof DaemonExit) return e;
    if (e instanceof StateLockError || e instanceof IdentityStoreError) return new DaemonExit(ExitCode.ERROR, e.message, "state.unusable");
    return new DaemonExit(ExitCode.ERROR, `unexpected error: ${(e as Error)?.message ?? String(e)}`, "error");
  }

  private workContext(): WorkContext {
    return {
      log: this.log.child({ component: "work" }),
      executorId: () => this.executorId!,
      capacity: this.opts.capacity,
      allowedCommands: this.opts.allowedCommands,
      signal: this.stopCtl.signal,
      call: async <T>(method: "POST", path: string, body: unknown, opts: CallOptions = {}) => {
        const signal = opts.signal ? AbortSignal.any([opts.signal, this.stopCtl.signal]) : this.stopCtl.signal;
        try {
          const res = await this.withReactions(`${method} ${path}`, () => this.client.call<T>(method, path, body, "jwt", { ...opts, signal }), { passThrough: true });
          this.contact(res);
          return res.data;
        } catch (e) {
          if (e instanceof DaemonExit) this.fail(e);
          throw e;
        }
      },
    };
  }
}

/** Reads a token file (trimmed) each time a token is needed, so a new token dropped in later is picked up. */
export function tokenFileReader(path: string): () => string | undefined {
  return () => {
    try {
      return readFileSync(path, "utf8").trim() || undefined;
    } catch (e) {
      // No file is normal once enrolled (operators delete used tokens).
      if ((e as NodeJS.ErrnoException).code === "ENOENT") return undefined;
      throw e;
    }
  };
}

export type { DropReason };
