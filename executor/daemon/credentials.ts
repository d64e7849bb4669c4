/**
 * Credential operations, one at a time: JWT renewal, certificate rotation with a
 * fresh key, re-registration (epoch + 1), and applying what the controller sent
 * (`applyCredentials`). Whoever needs one (the renewal loop, a reaction,
 * re-enrollment) queues on the same chain, so two never interleave.
 *
 * HMAC keys (PROTOCOL §7.4): a rotation's answer carries a new certificate and a new
 * key; both are staged on disk together (identity-store.ts) and switched in one
 * step. A re-registration's new key is saved before it is used. The controller
 * accepts the previous key for 5 minutes, which covers a crash in between.
 */
import type { Logger } from "pino";
import { TetherError } from "../../shared/errors.ts";
import type { RenewResponse } from "../../shared/wire/executor.ts";
import { rfc3339 } from "../../shared/time.ts";
import { certInfo, chainsTo, keyMatchesCert, mergeBundles } from "../certificate.ts";
import type { CallResult, ExecutorClient } from "../client.ts";
import { newKeyAndCsr } from "../csr.ts";
import { DaemonExit, ExitCode } from "../exit-codes.ts";
import { isHmacKey, type IdentityStore } from "../identity-store.ts";
import type { WorkSource } from "../work.ts";
import type { Identity } from "./identity.ts";
import type { DaemonOptions } from "./options.ts";
import type { ReactionRunner } from "./reaction-runner.ts";
import { jwtIssuedAtMs, type RenewalPlanner } from "./renewal-plan.ts";
import type { RunState } from "./run-state.ts";
import type { TrustBundle } from "./trust.ts";
import type { DaemonObserver, RenewalKind } from "../metrics.ts";

export class CredentialOps {
  private chain: Promise<unknown> = Promise.resolve();

  constructor(
    private readonly d: {
      log: Logger;
      now: () => number;
      opts: Pick<DaemonOptions, "keyType">;
      store: IdentityStore;
      client: ExecutorClient;
      work: WorkSource;
      identity: Identity;
      planner: RenewalPlanner;
      reactions: ReactionRunner;
      run: RunState;
      trust: TrustBundle;
      observer?: DaemonObserver;
    },
  ) {}

  /** The reactions' options of a credential operation's request: inside the lock, each failed attempt counted. */
  private attempt(kind: RenewalKind) {
    return { inCredOp: true, onFailure: () => this.d.observer?.renewal(kind, "failure") };
  }

  /** Runs `fn` after every credential operation queued before it (whatever their outcome). */
  exclusive<T>(fn: () => Promise<T>): Promise<T> {
    const p = this.chain.then(fn, fn);
    this.chain = p.catch(() => {});
    return p;
  }

  /** `POST …/reregister` → epoch + 1; the work held under the old epoch is dropped first. */
  reregister(seenEpoch: number | undefined, reason: string): Promise<void> {
    const { identity, log, run } = this.d;
    return this.exclusive(async () => {
      if (seenEpoch !== undefined && identity.current.session.epoch !== seenEpoch) return; // already done by someone else
      this.d.work.drop("epoch-changed");
      const res = await this.d.reactions.run("reregister", () => this.d.client.reregister({ signal: run.signal }), this.attempt("reregister"));
      this.contact(res);
      const old = identity.current.session.epoch;
      this.applyCredentials(res.data, { epochChangeExpected: true, source: "reregister" });
      if (identity.pendingPromotion === res.certFingerprint) this.promote();
      this.d.observer?.renewal("reregister", "success");
      log.info({ event: "reregistered", executor_id: identity.executorId, epoch: res.data.epoch, previous_epoch: old, reason }, `re-registered at epoch ${res.data.epoch}`);
    });
  }

  /** A new JWT for the current certificate (`POST …/renew` without a CSR). */
  renewJwt(seenJwt: string | undefined, reason: string): Promise<void> {
    const { identity, log, run } = this.d;
    return this.exclusive(async () => {
      if (seenJwt !== undefined && identity.current.session.jwt !== seenJwt) return; // renewed meanwhile
      const res = await this.d.reactions.run("renew", () => this.d.client.renew(undefined, { signal: run.signal }), this.attempt("jwt"));
      this.contact(res);
      this.applyCredentials(res.data, { source: "renew" });
      this.d.observer?.renewal("jwt", "success");
      log.info({ event: "jwt.renewed", executor_id: identity.executorId, jwt_expires_at: res.data.jwt_expires_at, reason }, "JWT renewed");
    });
  }

