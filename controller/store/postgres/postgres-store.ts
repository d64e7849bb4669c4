/**
 * The main store on PostgreSQL: tokens, executors, the replay store, settings. Every
 * method is one statement or one transaction; the races the contract names are settled
 * by the database (a conditional UPDATE … RETURNING for token uses, an advisory lock for
 * bootstrap tokens, a unique key for nonces), so any number of replicas may share it.
 * Writes that change what another replica caches notify CHANGE_CHANNEL in the same
 * statement or transaction (delivered on its commit).
 */
import type pg from "pg";
import type { CertThumbprint } from "../../../shared/fingerprint.ts";
import { encodeChange } from "../changes.ts";
import type { KeyEncryptor } from "../key-encryption.ts";
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
import { Batcher } from "./batch.ts";
import { executorCountsFrom, livenessSql, type ExecutorCounts, type LivenessBounds } from "../counts.ts";
import { inTransaction, notifyCall, NOTIFY_SQL, run } from "./pool.ts";
import {
  API_TOKEN_COLUMNS, decryptKey, denyReason, EXECUTOR_AUTH_COLUMNS, EXECUTOR_COLUMNS, TOKEN_COLUMNS, toApiToken, toExecutor,
  toExecutorAuth, toToken, type ApiTokenRow, type ExecutorAuthRow, type ExecutorRow, type TokenRow,
} from "./rows.ts";

type EnrollResult = { ok: true; tokenId: string } | { ok: false; reason: TokenDenyReason };
type TokenCheck = { ok: true; token: EnrollmentTokenRecord } | { ok: false; reason: TokenDenyReason };

/** pg_advisory_xact_lock key serializing bootstrap admin tokens ("tether" + 2). */
export const ADMIN_BOOTSTRAP_LOCK_KEY = 0x7465746865720002n;

const hmacAad = (id: string) => `executor:${id}`;
const executorChange = (id: string) => encodeChange({ kind: "executor", id });

interface NonceWrite { executorId: string; nonce: string; expiresAt: number }
interface HeartbeatWrite { id: string; status: ExecutorRunStatus; now: number; version: number | null }

/** An UPDATE of one executor that notifies its change when it matched: `$1` is the id, `$2` the change. */
function updateExecutorNotifying(set: string, where = ""): string {
  return `WITH u AS (UPDATE executors SET ${set} WHERE id = $1 ${where} RETURNING id)
          SELECT id, ${notifyCall(2)} FROM u`;
}

export class PostgresStore implements Store {
  private readonly nonces: Batcher<NonceWrite, boolean>;
  private readonly heartbeats: Batcher<HeartbeatWrite, void>;
  private closed = false;

  constructor(
    readonly pool: pg.Pool,
    private readonly keys: KeyEncryptor,
  ) {
    this.nonces = new Batcher((items) => this.writeNonces(items));
    this.heartbeats = new Batcher((items) => this.writeHeartbeats(items));
  }

  // ---- enrollment tokens

  async insertEnrollmentToken(t: EnrollmentTokenRecord): Promise<void> {
    await run(this.pool,
      `INSERT INTO enrollment_tokens (id, token_hash, created_at, expires_at, max_uses, uses, revoked_at, labels)
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`,
      [t.id, t.tokenHash, t.createdAt, t.expiresAt, t.maxUses, t.uses, t.revokedAt, JSON.stringify(t.labels)]);
  }
  async listEnrollmentTokens(): Promise<EnrollmentTokenRecord[]> {
    const r = await run<TokenRow>(this.pool, `SELECT ${TOKEN_COLUMNS} FROM enrollment_tokens ORDER BY created_at, seq`);
    return r.rows.map(toToken);
  }
  async revokeEnrollmentToken(id: string, now: number): Promise<boolean> {
    const r = await run(this.pool, `UPDATE enrollment_tokens SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL`, [id, now]);
    return r.rowCount === 1;
  }
  async checkEnrollmentToken(tokenHash: string, now: number): Promise<TokenCheck> {
    const row = await this.tokenByHash(tokenHash);
    const reason = denyReason(row, now);
    if (reason || !row) return { ok: false, reason: reason ?? "unknown" };
    return { ok: true, token: toToken(row) };
  }
  /**
   * One statement: the use is taken by a conditional UPDATE (row-locked, re-checked after
   * any concurrent use commits) and the executor inserted only from its RETURNING row.
   */
  async enrollExecutor(tokenHash: string, e: NewExecutor): Promise<EnrollResult> {
    const hmacKeyEnc = this.keys.encrypt(e.hmacKey, hmacAad(e.id));
    const r = await run<{ id: string }>(this.pool,
      `WITH consumed AS (
         UPDATE enrollment_tokens SET uses = uses + 1
         WHERE token_hash = $1 AND revoked_at IS NULL AND expires_at > $2 AND uses < max_uses
         RETURNING id
       ), inserted AS (
         INSERT INTO executors (id, name, labels, capacity, epoch, status, cert_fp, cert_issued_at, cert_expires_at, hmac_key_enc,
           created_at, last_seen_at, enrollment_token_id, cert_ca_id)
         SELECT $3, $4, $5, $6, 1, 'ready', $7, $8, $9, $10, $2, $2, consumed.id, $11 FROM consumed
         RETURNING enrollment_token_id
       )
       SELECT enrollment_token_id AS id FROM inserted`,
      [tokenHash, e.now, e.id, e.name, JSON.stringify(e.labels), e.capacity, e.certFingerprint, e.certIssuedAt, e.certExpiresAt,
        hmacKeyEnc, e.certCaId ?? null]);
    const tokenId = r.rows[0]?.id;
    if (tokenId !== undefined) return { ok: true, tokenId };
    return { ok: false, reason: denyReason(await this.tokenByHash(tokenHash), e.now) ?? "used_up" };
  }
  private async tokenByHash(tokenHash: string): Promise<TokenRow | undefined> {
    return (await run<TokenRow>(this.pool, `SELECT ${TOKEN_COLUMNS} FROM enrollment_tokens WHERE token_hash = $1`, [tokenHash])).rows[0];
  }

