/**
 * Keeps decrypted HMAC keys in memory in front of any Store: the HMAC guard asks for
 * one on every executor request, and reading plus decrypting it each time costs more
 * than the rest of the check. Valid because an executor's HMAC key never changes
 * today; when keys rotate (PROTOCOL §7.4) the rotation must evict here, and with
 * several replicas only while the eviction channel is known to be live.
 */
import type {
  ApiTokenRecord,
  CertRotation,
  EnrollmentTokenRecord,
  ExecutorRunStatus,
  NewExecutor,
  Store,
} from "./types.ts";
import type { CertThumbprint } from "../../shared/fingerprint.ts";

export class HmacKeyCache implements Store {
  private readonly keys = new Map<string, Buffer>();

  constructor(private readonly inner: Store) {}

  getHmacKey(id: string): Promise<Buffer | undefined> {
    const cached = this.keys.get(id);
    if (cached) return Promise.resolve(cached);
    return this.inner.getHmacKey(id).then((key) => {
      if (key) this.keys.set(id, key);
      return key;
    });
  }

  // Everything else goes straight through.
  insertEnrollmentToken(t: EnrollmentTokenRecord) { return this.inner.insertEnrollmentToken(t); }
  listEnrollmentTokens() { return this.inner.listEnrollmentTokens(); }
  revokeEnrollmentToken(id: string, now: number) { return this.inner.revokeEnrollmentToken(id, now); }
  checkEnrollmentToken(tokenHash: string, now: number) { return this.inner.checkEnrollmentToken(tokenHash, now); }
  enrollExecutor(tokenHash: string, e: NewExecutor) { return this.inner.enrollExecutor(tokenHash, e); }
  insertApiToken(t: ApiTokenRecord, opts?: { onlyIfNoActiveAdmin?: boolean }) { return this.inner.insertApiToken(t, opts); }
  getApiTokenByHash(tokenHash: string) { return this.inner.getApiTokenByHash(tokenHash); }
  getApiToken(id: string) { return this.inner.getApiToken(id); }
  listApiTokens() { return this.inner.listApiTokens(); }
  revokeApiToken(id: string, now: number) { return this.inner.revokeApiToken(id, now); }
  touchApiToken(id: string, ip: string, now: number) { return this.inner.touchApiToken(id, ip, now); }
  getExecutor(id: string) { return this.inner.getExecutor(id); }
  getExecutorAuth(id: string) { return this.inner.getExecutorAuth(id); }
  listExecutors() { return this.inner.listExecutors(); }
  rotateCertificate(id: string, rotation: CertRotation) { return this.inner.rotateCertificate(id, rotation); }
  confirmCertificate(id: string, fingerprint: CertThumbprint) { return this.inner.confirmCertificate(id, fingerprint); }
  bumpEpoch(id: string) { return this.inner.bumpEpoch(id); }
  recordHeartbeat(id: string, status: ExecutorRunStatus, now: number) { return this.inner.recordHeartbeat(id, status, now); }
  revokeExecutor(id: string, now: number) { return this.inner.revokeExecutor(id, now); }
  setDrain(id: string, drain: boolean) { return this.inner.setDrain(id, drain); }
  rememberNonce(executorId: string, nonce: string, expiresAt: number) { return this.inner.rememberNonce(executorId, nonce, expiresAt); }
  pruneNonces(now: number) { return this.inner.pruneNonces(now); }
  ping() { return this.inner.ping(); }
  close() { return this.inner.close(); }
}