  /**
   * Certificate rotation with a fresh key. The key is staged on disk before the
   * CSR leaves, the certificate as soon as it arrives; the old pair stays on disk
   * until a request made with the new one succeeds (then `promote()`).
   */
  rotateCert(): Promise<void> {
    const { identity, store, log, run } = this.d;
    return this.exclusive(async () => {
      // The staging slots must be free: a previous rotation not yet confirmed is final by now.
      if (identity.pendingPromotion !== undefined) this.promote();
      if (identity.pendingPromotion !== undefined) throw new Error("the previous certificate rotation could not be finished on disk; not starting another");
      const { record } = identity.current;
      const executorId = record.executor_id;
      const { keyPem, csrPem } = await newKeyAndCsr(record.key_type ?? this.d.opts.keyType, executorId);
      store.stageKey(keyPem);
      let res: CallResult<RenewResponse>;
      try {
        res = await this.d.reactions.run("renew (certificate)", () => this.d.client.renew(csrPem, { signal: run.signal }), this.attempt("certificate"));
      } catch (e) {
        // Only a definite answer means no certificate was issued. After an abort or
        // a lost response the staged key stays, and the next start rotates again.
        if (e instanceof TetherError) store.discardStagedKey();
        throw e;
      }
      this.contact(res);
      const { certificate_pem: certPem, hmac_key: hmacKey } = res.data;
      const trust = mergeBundles(res.data.ca_bundle_pem, identity.caPem);
      if (
        !certPem || !keyMatchesCert(keyPem, certPem) || certInfo(certPem).executorId !== executorId || !chainsTo(certPem, trust) ||
        (hmacKey !== undefined && !isHmacKey(hmacKey))
      ) {
        store.discardStagedKey();
        this.d.observer?.renewal("certificate", "failure");
        throw new DaemonExit(
          ExitCode.ERROR,
          "the controller answered a certificate renewal with a certificate that is not for our new key, our executor id or a CA of its bundle, or with a malformed hmac_key",
          "cert.invalid_response",
        );
      }
      // The certificate and its HMAC key: staged together, switched together.
      store.stageCert(certPem, hmacKey);
      this.applyCredentials(res.data, { newKeyPem: keyPem, source: "renew (certificate)" });
      const { cert } = identity.current;
      identity.pendingPromotion = cert.fingerprint;
      run.heartbeatWake.fire(); // confirm the new certificate soon
      this.d.observer?.renewal("certificate", "success");
      log.info(
        { event: "cert.renewed", executor_id: executorId, serial: cert.serial, not_after: rfc3339(cert.notAfterMs), key_type: record.key_type },
        "certificate renewed with a fresh key",
      );
    });
  }

  /**
   * What a renew or re-register answer carries, applied in memory, to the client and
   * to disk. With `newKeyPem` (a rotation) the certificate and its HMAC key were
   * staged on disk by the caller; a new HMAC key alone is saved here before use.
   */
  applyCredentials(data: RenewResponse, o: { newKeyPem?: string; epochChangeExpected?: boolean; source: string }): void {
    const { identity, log } = this.d;
    const now = this.d.now();
    const s = identity.current.session;
    const newKeyPem = o.newKeyPem;
    if (data.epoch !== s.epoch && !o.epochChangeExpected && this.d.run.established) {
      log.warn({ event: "epoch.changed", executor_id: identity.executorId, epoch: data.epoch, previous_epoch: s.epoch }, "the controller reports another epoch; dropping held work");
      this.d.work.drop("epoch-changed");
    }
    const newCert = data.certificate_pem && newKeyPem ? data.certificate_pem : undefined;
    // The bundle first: it must hold the CA of the certificate used from now on.
    this.d.trust.offer(data.ca_bundle_pem, data.trust_bundle_version, o.source, newCert ?? identity.current.certPem);
    if (newCert && newKeyPem) identity.useCertificate(newKeyPem, newCert, rfc3339(now), data.hmac_key);
    else if (data.hmac_key !== undefined) {
      if (!isHmacKey(data.hmac_key)) throw new DaemonExit(ExitCode.ERROR, `the controller's ${o.source} answer carries a malformed hmac_key`, "credentials.invalid_response");
      identity.useHmacKey(data.hmac_key);
    }
    s.cert_expires_at = rfc3339(identity.current.cert.notAfterMs);
    s.epoch = data.epoch;
    s.jwt = data.jwt;
    s.jwt_issued_at = rfc3339(jwtIssuedAtMs(data.jwt) ?? now);
    s.jwt_expires_at = data.jwt_expires_at;
    // One synchronous step: the JWT is bound to the certificate, so they change together.
    identity.installCredentials();
    this.d.planner.planJwt(data.jwt, data.jwt_expires_at, s.jwt_issued_at);
    if (newKeyPem) this.d.planner.planCert(identity.current.cert, s);
    identity.saveSession();
    this.d.run.renewWake.fire();
  }

  /** A successful exchange: last contact, and the confirmation a rotated certificate waits for. */
  contact(res: CallResult<unknown>): void {
    this.d.identity.noteContact(rfc3339(res.receivedAtMs), res.generation, res.url);
    if (this.d.identity.pendingPromotion !== undefined && res.certFingerprint === this.d.identity.pendingPromotion) this.promote();
  }

  /** The rotated certificate was used successfully: make it the one on disk. */
  promote(): void {
    const { identity, log } = this.d;
    try {
      this.d.store.promote();
      identity.pendingPromotion = undefined;
      log.debug({ event: "cert.promoted", executor_id: identity.executorId }, "new certificate confirmed and promoted on disk");
    } catch (e) {
      log.error({ event: "error", err: (e as Error).message }, "could not promote the new certificate on disk (will retry)");
    }
  }
}
