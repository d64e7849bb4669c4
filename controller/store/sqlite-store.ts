/**
 * The embedded default store: better-sqlite3 in WAL mode, versioned migrations,
 * statements prepared once. Safe to open from the CLI while the controller runs.
 */
import Database from "better-sqlite3";
import type { Statement } from "better-sqlite3";
import { migrations } from "./migrations.ts";
import type { KeyEncryptor } from "./key-encryption.ts";
import type {
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
    this.s.heartbeat!.run(status, now, id);
  }
  async revokeExecutor(id: string, now: number): Promise<boolean> {
    return this.s.revoke!.run(now, id).changes === 1;
  }
  async setDrain(id: string, drain: boolean): Promise<boolean> {
    return this.s.setDrain!.run(drain ? 1 : 0, id).changes === 1;
  }

  async rememberNonce(executorId: string, nonce: string, expiresAt: number): Promise<boolean> {
    return this.s.insertNonce!.run(executorId, nonce, expiresAt).changes === 1;
  }
  async pruneNonces(now: number): Promise<number> {
    return this.s.pruneNonces!.run(now).changes;
  }

  async close(): Promise<void> {
    if (this.db.open) this.db.close();
  }
}