  // ---- operator API tokens

  /** A bootstrap takes an advisory lock, then checks and inserts: racing bootstraps run one after the other. */
  async insertApiToken(t: ApiTokenRecord, opts: { onlyIfNoActiveAdmin?: boolean } = {}): Promise<boolean> {
    const values = [t.id, t.name, t.role, t.tokenHash, t.createdAt, t.createdBy, t.expiresAt];
    const insert = `INSERT INTO api_tokens (id, name, role, token_hash, created_at, created_by, expires_at)
                    VALUES ($1, $2, $3, $4, $5, $6, $7)`;
    if (!opts.onlyIfNoActiveAdmin) {
      await run(this.pool, insert, values);
      return true;
    }
    return inTransaction(this.pool, async (tx) => {
      await tx.query(`SELECT pg_advisory_xact_lock($1)`, [ADMIN_BOOTSTRAP_LOCK_KEY.toString()]);
      const active = await tx.query(
        `SELECT 1 FROM api_tokens WHERE role = 'admin' AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > $1) LIMIT 1`,
        [t.createdAt]);
      if (active.rowCount) return false;
      await tx.query(insert, values);
      return true;
    });
  }
  async getApiTokenByHash(tokenHash: string): Promise<ApiTokenRecord | undefined> {
    const r = await run<ApiTokenRow>(this.pool, `SELECT ${API_TOKEN_COLUMNS} FROM api_tokens WHERE token_hash = $1`, [tokenHash]);
    return r.rows[0] && toApiToken(r.rows[0]);
  }
  async getApiToken(id: string): Promise<ApiTokenRecord | undefined> {
    const r = await run<ApiTokenRow>(this.pool, `SELECT ${API_TOKEN_COLUMNS} FROM api_tokens WHERE id = $1`, [id]);
    return r.rows[0] && toApiToken(r.rows[0]);
  }
  async listApiTokens(): Promise<ApiTokenRecord[]> {
    const r = await run<ApiTokenRow>(this.pool, `SELECT ${API_TOKEN_COLUMNS} FROM api_tokens ORDER BY created_at, id`);
    return r.rows.map(toApiToken);
  }
  async revokeApiToken(id: string, now: number): Promise<boolean> {
    const r = await run(this.pool, `UPDATE api_tokens SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL`, [id, now]);
    return r.rowCount === 1;
  }
  /** The previous address is read under the row lock the update takes, so two uses never both see the same one. */
  async touchApiToken(id: string, ip: string, now: number): Promise<{ previousIp: string | null }> {
    const r = await run<{ previous_ip: string | null }>(this.pool,
      `UPDATE api_tokens t SET last_used_at = $2, last_used_ip = $3
       FROM (SELECT id, last_used_ip FROM api_tokens WHERE id = $1 FOR UPDATE) old
       WHERE t.id = old.id RETURNING old.last_used_ip AS previous_ip`,
      [id, now, ip]);
    return { previousIp: r.rows[0]?.previous_ip ?? null };
  }

  // ---- executors

