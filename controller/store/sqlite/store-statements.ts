/** The main store's SQL, prepared once per connection, typed by parameters and row. */
import type Database from "better-sqlite3";
import type { ExecutorRunStatus } from "../types.ts";
import type { ApiTokenRow, ExecutorAuthRow, ExecutorRow, TokenRow } from "./rows.ts";
import { livenessSql, type LivenessBounds } from "../counts.ts";

interface TokenParams {
  id: string; tokenHash: string; createdAt: number; expiresAt: number; maxUses: number; uses: number;
  revokedAt: number | null; labels: string;
}
interface ExecutorParams {
  id: string; name: string; labels: string; capacity: number; certFingerprint: string; certIssuedAt: number;
  certExpiresAt: number; hmacKeyEnc: Buffer; now: number; tokenId: string; certCaId: string | null;
}
interface RotationParams {
  id: string; certFingerprint: string; certIssuedAt: number; certExpiresAt: number; prevCertGraceUntil: number; certCaId: string | null;
}
interface ApiTokenParams {
  id: string; name: string; role: string; tokenHash: string; createdAt: number; createdBy: string; expiresAt: number | null;
}

export type StoreStatements = ReturnType<typeof prepareStoreStatements>;

export function prepareStoreStatements(db: Database.Database) {
  return {
    ping: db.prepare<[], { n: number }>(`SELECT count(*) AS n FROM schema_migrations`),
    insertToken: db.prepare<TokenParams>(
      `INSERT INTO enrollment_tokens (id, token_hash, created_at, expires_at, max_uses, uses, revoked_at, labels)
       VALUES (@id, @tokenHash, @createdAt, @expiresAt, @maxUses, @uses, @revokedAt, @labels)`,
    ),
    listTokens: db.prepare<[], TokenRow>(`SELECT * FROM enrollment_tokens ORDER BY created_at`),
    revokeToken: db.prepare<[now: number, id: string]>(`UPDATE enrollment_tokens SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL`),
    tokenByHash: db.prepare<[tokenHash: string], TokenRow>(`SELECT * FROM enrollment_tokens WHERE token_hash = ?`),
    consumeToken: db.prepare<[tokenHash: string, now: number]>(
      `UPDATE enrollment_tokens SET uses = uses + 1
       WHERE token_hash = ? AND revoked_at IS NULL AND expires_at > ? AND uses < max_uses`,
    ),
    insertExecutor: db.prepare<ExecutorParams>(
      `INSERT INTO executors (id, name, labels, capacity, epoch, status, cert_fp, cert_issued_at,
         cert_expires_at, hmac_key_enc, created_at, last_seen_at, enrollment_token_id, cert_ca_id)
       VALUES (@id, @name, @labels, @capacity, 1, 'ready', @certFingerprint, @certIssuedAt,
         @certExpiresAt, @hmacKeyEnc, @now, @now, @tokenId, @certCaId)`,
    ),
    getExecutor: db.prepare<[id: string], ExecutorRow>(`SELECT * FROM executors WHERE id = ?`),
    getAuth: db.prepare<[id: string], ExecutorAuthRow>(
      `SELECT id, epoch, cert_fp, prev_cert_fp, prev_cert_grace_until, cert_issued_at, cert_expires_at, drain, revoked_at, cert_confirmed,
         cert_ca_id
       FROM executors WHERE id = ?`,
    ),
    listExecutors: db.prepare<[], ExecutorRow>(`SELECT * FROM executors ORDER BY created_at`),
    getHmac: db.prepare<[id: string], { hmac_key_enc: Buffer; prev_hmac_key_enc: Buffer | null; prev_hmac_until: number | null }>(
      `SELECT hmac_key_enc, prev_hmac_key_enc, prev_hmac_until FROM executors WHERE id = ?`,
    ),
    rotateHmac: db.prepare<{ id: string; keyEnc: Buffer; previousUntil: number }>(
      `UPDATE executors SET prev_hmac_key_enc = hmac_key_enc, prev_hmac_until = @previousUntil, hmac_key_enc = @keyEnc WHERE id = @id`,
    ),
    rotateCert: db.prepare<RotationParams>(
      `UPDATE executors SET prev_cert_fp = cert_fp, prev_cert_grace_until = @prevCertGraceUntil,
         cert_fp = @certFingerprint, cert_issued_at = @certIssuedAt, cert_expires_at = @certExpiresAt, cert_confirmed = 0,
         cert_ca_id = @certCaId
       WHERE id = @id`,
    ),
    confirmCert: db.prepare<[id: string, fingerprint: string]>(
      `UPDATE executors SET cert_confirmed = 1 WHERE id = ? AND cert_fp = ? AND cert_confirmed = 0`,
    ),
    bumpEpoch: db.prepare<[id: string], { epoch: number }>(`UPDATE executors SET epoch = epoch + 1 WHERE id = ? RETURNING epoch`),
    // The bundle version only grows: an old heartbeat arriving late cannot undo an adoption.
    heartbeat: db.prepare<[status: ExecutorRunStatus, now: number, version: number | null, id: string]>(
      `UPDATE executors SET status = ?, last_seen_at = ?, trust_bundle_version = max(coalesce(trust_bundle_version, 0), coalesce(?, 0))
       WHERE id = ?`,
    ),
    revoke: db.prepare<[now: number, id: string]>(`UPDATE executors SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL`),
    setDrain: db.prepare<[drain: 0 | 1, id: string]>(`UPDATE executors SET drain = ? WHERE id = ?`),
    insertNonce: db.prepare<[executorId: string, nonce: string, expiresAt: number]>(
      `INSERT OR IGNORE INTO nonces (executor_id, nonce, expires_at) VALUES (?, ?, ?)`,
    ),
    pruneNonces: db.prepare<[now: number]>(`DELETE FROM nonces WHERE expires_at <= ?`),
    // Metrics, at scrape time: one scan each, never one query per executor.
    executorCounts: db.prepare<LivenessBounds, { liveness: string; n: number }>(
      `SELECT ${livenessSql("@suspectBefore", "@offlineBefore")} AS liveness, count(*) AS n FROM executors GROUP BY liveness`,
    ),
    nonceCount: db.prepare<[], number>(`SELECT count(*) FROM nonces`).pluck(),
    insertApiToken: db.prepare<ApiTokenParams>(
      `INSERT INTO api_tokens (id, name, role, token_hash, created_at, created_by, expires_at, revoked_at, last_used_at, last_used_ip)
       VALUES (@id, @name, @role, @tokenHash, @createdAt, @createdBy, @expiresAt, NULL, NULL, NULL)`,
    ),
    activeAdmin: db.prepare<[now: number], 1>(
      `SELECT 1 FROM api_tokens WHERE role = 'admin' AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > ?) LIMIT 1`,
    ).pluck(),
    apiTokenByHash: db.prepare<[tokenHash: string], ApiTokenRow>(`SELECT * FROM api_tokens WHERE token_hash = ?`),
    apiTokenById: db.prepare<[id: string], ApiTokenRow>(`SELECT * FROM api_tokens WHERE id = ?`),
    listApiTokens: db.prepare<[], ApiTokenRow>(`SELECT * FROM api_tokens ORDER BY created_at, id`),
    revokeApiToken: db.prepare<[now: number, id: string]>(`UPDATE api_tokens SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL`),
    apiTokenLastIp: db.prepare<[id: string], { last_used_ip: string | null }>(`SELECT last_used_ip FROM api_tokens WHERE id = ?`),
    touchApiToken: db.prepare<[now: number, ip: string, id: string]>(`UPDATE api_tokens SET last_used_at = ?, last_used_ip = ? WHERE id = ?`),
    readSettings: db.prepare<[], { name: string; value: string }>(`SELECT name, value FROM controller_settings`),
    writeSetting: db.prepare<[name: string, value: string, now: number]>(
      `INSERT INTO controller_settings (name, value, updated_at) VALUES (?, ?, ?)
       ON CONFLICT (name) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at`,
    ),
  };
}
