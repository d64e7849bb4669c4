/**
 * The embedded default store: better-sqlite3 in WAL mode, versioned migrations,
 * statements prepared once. Safe to open from the CLI while the controller runs.
 */
import Database from "better-sqlite3";
import type { Statement } from "better-sqlite3";
import { migrations } from "./migrations.ts";
import type { KeyEncryptor } from "./key-encryption.ts";
import { BACKSTOP_AUTOCHECKPOINT_PAGES, WalCheckpointer } from "./wal-checkpointer.ts";
import type {
  ApiTokenRecord,
  ApiTokenRole,
  CertRotation,
  EnrollmentTokenRecord,
  ExecutorAuthState,
  ExecutorRecord,
  ExecutorRunStatus,
  NewExecutor,
  Store,
  TokenDenyReason,
} from "./types.ts";

export const DB_FILE = "tether.db";

interface ExecutorRow {
  id: string; name: string; labels: string; capacity: number; epoch: number; status: string;
  cert_fp: string; cert_issued_at: number; cert_expires_at: number; prev_cert_fp: string | null;
  prev_cert_grace_until: number | null; created_at: number; last_seen_at: number | null;
  revoked_at: number | null; drain: number; enrollment_token_id: string | null;
}
interface TokenRow {
  id: string; token_hash: string; created_at: number; expires_at: number; max_uses: number;
  uses: number; revoked_at: number | null; labels: string;
}

interface ApiTokenRow {
  id: string; name: string; role: string; token_hash: string; created_at: number; created_by: string;
  expires_at: number | null; revoked_at: number | null; last_used_at: number | null; last_used_ip: string | null;
}

function toApiToken(r: ApiTokenRow): ApiTokenRecord {
  return {
    id: r.id, name: r.name, role: r.role as ApiTokenRole, tokenHash: r.token_hash, createdAt: r.created_at,
    createdBy: r.created_by, expiresAt: r.expires_at, revokedAt: r.revoked_at, lastUsedAt: r.last_used_at,
    lastUsedIp: r.last_used_ip,
  };
}

function toExecutor(r: ExecutorRow): ExecutorRecord {
  return {
    id: r.id, name: r.name, labels: JSON.parse(r.labels), capacity: r.capacity, epoch: r.epoch,
    status: r.status as ExecutorRunStatus, certFingerprint: r.cert_fp, certIssuedAt: r.cert_issued_at,
    certExpiresAt: r.cert_expires_at, prevCertFingerprint: r.prev_cert_fp,
    prevCertGraceUntil: r.prev_cert_grace_until, createdAt: r.created_at, lastSeenAt: r.last_seen_at,
    revokedAt: r.revoked_at, drain: r.drain === 1, enrollmentTokenId: r.enrollment_token_id,
  };
}
function toToken(r: TokenRow): EnrollmentTokenRecord {
  return {
    id: r.id, tokenHash: r.token_hash, createdAt: r.created_at, expiresAt: r.expires_at,
    maxUses: r.max_uses, uses: r.uses, revokedAt: r.revoked_at, labels: JSON.parse(r.labels),
  };
}
function denyReason(t: TokenRow | undefined, now: number): TokenDenyReason | undefined {
  if (!t) return "unknown";
  if (t.revoked_at !== null) return "revoked";
  if (t.expires_at <= now) return "expired";
  if (t.uses >= t.max_uses) return "used_up";
  return undefined;
}

export class SqliteStore implements Store {
  readonly db: Database.Database;
  private readonly keys: KeyEncryptor;
  private readonly hmacCache = new Map<string, Buffer>();
  private readonly s: Record<string, Statement>;
  /** Hot-path writes waiting for the next group commit (see groupWrite). */
  private groupQueue: { run: () => unknown; resolve: (v: any) => void; reject: (e: unknown) => void }[] = [];
  private groupScheduled = false;