  async getExecutor(id: string): Promise<ExecutorRecord | undefined> {
    const r = await run<ExecutorRow>(this.pool, `SELECT ${EXECUTOR_COLUMNS} FROM executors WHERE id = $1`, [id]);
    return r.rows[0] && toExecutor(r.rows[0]);
  }
  async getExecutorAuth(id: string): Promise<ExecutorAuthState | undefined> {
    const r = await run<ExecutorAuthRow>(this.pool, `SELECT ${EXECUTOR_AUTH_COLUMNS} FROM executors WHERE id = $1`, [id], "executor_auth");
    return r.rows[0] && toExecutorAuth(r.rows[0]);
  }
  async listExecutors(): Promise<ExecutorRecord[]> {
    const r = await run<ExecutorRow>(this.pool, `SELECT ${EXECUTOR_COLUMNS} FROM executors ORDER BY created_at, seq`);
    return r.rows.map(toExecutor);
  }
  /** Decrypts on every call; a cache in front may keep them while the change feed is live. */
  async getHmacKeys(id: string): Promise<HmacKeys | undefined> {
    const r = await run<{ hmac_key_enc: Buffer; prev_hmac_key_enc: Buffer | null; prev_hmac_until: number | null }>(this.pool,
      `SELECT hmac_key_enc, prev_hmac_key_enc, prev_hmac_until FROM executors WHERE id = $1`, [id], "executor_hmac_keys");
    const row = r.rows[0];
    if (!row) return undefined;
    const what = `the HMAC key of executor ${id}`;
    const previous = row.prev_hmac_key_enc === null ? null : decryptKey(this.keys, row.prev_hmac_key_enc, hmacAad(id), what);
    return {
      current: decryptKey(this.keys, row.hmac_key_enc, hmacAad(id), what),
      previous,
      previousUntil: previous === null ? null : row.prev_hmac_until,
    };
  }
  async rotateHmacKey(id: string, key: Buffer, previousUntil: number): Promise<void> {
    const keyEnc = this.keys.encrypt(key, hmacAad(id));
    await run(this.pool,
      updateExecutorNotifying(`prev_hmac_key_enc = hmac_key_enc, prev_hmac_until = $3, hmac_key_enc = $4`),
      [id, executorChange(id), previousUntil, keyEnc]);
  }
  async rotateCertificate(id: string, rot: CertRotation): Promise<void> {
    await run(this.pool,
      updateExecutorNotifying(`prev_cert_fp = cert_fp, prev_cert_grace_until = $3, cert_fp = $4, cert_issued_at = $5,
        cert_expires_at = $6, cert_confirmed = false, cert_ca_id = $7`),
      [id, executorChange(id), rot.prevCertGraceUntil, rot.certFingerprint, rot.certIssuedAt, rot.certExpiresAt, rot.certCaId ?? null]);
  }
  /** Also notified (only when it changes, once per rotation): a replica must stop letting the previous certificate rotate credentials. */
  async confirmCertificate(id: string, fingerprint: CertThumbprint): Promise<void> {
    await run(this.pool, updateExecutorNotifying(`cert_confirmed = true`, `AND cert_fp = $3 AND NOT cert_confirmed`),
      [id, executorChange(id), fingerprint]);
  }
  async bumpEpoch(id: string): Promise<number> {
    const r = await run<{ epoch: number }>(this.pool,
      `WITH u AS (UPDATE executors SET epoch = epoch + 1 WHERE id = $1 RETURNING epoch)
       SELECT epoch, ${notifyCall(2)} FROM u`,
      [id, executorChange(id)]);
    const epoch = r.rows[0]?.epoch;
    if (epoch === undefined) throw new Error(`unknown executor ${id}`);
    return epoch;
  }
  async recordHeartbeat(id: string, status: ExecutorRunStatus, now: number, trustBundleVersion?: number): Promise<void> {
    await this.heartbeats.submit({ id, status, now, version: trustBundleVersion ?? null });
  }
  async revokeExecutor(id: string, now: number): Promise<boolean> {
    const r = await run(this.pool, updateExecutorNotifying(`revoked_at = $3`, `AND revoked_at IS NULL`), [id, executorChange(id), now]);
    return r.rowCount === 1;
  }
  async setDrain(id: string, drain: boolean): Promise<boolean> {
    const r = await run(this.pool, updateExecutorNotifying(`drain = $3`), [id, executorChange(id), drain]);
    return r.rowCount === 1;
  }

  // ---- the replay store

  async rememberNonce(executorId: string, nonce: string, expiresAt: number): Promise<boolean> {
    return this.nonces.submit({ executorId, nonce, expiresAt });
  }
  async pruneNonces(now: number): Promise<number> {
    return (await run(this.pool, `DELETE FROM nonces WHERE expires_at <= $1`, [now])).rowCount ?? 0;
  }

  // ---- metrics, at scrape time: one query each, never one per executor

