/**
 * Keeps decrypted HMAC keys in memory in front of any Store: the HMAC guard asks for
 * them on every executor request, and reading plus decrypting each time costs more
 * than the rest of the check. Keys change only by `rotateHmacKey`, which passes through
 * here and evicts; the previous key's grace is a time the guard checks on every use.
 * With several replicas a cache like this may only answer while its eviction channel
 * is known to be live (ARCHITECTURE: caches never weaken a guarantee).
 */
import type {
  ApiTokenRecord,
  CertRotation,
  EnrollmentTokenRecord,
  ExecutorRunStatus,
  HmacKeys,
  NewExecutor,
  Store,
} from "./types.ts";
import type { CertThumbprint } from "../../shared/fingerprint.ts";

export class HmacKeyCache implements Store {
  private readonly keys = new Map<string, HmacKeys>();

  constructor(private readonly inner: Store) {}

  getHmacKeys(id: string): Promise<HmacKeys | undefined> {
    const cached = this.keys.get(id);
    if (cached) return Promise.resolve(cached);
    return this.inner.getHmacKeys(id).then((keys) => {
      if (keys) this.keys.set(id, keys);
      return keys;
    });
  }

  async rotateHmacKey(id: string, key: Buffer, previousUntil: number): Promise<void> {
    this.keys.delete(id);
    try {
      await this.inner.rotateHmacKey(id, key, previousUntil);
    } finally {
      this.keys.delete(id); // a read racing the write must not keep the old pair
    }
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
  recordHeartbeat(id: string, status: ExecutorRunStatus, now: number, trustBundleVersion?: number) {
    return this.inner.recordHeartbeat(id, status, now, trustBundleVersion);
  }
  revokeExecutor(id: string, now: number) { return this.inner.revokeExecutor(id, now); }
  setDrain(id: string, drain: boolean) { return this.inner.setDrain(id, drain); }
  rememberNonce(executorId: string, nonce: string, expiresAt: number) { return this.inner.rememberNonce(executorId, nonce, expiresAt); }
  pruneNonces(now: number) { return this.inner.pruneNonces(now); }
  ping() { return this.inner.ping(); }
  readSettings() { return this.inner.readSettings(); }
  writeSettings(values: Record<string, string>, now: number) { return this.inner.writeSettings(values, now); }
  close() { return this.inner.close(); }
}