  constructor(path: string, keys: KeyEncryptor) {
    this.db = new Database(path);
    this.keys = keys;
    this.db.pragma("journal_mode = WAL");
    this.db.pragma("synchronous = NORMAL");
    this.db.pragma("busy_timeout = 5000");
    this.db.pragma("foreign_keys = ON");
    this.migrate();
    const p = (sql: string) => this.db.prepare(sql);
    this.s = {
      insertToken: p(`INSERT INTO enrollment_tokens (id, token_hash, created_at, expires_at, max_uses, uses, revoked_at, labels)
                      VALUES (@id, @tokenHash, @createdAt, @expiresAt, @maxUses, @uses, @revokedAt, @labels)`),
      listTokens: p(`SELECT * FROM enrollment_tokens ORDER BY created_at`),
      revokeToken: p(`UPDATE enrollment_tokens SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL`),
      tokenByHash: p(`SELECT * FROM enrollment_tokens WHERE token_hash = ?`),
      consumeToken: p(`UPDATE enrollment_tokens SET uses = uses + 1
                       WHERE token_hash = ? AND revoked_at IS NULL AND expires_at > ? AND uses < max_uses`),
      insertExecutor: p(`INSERT INTO executors (id, name, labels, capacity, epoch, status, cert_fp, cert_issued_at,
                           cert_expires_at, hmac_key_enc, created_at, last_seen_at, enrollment_token_id)
                         VALUES (@id, @name, @labels, @capacity, 1, 'ready', @certFingerprint, @certIssuedAt,
                           @certExpiresAt, @hmacKeyEnc, @now, @now, @tokenId)`),
      getExecutor: p(`SELECT * FROM executors WHERE id = ?`),
      getAuth: p(`SELECT id, epoch, cert_fp, prev_cert_fp, prev_cert_grace_until, cert_issued_at, cert_expires_at, drain, revoked_at
                  FROM executors WHERE id = ?`),
      listExecutors: p(`SELECT * FROM executors ORDER BY created_at`),
      getHmac: p(`SELECT hmac_key_enc FROM executors WHERE id = ?`),
      rotateCert: p(`UPDATE executors SET prev_cert_fp = cert_fp, prev_cert_grace_until = @prevCertGraceUntil,
                       cert_fp = @certFingerprint, cert_issued_at = @certIssuedAt, cert_expires_at = @certExpiresAt
                     WHERE id = @id`),
      bumpEpoch: p(`UPDATE executors SET epoch = epoch + 1 WHERE id = ? RETURNING epoch`),
      heartbeat: p(`UPDATE executors SET status = ?, last_seen_at = ? WHERE id = ?`),
      revoke: p(`UPDATE executors SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL`),
      setDrain: p(`UPDATE executors SET drain = ? WHERE id = ?`),
      insertNonce: p(`INSERT OR IGNORE INTO nonces (executor_id, nonce, expires_at) VALUES (?, ?, ?)`),
      pruneNonces: p(`DELETE FROM nonces WHERE expires_at <= ?`),
      insertApiToken: p(`INSERT INTO api_tokens (id, name, role, token_hash, created_at, created_by, expires_at, revoked_at, last_used_at, last_used_ip)
                         VALUES (@id, @name, @role, @tokenHash, @createdAt, @createdBy, @expiresAt, NULL, NULL, NULL)`),
      activeAdmin: p(`SELECT 1 FROM api_tokens WHERE role = 'admin' AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > ?) LIMIT 1`),
      apiTokenByHash: p(`SELECT * FROM api_tokens WHERE token_hash = ?`),
      apiTokenById: p(`SELECT * FROM api_tokens WHERE id = ?`),
      listApiTokens: p(`SELECT * FROM api_tokens ORDER BY created_at, id`),
      revokeApiToken: p(`UPDATE api_tokens SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL`),
      apiTokenLastIp: p(`SELECT last_used_ip FROM api_tokens WHERE id = ?`),
      touchApiToken: p(`UPDATE api_tokens SET last_used_at = ?, last_used_ip = ? WHERE id = ?`),
    };
  }

  private migrate(): void {
    this.db.exec(`CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at INTEGER NOT NULL)`);
    const applied = new Set(
      (this.db.prepare(`SELECT version FROM schema_migrations`).all() as { version: number }[]).map((r) => r.version),
    );
    for (const m of migrations) {
      if (applied.has(m.version)) continue;
      this.db.transaction(() => {
        // Re-check inside the write transaction: another process may have migrated meanwhile.
        if (this.db.prepare(`SELECT 1 FROM schema_migrations WHERE version = ?`).get(m.version)) return;
        this.db.exec(m.sql);
        this.db.prepare(`INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)`).run(m.version, m.name, Date.now());
      }).immediate();
    }
  }