  async executorCounts(bounds: LivenessBounds): Promise<ExecutorCounts> {
    const r = await run<{ liveness: string; n: number }>(this.pool,
      `SELECT ${livenessSql("$1::bigint", "$2::bigint")} AS liveness, count(*) AS n FROM executors GROUP BY 1`,
      [bounds.suspectBefore, bounds.offlineBefore]);
    return executorCountsFrom(r.rows);
  }
  async nonceCount(): Promise<number> {
    return (await run<{ n: number }>(this.pool, `SELECT count(*) AS n FROM nonces`)).rows[0]?.n ?? 0;
  }

  /** One INSERT for the batch; a caller's nonce is new iff its row came back (the first caller, when one batch holds it twice). */
  private async writeNonces(items: NonceWrite[]): Promise<boolean[]> {
    const first = new Map<string, number>();
    const executors: string[] = [];
    const nonces: string[] = [];
    const expiries: number[] = [];
    items.forEach((w, i) => {
      const key = `${w.executorId}\0${w.nonce}`;
      if (first.has(key)) return;
      first.set(key, i);
      executors.push(w.executorId);
      nonces.push(w.nonce);
      expiries.push(w.expiresAt);
    });
    const r = await run<{ executor_id: string; nonce: string }>(this.pool,
      `INSERT INTO nonces (executor_id, nonce, expires_at)
       SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[])
       ON CONFLICT DO NOTHING RETURNING executor_id, nonce`,
      [executors, nonces, expiries], "insert_nonces");
    const inserted = new Set(r.rows.map((row) => `${row.executor_id}\0${row.nonce}`));
    return items.map((w, i) => {
      const key = `${w.executorId}\0${w.nonce}`;
      return first.get(key) === i && inserted.has(key);
    });
  }

  /**
   * One UPDATE for the batch. Several heartbeats of one executor in a batch apply as if
   * in order (the last status and time; the bundle version only ever raised); rows are
   * sent in id order so concurrent batches of two replicas lock executors in one order.
   */
  private async writeHeartbeats(items: HeartbeatWrite[]): Promise<void[]> {
    const merged = new Map<string, HeartbeatWrite>();
    for (const w of items) {
      const prev = merged.get(w.id);
      const version = prev?.version == null ? w.version : w.version === null ? prev.version : Math.max(prev.version, w.version);
      merged.set(w.id, { ...w, version });
    }
    const rows = [...merged.values()].sort((x, y) => (x.id < y.id ? -1 : x.id > y.id ? 1 : 0));
    await run(this.pool,
      `UPDATE executors e SET status = v.status, last_seen_at = v.now,
         trust_bundle_version = GREATEST(COALESCE(e.trust_bundle_version, 0), COALESCE(v.version, 0))
       FROM unnest($1::text[], $2::text[], $3::bigint[], $4::bigint[]) AS v(id, status, now, version)
       WHERE e.id = v.id`,
      [rows.map((w) => w.id), rows.map((w) => w.status), rows.map((w) => w.now), rows.map((w) => w.version)], "record_heartbeats");
    return items.map(() => undefined);
  }

  // ---- the rest

  /** The store answers and would accept a write now: reachable, migrated, not a read-only standby. */
  async ping(): Promise<void> {
    const r = await run<{ read_only: boolean }>(this.pool,
      `SELECT pg_is_in_recovery() OR current_setting('transaction_read_only') = 'on' AS read_only FROM schema_migrations LIMIT 1`);
    if (r.rows[0]?.read_only !== false) {
      throw Object.assign(new Error(r.rows[0] ? "the PostgreSQL server is read-only" : "the PostgreSQL database holds no controller state"), {
        code: r.rows[0] ? "25006" : "3D000",
      });
    }
  }

  async readSettings(): Promise<Record<string, string>> {
    const r = await run<{ name: string; value: string }>(this.pool, `SELECT name, value FROM controller_settings`);
    return Object.fromEntries(r.rows.map((row) => [row.name, row.value]));
  }
  async writeSettings(values: Record<string, string>, now: number): Promise<void> {
    const entries = Object.entries(values);
    await inTransaction(this.pool, async (tx) => {
      await tx.query(
        `INSERT INTO controller_settings (name, value, updated_at) SELECT n, v, $3 FROM unnest($1::text[], $2::text[]) AS s(n, v)
         ON CONFLICT (name) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at`,
        [entries.map(([n]) => n), entries.map(([, v]) => v), now]);
      await tx.query(NOTIFY_SQL, [encodeChange({ kind: "settings" })]);
    });
  }

  /** Waits for the batched writes in flight, then closes the pool (the other stores share it). */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await Promise.all([this.nonces.flush(), this.heartbeats.flush()]);
    await this.pool.end();
  }
}
