/**
 * The identity the daemon holds in memory: identity.json, the key and certificate
 * in use, the trust bundle and session.json. `adopt()` takes one loaded from disk
 * or just enrolled; `installCredentials()` puts it into the client in one step.
 * Disk writes go through the IdentityStore (crash-safe); this only mirrors it.
 *
 * The controller is verified with exactly the saved trust bundle; `--ca-file` is
 * used only while none is saved (a state dir from before bundles were saved).
 */
import type { Logger } from "pino";
import { certInfo, type CertInfo } from "../certificate.ts";
import type { ExecutorClient } from "../client.ts";
import type { IdentityStore, LoadedIdentity, SessionRecord } from "../identity-store.ts";
import type { RenewalPlanner } from "./renewal-plan.ts";

/** What is in use; `session` is a copy the credential operations update (then `saveSession()`). */
export type InUse = Pick<LoadedIdentity, "record" | "keyPem" | "certPem" | "cert" | "caPem" | "trustVersion" | "session">;

export class Identity {
  private inUse?: InUse;
  /** Fingerprint of a rotated certificate not yet confirmed by a successful request. */
  pendingPromotion?: CertInfo["fingerprint"];
  /** Whether the identity in use was enrolled by this process, and whether the controller has accepted it since. */
  enrolledHere = false;
  acceptedSinceEnroll = false;

  constructor(
    private readonly d: {
      log: Logger;
      store: IdentityStore;
      client: ExecutorClient;
      /** `--ca-file`: trusted only while no bundle is saved. */
      caFilePem?: string;
      planner: RenewalPlanner;
    },
  ) {}

  get executorId(): string | undefined {
    return this.inUse?.record.executor_id;
  }

  get epoch(): number | undefined {
    return this.inUse?.session.epoch;
  }

  get session(): SessionRecord | undefined {
    return this.inUse?.session;
  }

  get cert(): CertInfo | undefined {
    return this.inUse?.cert;
  }

  get caPem(): string {
    return this.inUse?.caPem ?? "";
  }

  /** The version of the saved bundle; 0 when unknown or none. */
  get trustVersion(): number {
    return this.inUse?.trustVersion ?? 0;
  }

  /** What the controller is verified with: the saved bundle, else `--ca-file`. */
  get trustPem(): string {
    return this.caPem || (this.d.caFilePem ?? "");
  }

  /** The identity in use; only called once one is (a bug otherwise). */
  get current(): InUse {
    if (!this.inUse) throw new Error("no executor identity in use yet");
    return this.inUse;
  }

  adopt(l: LoadedIdentity): void {
    this.inUse = {
      record: { ...l.record }, keyPem: l.keyPem, certPem: l.certPem, cert: l.cert, caPem: l.caPem, trustVersion: l.trustVersion, session: { ...l.session },
    };
    this.pendingPromotion = l.pendingPromotion ? l.cert.fingerprint : undefined;
    this.d.planner.reset(l.cert, this.inUse.session);
  }

  /**
   * A new key and certificate (a rotation) and the HMAC key that came with it, all
   * already staged on disk: in memory, and the session notes when it arrived.
   */
  useCertificate(keyPem: string, certPem: string, receivedAt: string, hmacKey: string | undefined): void {
    const cur = this.current;
    cur.keyPem = keyPem;
    cur.certPem = certPem;
    cur.cert = certInfo(certPem);
    if (hmacKey !== undefined) cur.record.hmac_key = hmacKey;
    cur.session.cert_fingerprint = cur.cert.fingerprint;
    cur.session.cert_received_at = receivedAt;
  }

  /** A new HMAC key for the certificate in use (a re-registration): saved first, then used by the next `installCredentials()`. */
  useHmacKey(hmacKey: string): void {
    this.d.store.saveHmacKey(hmacKey);
    this.current.record.hmac_key = hmacKey;
  }

  /** A new trust bundle: saved with its version (one atomic write), used by the next `installCredentials()`. */
  useTrust(caPem: string, version: number): void {
    const cur = this.current;
    this.d.store.saveTrust({ pem: caPem, version });
    cur.caPem = caPem;
    cur.trustVersion = version;
  }

  /** Puts the identity in memory into the client (a new agent when the certificate, key or trust changed). */
  installCredentials(): void {
    const { record, keyPem, certPem, session } = this.current;
    this.d.client.setCredentials({
      executorId: record.executor_id,
      keyPem,
      certPem,
      trustPem: this.trustPem,
      hmacKey: Buffer.from(record.hmac_key, "base64url"),
      jwt: session.jwt,
    });
  }

  /** A successful exchange: the controller accepts this identity; remember when and where we last reached it. */
  noteContact(receivedAtIso: string, generation: number, controllerUrl: string): void {
    if (generation > 0) this.acceptedSinceEnroll = true;
    if (this.inUse) {
      this.inUse.session.last_contact_at = receivedAtIso;
      // Written with the contact time anyway: knowing the replica in use costs no extra write.
      this.inUse.session.controller_url = controllerUrl;
      this.saveSession();
    }
  }

  /** CERT_REVOKED: remembered in session.json, so a restart does not even try. */
  markRevoked(atIso: string): void {
    if (!this.inUse || this.inUse.session.revoked_at) return;
    this.inUse.session.revoked_at = atIso;
    this.saveSession();
  }

  saveSession(): void {
    if (!this.inUse) return;
    try {
      this.d.store.saveSession(this.inUse.session);
    } catch (e) {
      this.d.log.error({ event: "error", err: (e as Error).message }, "could not save session.json");
    }
  }
}
