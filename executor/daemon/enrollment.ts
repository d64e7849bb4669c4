/**
 * Getting an identity: reuse the one saved in --state-dir (and re-register at
 * epoch + 1), or enroll with a token (fresh key, CSR, `POST /register`, identity
 * committed to disk). Re-enrollment while running is the same enrollment, queued
 * as a credential operation. The registration verifies the controller with the
 * bundle held, else `--ca-file`, else the CA pinned with `--ca-fingerprint`.
 */
import type { Logger } from "pino";
import type { RegisterResponse } from "../../shared/wire/executor.ts";
import { rfc3339 } from "../../shared/time.ts";
import { certInfo, chainsTo, keyMatchesCert } from "../certificate.ts";
import type { ExecutorClient } from "../client.ts";
import { newKeyAndCsr } from "../csr.ts";
import { bundleProblem } from "../trust-bundle.ts";
import { DaemonExit, ExitCode } from "../exit-codes.ts";
import { IdentityStoreError, isHmacKey, type IdentityRecord, type IdentityStore, type LoadedIdentity, type SessionRecord } from "../identity-store.ts";
import type { WorkSource } from "../work.ts";
import { pinnedTrust } from "./ca-pin.ts";
import type { CredentialOps } from "./credentials.ts";
import type { Identity } from "./identity.ts";
import type { DaemonOptions } from "./options.ts";
import type { ReactionRunner } from "./reaction-runner.ts";
import { jwtIssuedAtMs } from "./renewal-plan.ts";
import type { RunState } from "./run-state.ts";

export class Enrollment {
  /** The CA pinned with --ca-fingerprint, once checked (one download per run). */
  private pinned?: string;

  constructor(
    private readonly d: {
      log: Logger;
      now: () => number;
      opts: DaemonOptions;
      store: IdentityStore;
      client: ExecutorClient;
      work: WorkSource;
      identity: Identity;
      creds: CredentialOps;
      reactions: ReactionRunner;
      run: RunState;
      readToken: () => string | undefined;
    },
  ) {}

