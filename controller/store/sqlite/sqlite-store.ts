/**
 * The embedded default store: better-sqlite3 in WAL mode, versioned migrations,
 * statements prepared once. Safe to open from the CLI while the controller runs.
 */
import Database from "better-sqlite3";
import { migrate } from "./migrations.ts";
import type { KeyEncryptor } from "../key-encryption.ts";
import { GroupCommit } from "./group-commit.ts";
import { durably } from "./durably.ts";
import { denyReason, toApiToken, toExecutor, toExecutorAuth, toToken } from "./rows.ts";
import { prepareStoreStatements, type StoreStatements } from "./store-statements.ts";
import type {
  ApiTokenRecord,
  CertRotation,
  EnrollmentTokenRecord,
  ExecutorAuthState,
  ExecutorRecord,
  ExecutorRunStatus,
  HmacKeys,
  NewExecutor,
  Store,
  TokenDenyReason,
} from "../types.ts";
import type { CertThumbprint } from "../../../shared/fingerprint.ts";
import { executorCountsFrom, type ExecutorCounts, type LivenessBounds } from "../counts.ts";

/** The database file in a controller's data dir. */
export const DB_FILE = "tether.db";

type EnrollResult = { ok: true; tokenId: string } | { ok: false; reason: TokenDenyReason };
type TokenCheck = { ok: true; token: EnrollmentTokenRecord } | { ok: false; reason: TokenDenyReason };

/** How long a statement waits for another connection's lock (SQLITE_BUSY after it: 503 UNAVAILABLE). */
export const DEFAULT_BUSY_TIMEOUT_MS = 5000;
/** A checkpoint that empties the WAL truncates the file back to this (it never shrinks by itself). */
export const WAL_SIZE_LIMIT_BYTES = 64 * 1024 * 1024;

export function openDatabase(path: string, busyTimeoutMs = DEFAULT_BUSY_TIMEOUT_MS): Database.Database {
  const db = new Database(path);
  db.pragma("journal_mode = WAL");
  // Durable against a crash of the process; on power loss the last commits may be lost (docs/security.md).
  db.pragma("synchronous = NORMAL");
  db.pragma(`busy_timeout = ${Math.max(0, Math.floor(busyTimeoutMs))}`);
  db.pragma(`journal_size_limit = ${WAL_SIZE_LIMIT_BYTES}`);
  db.pragma("foreign_keys = ON");
  migrate(db);
  return db;
}

export class SqliteStore implements Store {
  readonly db: Database.Database;
  private readonly keys: KeyEncryptor;
  private readonly s: StoreStatements;
  /** Hot-path writes (nonce, last seen) wait here for the next group commit. */
  private readonly group: GroupCommit;

  constructor(path: string, keys: KeyEncryptor, busyTimeoutMs?: number) {
    this.db = openDatabase(path, busyTimeoutMs);
    this.keys = keys;
    this.s = prepareStoreStatements(this.db);
    this.group = new GroupCommit(this.db);
  }

  async insertEnrollmentToken(t: EnrollmentTokenRecord): Promise<void> {
    this.s.insertToken.run({ ...t, labels: JSON.stringify(t.labels) });
  }
  async listEnrollmentTokens(): Promise<EnrollmentTokenRecord[]> {
    return this.s.listTokens.all().map(toToken);
  }
  async revokeEnrollmentToken(id: string, now: number): Promise<boolean> {
    return durably(this.db, () => this.s.revokeToken.run(now, id).changes === 1);
  }
  async checkEnrollmentToken(tokenHash: string, now: number): Promise<TokenCheck> {
    const row = this.s.tokenByHash.get(tokenHash);
    const reason = denyReason(row, now);
    if (reason || !row) return { ok: false, reason: reason ?? "unknown" };
    return { ok: true, token: toToken(row) };
  }
  async enrollExecutor(tokenHash: string, e: NewExecutor): Promise<EnrollResult> {
    const hmacKeyEnc = this.keys.encrypt(e.hmacKey, `executor:${e.id}`);
    return durably(this.db, () => this.db.transaction((): EnrollResult => {
      const consumed = this.s.consumeToken.run(tokenHash, e.now).changes === 1;
      const token = this.s.tokenByHash.get(tokenHash);
      if (!consumed || !token) return { ok: false, reason: denyReason(token, e.now) ?? "used_up" };
      this.s.insertExecutor.run({
        id: e.id, name: e.name, labels: JSON.stringify(e.labels), capacity: e.capacity,
        certFingerprint: e.certFingerprint, certIssuedAt: e.certIssuedAt, certExpiresAt: e.certExpiresAt,
        hmacKeyEnc, now: e.now, tokenId: token.id, certCaId: e.certCaId ?? null,
      });
      return { ok: true, tokenId: token.id };
    }).immediate());
  }