  async insertEnrollmentToken(t: EnrollmentTokenRecord): Promise<void> {
    this.s.insertToken!.run({ ...t, labels: JSON.stringify(t.labels) });
  }
  async listEnrollmentTokens(): Promise<EnrollmentTokenRecord[]> {
    return (this.s.listTokens!.all() as TokenRow[]).map(toToken);
  }
  async revokeEnrollmentToken(id: string, now: number): Promise<boolean> {
    return this.s.revokeToken!.run(now, id).changes === 1;
  }
  async checkEnrollmentToken(tokenHash: string, now: number) {
    const row = this.s.tokenByHash!.get(tokenHash) as TokenRow | undefined;
    const reason = denyReason(row, now);
    return reason ? { ok: false as const, reason } : { ok: true as const, token: toToken(row!) };
  }
  async enrollExecutor(tokenHash: string, e: NewExecutor) {
    const hmacKeyEnc = this.keys.encrypt(e.hmacKey, `executor:${e.id}`);
    return this.db.transaction(() => {
      const consumed = this.s.consumeToken!.run(tokenHash, e.now).changes === 1;
      if (!consumed) {
        const reason = denyReason(this.s.tokenByHash!.get(tokenHash) as TokenRow | undefined, e.now) ?? "used_up";
        return { ok: false as const, reason };
      }
      const tokenId = (this.s.tokenByHash!.get(tokenHash) as TokenRow).id;
      this.s.insertExecutor!.run({
        id: e.id, name: e.name, labels: JSON.stringify(e.labels), capacity: e.capacity,
        certFingerprint: e.certFingerprint, certIssuedAt: e.certIssuedAt, certExpiresAt: e.certExpiresAt,
        hmacKeyEnc, now: e.now, tokenId,
      });
      return { ok: true as const, tokenId };
    }).immediate();
  }

  async insertApiToken(t: ApiTokenRecord, opts: { onlyIfNoActiveAdmin?: boolean } = {}): Promise<boolean> {
    const row = { id: t.id, name: t.name, role: t.role, tokenHash: t.tokenHash, createdAt: t.createdAt, createdBy: t.createdBy, expiresAt: t.expiresAt };
    return this.db.transaction(() => {
      if (opts.onlyIfNoActiveAdmin && this.s.activeAdmin!.get(t.createdAt)) return false;
      this.s.insertApiToken!.run(row);
      return true;
    }).immediate();
  }
  async getApiTokenByHash(tokenHash: string): Promise<ApiTokenRecord | undefined> {
    const r = this.s.apiTokenByHash!.get(tokenHash) as ApiTokenRow | undefined;
    return r && toApiToken(r);
  }
  async getApiToken(id: string): Promise<ApiTokenRecord | undefined> {
    const r = this.s.apiTokenById!.get(id) as ApiTokenRow | undefined;
    return r && toApiToken(r);
  }
  async listApiTokens(): Promise<ApiTokenRecord[]> {
    return (this.s.listApiTokens!.all() as ApiTokenRow[]).map(toApiToken);
  }
  async revokeApiToken(id: string, now: number): Promise<boolean> {
    return this.s.revokeApiToken!.run(now, id).changes === 1;
  }
  async touchApiToken(id: string, ip: string, now: number): Promise<{ previousIp: string | null }> {
    return this.db.transaction(() => {
      const prev = this.s.apiTokenLastIp!.get(id) as { last_used_ip: string | null } | undefined;
      this.s.touchApiToken!.run(now, ip, id);
      return { previousIp: prev?.last_used_ip ?? null };
    }).immediate();
  }