  /** An identity to run with: the saved one (re-registered), or a new one from the token. */
  async establish(): Promise<void> {
    const { opts, log, identity } = this.d;
    let loaded: LoadedIdentity | undefined;
    try {
      loaded = this.d.store.load();
    } catch (e) {
      if (e instanceof IdentityStoreError) throw new DaemonExit(ExitCode.ERROR, e.message, "identity.unusable");
      throw e;
    }
    if (!loaded) {
      const token = this.d.readToken();
      if (!token) {
        throw new DaemonExit(
          ExitCode.ENROLLMENT_FAILED,
          `no identity in ${opts.stateDir} and no enrollment token: create one with "tether token create" and start with --token-file FILE`,
          "enrollment.no_token",
        );
      }
      await this.enroll(token, "first start");
      return;
    }
    identity.adopt(loaded);
    const id = loaded.executorId;
    if (loaded.session.revoked_at) {
      throw new DaemonExit(
        ExitCode.REVOKED,
        `executor ${id} was revoked by the controller (CERT_REVOKED at ${loaded.session.revoked_at}); it cannot come back — enroll a new executor with a new token in a fresh --state-dir`,
        "revoked",
      );
    }
    if (loaded.cert.notAfterMs <= this.d.now()) {
      const expired = rfc3339(loaded.cert.notAfterMs);
      const token = this.d.readToken();
      if (token) {
        log.warn({ event: "reenrolling", executor_id: id, cert_expired_at: expired }, `the identity of executor ${id} expired at ${expired}; re-enrolling with the token from ${opts.tokenSource}`);
        await this.enroll(token, "identity expired");
        return;
      }
      throw new DaemonExit(
        ExitCode.REENROLL_REQUIRED,
        `the identity of executor ${id} expired at ${expired} while the executor was stopped; re-enroll: create a token with "tether token create" and start again with --token-file FILE (the expired identity in ${opts.stateDir} is then replaced)`,
        "identity.expired",
      );
    }
    if (this.d.readToken() !== undefined) {
      log.info({ event: "token.ignored", executor_id: id }, `reusing the identity of executor ${id} in ${opts.stateDir}; the enrollment token is not used`);
    }
    log.info(
      { event: "identity.loaded", executor_id: id, last_epoch: loaded.session.epoch, cert_expires_at: rfc3339(loaded.cert.notAfterMs) },
      `loaded the identity of executor ${id}`,
    );
    if (loaded.caPem && (opts.caFilePem || opts.caPin)) {
      log.info(
        { event: "ca_option.unused", executor_id: id, trust_bundle_version: loaded.trustVersion },
        `verifying the controller with the trust bundle saved in ${opts.stateDir}/ca.pem; --ca-file / --ca-fingerprint are used only until one is saved`,
      );
    }
    const r = loaded.record;
    const { endpoints } = this.d.client;
    // Several replicas: begin with the one that answered last (a dead first URL costs nothing at each start).
    endpoints.prefer(loaded.session.controller_url);
    if (!endpoints.urls.includes(r.controller_url)) {
      log.info({ event: "controller.changed", executor_id: id, enrolled_with: r.controller_url }, `enrolled with ${r.controller_url}, now talking to ${endpoints.urls.join(", ")}`);
    }
    if (JSON.stringify(r.labels) !== JSON.stringify(opts.labels) || (opts.name !== undefined && opts.name !== r.name)) {
      log.warn({ event: "labels.unchanged", executor_id: id, labels: r.labels, name: r.name }, "--label/--name apply at enrollment only; the controller keeps the enrolled ones");
    }
    identity.installCredentials();
    const { creds, reactions } = this.d;
    await reactions.run("reregister", () => creds.reregister(undefined, "restart"));
    if (loaded.interruptedRotation) {
      log.warn({ event: "cert.rotation_resumed", executor_id: id }, "a certificate rotation was interrupted; rotating again now");
      await reactions.run("certificate renewal", () => creds.rotateCert());
    }
  }

  /** Re-enrollment after the controller stopped accepting this identity (CERT_REQUIRED) while running. */
  reenroll(token: string, code: string): Promise<void> {
    const { log, identity } = this.d;
    return this.d.creds.exclusive(async () => {
      const id = identity.executorId;
      log.warn({ event: "reenrolling", executor_id: id, code }, `the controller no longer accepts executor ${id} (${code}); re-enrolling with the token from ${this.d.opts.tokenSource}`);
      this.d.work.drop("identity-lost");
      await this.enroll(token, code);
      this.d.run.heartbeatWake.fire();
    });
  }

  /** What the registration verifies the controller with: the bundle held, else --ca-file, else the pinned CA. */
  private async registrationTrust(): Promise<string> {
    const { identity, opts, log, client, reactions, run } = this.d;
    if (identity.caPem) return identity.caPem;
    if (opts.caFilePem) return opts.caFilePem;
    if (opts.caPin) return (this.pinned ??= await pinnedTrust({ log, client, reactions, pin: opts.caPin, signal: run.signal }));
    throw new DaemonExit(ExitCode.USAGE, "no CA to verify the controller with: start with --ca-file FILE or --ca-fingerprint SHA256:HEX", "usage");
  }

