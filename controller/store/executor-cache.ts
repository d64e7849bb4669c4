/**
 * Keeps decrypted HMAC keys and executors' auth state in memory in front of any Store:
 * the guard chain asks for both on every executor request, and reading (plus
 * decrypting) each time costs more than the rest of the check. Changes
 * made through this process pass through here and evict; another replica's arrive on
 * the change feed and evict; while the feed is not live the cache steps aside and every
 * request reads the store (ARCHITECTURE: caches never weaken a guarantee).
 *
 * The feeds: on PostgreSQL every writer notifies and the feed is live while its
 * listening connection answers probes; on SQLite the feed is `PRAGMA data_version`,
 * asked before every answer from memory, and another process's commit (the CLI revoking
 * on --data-dir) drops everything — so a revocation counts at the next request either way.
 *
 * In a running controller it also defers plain last-seen refreshes
 * (last-seen-coalescer.ts); its own reads of executors flush them first.
 */
import { LocalChangeFeed, type ChangeFeed } from "./changes.ts";
import type {
  ApiTokenRecord,
  CertRotation,
  EnrollmentTokenRecord,
  ExecutorAuthState,
  ExecutorRunStatus,
  HmacKeys,
  NewExecutor,
  Store,
} from "./types.ts";
import type { CertThumbprint } from "../../shared/fingerprint.ts";
import type { LivenessBounds } from "./counts.ts";
import { LastSeenCoalescer } from "./last-seen-coalescer.ts";

export interface ExecutorCacheOptions {
  /** A running controller defers plain last-seen refreshes this long at most (last-seen-coalescer.ts); absent: every heartbeat is written at once. */
  deferLastSeenMs?: number;
  onDeferredWriteError?: (e: unknown) => void;
}

export class ExecutorCache implements Store {
  private readonly keys = new Map<string, HmacKeys>();
  private readonly auth = new Map<string, ExecutorAuthState>();
  /** Raised by every eviction: a read that began before one must not fill the cache. */
  private generation = 0;
  private readonly lastSeen: LastSeenCoalescer | undefined;

  constructor(
    private readonly inner: Store,
    private readonly feed: ChangeFeed = new LocalChangeFeed(),
    opts: ExecutorCacheOptions = {},
  ) {
    if (opts.deferLastSeenMs !== undefined && opts.deferLastSeenMs > 0) {
      this.lastSeen = new LastSeenCoalescer({
        deferMs: opts.deferLastSeenMs,
        tickMs: Math.max(10, Math.min(250, Math.floor(opts.deferLastSeenMs / 4))),
        write: (id, h) => inner.recordHeartbeat(id, h.status, h.now, h.version ?? undefined),
        onError: opts.onDeferredWriteError,
      });
    }
    feed.subscribe((c) => {
      if (c.kind === "executor") this.evict(c.id);
    });
    feed.onResync(() => {
      this.generation++;
      this.keys.clear();
      this.auth.clear();
    });
  }

  private evict(id: string): void {
    this.generation++;
    this.keys.delete(id);
    this.auth.delete(id);
  }

  /** A write that changes what is cached of `id`: evicted before, and after (a read racing it must not keep the old state). */
  private async changing<T>(id: string, write: () => Promise<T>): Promise<T> {
    this.evict(id);
    try {
      return await write();
    } finally {
      this.evict(id);
    }
  }

  getExecutorAuth(id: string): Promise<ExecutorAuthState | undefined> {
    if (!this.feed.live()) return this.inner.getExecutorAuth(id);
    const cached = this.auth.get(id);
    // A copy: the guard chain marks a confirmed certificate on the object it gets.
    if (cached) return Promise.resolve({ ...cached });
    const generation = this.generation;
    return this.inner.getExecutorAuth(id).then((state) => {
      if (state && generation === this.generation && this.feed.live()) this.auth.set(id, { ...state });
      return state;
    });
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

  rotateHmacKey(id: string, key: Buffer, previousUntil: number): Promise<void> {
    return this.changing(id, () => this.inner.rotateHmacKey(id, key, previousUntil));
  }
  rotateCertificate(id: string, rotation: CertRotation) { return this.changing(id, () => this.inner.rotateCertificate(id, rotation)); }
  confirmCertificate(id: string, fingerprint: CertThumbprint) { return this.changing(id, () => this.inner.confirmCertificate(id, fingerprint)); }
  bumpEpoch(id: string) { return this.changing(id, () => this.inner.bumpEpoch(id)); }
  revokeExecutor(id: string, now: number) { return this.changing(id, () => this.inner.revokeExecutor(id, now)); }
  setDrain(id: string, drain: boolean) { return this.changing(id, () => this.inner.setDrain(id, drain)); }

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
  // Reads of executors see every heartbeat this process took, deferred ones included.
  async getExecutor(id: string) { await this.lastSeen?.flush(); return this.inner.getExecutor(id); }
  async listExecutors() { await this.lastSeen?.flush(); return this.inner.listExecutors(); }
  async executorCounts(bounds: LivenessBounds) { await this.lastSeen?.flush(); return this.inner.executorCounts(bounds); }
  recordHeartbeat(id: string, status: ExecutorRunStatus, now: number, trustBundleVersion?: number) {
    if (this.lastSeen) return this.lastSeen.record(id, { status, now, version: trustBundleVersion ?? null });
    return this.inner.recordHeartbeat(id, status, now, trustBundleVersion);
  }
  rememberNonce(executorId: string, nonce: string, expiresAt: number) { return this.inner.rememberNonce(executorId, nonce, expiresAt); }
  pruneNonces(now: number) { return this.inner.pruneNonces(now); }
  nonceCount() { return this.inner.nonceCount(); }
  ping() { return this.inner.ping(); }
  readSettings() { return this.inner.readSettings(); }
  writeSettings(values: Record<string, string>, now: number) { return this.inner.writeSettings(values, now); }
  async close() {
    await this.lastSeen?.close();
    return this.inner.close();
  }
}