  async getExecutor(id: string): Promise<ExecutorRecord | undefined> {
    const r = this.s.getExecutor!.get(id) as ExecutorRow | undefined;
    return r && toExecutor(r);
  }
  async getExecutorAuth(id: string): Promise<ExecutorAuthState | undefined> {
    const r = this.s.getAuth!.get(id) as
      | (Pick<ExecutorRow, "id" | "epoch" | "cert_fp" | "prev_cert_fp" | "prev_cert_grace_until" | "cert_issued_at" | "cert_expires_at" | "drain" | "revoked_at">)
      | undefined;
    if (!r) return undefined;
    return {
      id: r.id, epoch: r.epoch, certFingerprint: r.cert_fp, prevCertFingerprint: r.prev_cert_fp,
      prevCertGraceUntil: r.prev_cert_grace_until, certIssuedAt: r.cert_issued_at, certExpiresAt: r.cert_expires_at,
      drain: r.drain === 1, revoked: r.revoked_at !== null,
    };
  }
  async listExecutors(): Promise<ExecutorRecord[]> {
    return (this.s.listExecutors!.all() as ExecutorRow[]).map(toExecutor);
  }
  async getHmacKey(id: string): Promise<Buffer | undefined> {
    // An executor's HMAC key never changes, so a decrypted copy can be kept.
    const cached = this.hmacCache.get(id);
    if (cached) return cached;
    const r = this.s.getHmac!.get(id) as { hmac_key_enc: Buffer } | undefined;
    if (!r) return undefined;
    const key = this.keys.decrypt(r.hmac_key_enc, `executor:${id}`);
    this.hmacCache.set(id, key);
    return key;
  }
  async rotateCertificate(id: string, rot: CertRotation): Promise<void> {
    this.s.rotateCert!.run({ id, ...rot });
  }
  async bumpEpoch(id: string): Promise<number> {
    const r = this.s.bumpEpoch!.get(id) as { epoch: number } | undefined;
    if (!r) throw new Error(`unknown executor ${id}`);
    return r.epoch;
  }
  async recordHeartbeat(id: string, status: ExecutorRunStatus, now: number): Promise<void> {
    await this.groupWrite(() => this.s.heartbeat!.run(status, now, id));
  }
  async revokeExecutor(id: string, now: number): Promise<boolean> {
    return this.s.revoke!.run(now, id).changes === 1;
  }
  async setDrain(id: string, drain: boolean): Promise<boolean> {
    return this.s.setDrain!.run(drain ? 1 : 0, id).changes === 1;
  }

  async rememberNonce(executorId: string, nonce: string, expiresAt: number): Promise<boolean> {
    return this.groupWrite(() => this.s.insertNonce!.run(executorId, nonce, expiresAt).changes === 1);
  }
  async pruneNonces(now: number): Promise<number> {
    return this.s.pruneNonces!.run(now).changes;
  }

  /**
   * Moves WAL checkpoints (and their fsync) to a background thread; for the running
   * controller, not for short-lived CLI commands. See wal-checkpointer.ts.
   */
  checkpointInBackground(intervalMs: number, onError: (message: string) => void): WalCheckpointer {
    this.db.pragma(`wal_autocheckpoint = ${BACKSTOP_AUTOCHECKPOINT_PAGES}`);
    return new WalCheckpointer(this.db.name, intervalMs, onError);
  }

  /**
   * Group commit for the writes every heartbeat makes (its nonce, its last-seen time):
   * they are queued and run together in one transaction at the end of the current
   * event-loop turn, and each caller's promise settles only after that COMMIT — so a
   * nonce is durable before the request it belongs to is answered, exactly as with one
   * transaction per write, at a fraction of the cost under load (one WAL commit per
   * batch instead of per write). No transaction stays open between turns, so the other
   * store methods and other processes (the CLI) see no difference.
   */
  private groupWrite<T>(run: () => T): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      this.groupQueue.push({ run, resolve, reject });
      if (!this.groupScheduled) {
        this.groupScheduled = true;
        setImmediate(() => this.flushGroup());
      }
    });
  }

  private flushGroup(): void {
    this.groupScheduled = false;
    const batch = this.groupQueue;
    if (batch.length === 0) return;
    this.groupQueue = [];
    const results: ({ ok: true; value: unknown } | { ok: false; error: unknown })[] = [];
    try {
      this.db.transaction(() => {
        for (const w of batch) {
          try {
            results.push({ ok: true, value: w.run() });
          } catch (error) {
            results.push({ ok: false, error }); // that statement alone is undone by SQLite
          }
        }
      }).immediate();
    } catch (e) {
      for (const w of batch) w.reject(e);
      return;
    }
    batch.forEach((w, i) => {
      const r = results[i]!;
      if (r.ok) w.resolve(r.value);
      else w.reject(r.error);
    });
  }

  async close(): Promise<void> {
    if (this.db.open) this.flushGroup();
    if (this.db.open) this.db.close();
  }
}