  /** Registers with an enrollment token: fresh key, CSR, `POST /register`, identity committed to disk. */
  private async enroll(token: string, reason: string): Promise<void> {
    const { opts, log, identity } = this.d;
    const trust = await this.registrationTrust();
    const { keyPem, csrPem } = await newKeyAndCsr(opts.keyType, opts.name ?? "tether-executor");
    const req = {
      enrollment_token: token,
      csr_pem: csrPem,
      ...(opts.name ? { name: opts.name } : {}),
      labels: opts.labels,
      capacity: opts.capacity,
    };
    const res = await this.d.reactions.run("register", () => this.d.client.register(req, trust, { signal: this.d.run.signal }), { inCredOp: true });
    const reg = res.data;
    validateRegistration(reg, keyPem);
    const now = this.d.now();
    const info = certInfo(reg.certificate_pem);
    const record: IdentityRecord = {
      version: 1,
      executor_id: reg.executor_id,
      hmac_key: reg.hmac_key,
      // The replica that registered it (any of them serves it from now on).
      controller_url: res.url,
      ...(opts.name ? { name: opts.name } : {}),
      labels: opts.labels,
      key_type: opts.keyType,
      enrolled_at: rfc3339(now),
    };
    const session: SessionRecord = {
      version: 1,
      executor_id: reg.executor_id,
      epoch: reg.epoch,
      jwt: reg.jwt,
      jwt_issued_at: rfc3339(jwtIssuedAtMs(reg.jwt) ?? now),
      jwt_expires_at: reg.jwt_expires_at,
      cert_fingerprint: info.fingerprint,
      cert_received_at: rfc3339(now),
      cert_expires_at: reg.cert_expires_at,
      last_contact_at: rfc3339(res.receivedAtMs),
      controller_url: res.url,
      heartbeat_interval_s: reg.heartbeat_interval_s,
    };
    const previous = identity.executorId;
    identity.enrolledHere = true;
    identity.acceptedSinceEnroll = false;
    // An older controller sends no version: 0, and the first heartbeat naming one makes the daemon fetch.
    const trustVersion = reg.trust_bundle_version ?? 0;
    this.d.store.saveEnrollment({ record, keyPem, certPem: reg.certificate_pem, caPem: reg.ca_bundle_pem, trustVersion, session });
    identity.adopt({
      executorId: reg.executor_id, hmacKey: Buffer.from(reg.hmac_key, "base64url"), record, keyPem, certPem: reg.certificate_pem,
      cert: info, caPem: reg.ca_bundle_pem, trustVersion, session, pendingPromotion: false, interruptedRotation: false,
    });
    identity.installCredentials();
    log.info(
      {
        event: "enrolled", executor_id: reg.executor_id, epoch: reg.epoch, cert_expires_at: reg.cert_expires_at, jwt_expires_at: reg.jwt_expires_at,
        reason, ...(previous && previous !== reg.executor_id ? { previous_executor_id: previous } : {}),
      },
      `enrolled as executor ${reg.executor_id}`,
    );
  }
}

/** The controller's registration answer must be for our key, name our executor and chain to the bundle it sent. */
function validateRegistration(reg: RegisterResponse, keyPem: string): void {
  const problems: string[] = [];
  if (typeof reg.executor_id !== "string" || !reg.executor_id) problems.push("no executor_id");
  if (!isHmacKey(reg.hmac_key)) problems.push("hmac_key is not 32 bytes");
  if (typeof reg.jwt !== "string") problems.push("no jwt");
  if (typeof reg.certificate_pem !== "string" || !keyMatchesCert(keyPem, reg.certificate_pem)) problems.push("the certificate is not for our key");
  else if (certInfo(reg.certificate_pem).executorId !== reg.executor_id) problems.push("the certificate names another executor");
  else if (!chainsTo(reg.certificate_pem, reg.ca_bundle_pem)) problems.push("the certificate does not chain to the returned CA bundle");
  const v = reg.trust_bundle_version;
  if (v !== undefined && !(Number.isSafeInteger(v) && v >= 0)) problems.push("trust_bundle_version is not a whole number");
  const unusable = typeof reg.ca_bundle_pem === "string" ? bundleProblem(reg.ca_bundle_pem) : "missing";
  if (unusable) problems.push(`the returned CA bundle is unusable: ${unusable}`);
  if (problems.length) throw new DaemonExit(ExitCode.ERROR, `the controller's registration answer is unusable: ${problems.join("; ")}`, "enrollment.invalid_response");
}
