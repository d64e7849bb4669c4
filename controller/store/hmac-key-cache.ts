/**
 * Keeps decrypted HMAC keys in memory in front of any Store: the HMAC guard asks for
 * them on every executor request, and reading plus decrypting each time costs more
 * than the rest of the check. Keys change only by `rotateHmacKey`, which passes through
 * here and evicts; the previous key's grace is a time the guard checks on every use.
 * With several replicas another one may rotate a key: the change feed evicts it, and
 * while the feed is not live the cache steps aside and every request reads the store
 * (ARCHITECTURE: caches never weaken a guarantee).
 */
import { LocalChangeFeed, type ChangeFeed } from "./changes.ts";
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
  /** Raised by every eviction: a read that began before one must not fill the cache. */
  private generation = 0;

  constructor(private readonly inner: Store, private readonly feed: ChangeFeed = new LocalChangeFeed()) {
    feed.subscribe((c) => {
      if (c.kind === "executor") this.evict(c.id);
    });
    feed.onResync(() => {
      this.generation++;
      this.keys.clear();
    });
  }

  private evict(id: string): void {
    this.generation++;
    this.keys.delete(id);
  }

  getHmacKeys(id: string): Promise<HmacKeys | undefined> {
    if (!this.feed.live()) return this.inner.getHmacKeys(id);
    const cached = this.keys.get(id);
    if (cached) return Promise.resolve(cached);
    const generation = this.generation;
    return this.inner.getHmacKeys(id).then((keys) => {
      if (keys && generation === this.generation && this.feed.live()) this.keys.set(id, keys);
      return keys;
    });
  }

  async rotateHmacKey(id: string, key: Buffer, previousUntil: number): Promise<void> {
    this.evict(id);
    try {
      await this.inner.rotateHmacKey(id, key, previousUntil);
    } finally {
      this.evict(id); // a read racing the write must not keep the old pair
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