  async insertApiToken(t: ApiTokenRecord, opts: { onlyIfNoActiveAdmin?: boolean } = {}): Promise<boolean> {
    const row = { id: t.id, name: t.name, role: t.role, tokenHash: t.tokenHash, createdAt: t.createdAt, createdBy: t.createdBy, expiresAt: t.expiresAt };
    return durably(this.db, () => this.db.transaction(() => {
      if (opts.onlyIfNoActiveAdmin && this.s.activeAdmin.get(t.createdAt)) return false;
      this.s.insertApiToken.run(row);
      return true;
    }).immediate());
  }
  async getApiTokenByHash(tokenHash: string): Promise<ApiTokenRecord | undefined> {
    const r = this.s.apiTokenByHash.get(tokenHash);
    return r && toApiToken(r);
  }
  async getApiToken(id: string): Promise<ApiTokenRecord | undefined> {
    const r = this.s.apiTokenById.get(id);
    return r && toApiToken(r);
  }
  async listApiTokens(): Promise<ApiTokenRecord[]> {
    return this.s.listApiTokens.all().map(toApiToken);
  }
  async revokeApiToken(id: string, now: number): Promise<boolean> {
    return durably(this.db, () => this.s.revokeApiToken.run(now, id).changes === 1);
  }
  async touchApiToken(id: string, ip: string, now: number): Promise<{ previousIp: string | null }> {
    return this.db.transaction(() => {
      const prev = this.s.apiTokenLastIp.get(id);
      this.s.touchApiToken.run(now, ip, id);
      return { previousIp: prev?.last_used_ip ?? null };
    }).immediate();
  }

  async getExecutor(id: string): Promise<ExecutorRecord | undefined> {
    const r = this.s.getExecutor.get(id);
    return r && toExecutor(r);
  }
  async getExecutorAuth(id: string): Promise<ExecutorAuthState | undefined> {
    const r = this.s.getAuth.get(id);
    return r && toExecutorAuth(r);
  }
  async listExecutors(): Promise<ExecutorRecord[]> {
    return this.s.listExecutors.all().map(toExecutor);
  }
  /** Decrypts on every call; openStore wraps the store in a cache (executor-cache.ts). */
  async getHmacKeys(id: string): Promise<HmacKeys | undefined> {
    const r = this.s.getHmac.get(id);
    if (!r) return undefined;
    const aad = `executor:${id}`;
    const previous = r.prev_hmac_key_enc === null ? null : this.keys.decrypt(r.prev_hmac_key_enc, aad);
    return { current: this.keys.decrypt(r.hmac_key_enc, aad), previous, previousUntil: previous === null ? null : r.prev_hmac_until };
  }
  async rotateHmacKey(id: string, key: Buffer, previousUntil: number): Promise<void> {
    const keyEnc = this.keys.encrypt(key, `executor:${id}`);
    durably(this.db, () => this.s.rotateHmac.run({ id, keyEnc, previousUntil }));
  }
  async rotateCertificate(id: string, rot: CertRotation): Promise<void> {
    durably(this.db, () => this.s.rotateCert.run({ id, ...rot, certCaId: rot.certCaId ?? null }));
  }
  async confirmCertificate(id: string, fingerprint: CertThumbprint): Promise<void> {
    this.s.confirmCert.run(id, fingerprint);
  }
  async bumpEpoch(id: string): Promise<number> {
    const r = durably(this.db, () => this.s.bumpEpoch.get(id));
    if (!r) throw new Error(`unknown executor ${id}`);
    return r.epoch;
  }
  async recordHeartbeat(id: string, status: ExecutorRunStatus, now: number, trustBundleVersion?: number): Promise<void> {
    await this.group.write(() => this.s.heartbeat.run(status, now, trustBundleVersion ?? null, id));
  }
  async revokeExecutor(id: string, now: number): Promise<boolean> {
    return durably(this.db, () => this.s.revoke.run(now, id).changes === 1);
  }
  async setDrain(id: string, drain: boolean): Promise<boolean> {
    return this.s.setDrain.run(drain ? 1 : 0, id).changes === 1;
  }

  async rememberNonce(executorId: string, nonce: string, expiresAt: number): Promise<boolean> {
    return this.group.write(() => this.s.insertNonce.run(executorId, nonce, expiresAt).changes === 1);
  }
  async pruneNonces(now: number): Promise<number> {
    return this.s.pruneNonces.run(now).changes;
  }

  async executorCounts(bounds: LivenessBounds): Promise<ExecutorCounts> {
    return executorCountsFrom(this.s.executorCounts.all(bounds));
  }
  async nonceCount(): Promise<number> {
    return this.s.nonceCount.get() ?? 0;
  }

  /** The store answers: it can be read, and the write lock can be taken (within the busy timeout). */
  async ping(): Promise<void> {
    this.db.transaction(() => this.s.ping.get()).immediate();
  }

  /**
   * A write that an answer stands on — a 201 for a registration, a revocation, a token
   * minted or revoked, a certificate or epoch handed out — is synced at its COMMIT even
   * though the connection runs synchronous=NORMAL (docs/security.md). Heartbeat writes
   * are not: their fsync would stall every request in flight.
   */
  async readSettings(): Promise<Record<string, string>> {
    return Object.fromEntries(this.s.readSettings.all().map((r) => [r.name, r.value]));
  }
  async writeSettings(values: Record<string, string>, now: number): Promise<void> {
    this.db.transaction(() => {
      for (const [name, value] of Object.entries(values)) this.s.writeSetting.run(name, value, now);
    }).immediate();
  }

  async close(): Promise<void> {
    if (this.db.open) this.group.flush();
    if (this.db.open) this.db.close();
  }
}
