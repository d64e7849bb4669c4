/**
 * The JWT key ring on PostgreSQL, shared by every replica. Changes of the ring take one
 * advisory lock, so a bootstrap (`onlyIfEmpty`) raced by replicas ends with one key and a
 * promotion never interleaves with another. Each change notifies `trust`. Private keys are
 * encrypted under the KEK, bound to the kid (AAD `jwt:<kid>`, as on SQLite).
 */
import type pg from "pg";
import { encodeChange } from "../changes.ts";
import type { KeyEncryptor } from "../key-encryption.ts";
import type { JwtKeyRecord, JwtKeyState, JwtKeyStore, NewJwtKey } from "../trust-types.ts";
import { inTransaction, notifyCall, NOTIFY_SQL, run, type Tx } from "./pool.ts";
import { decryptKey } from "./rows.ts";

/** pg_advisory_xact_lock key of the JWT key ring ("tether" + 3). */
export const JWT_RING_LOCK_KEY = 0x7465746865720003n;

const aad = (kid: string) => `jwt:${kid}`;
const TRUST = encodeChange({ kind: "trust" });

interface JwtKeyRow {
  kid: string; state: JwtKeyState; public_key: Buffer; created_at: number; signs_from: number;
  activated_at: number | null; retired_at: number | null;
}

function toRecord(r: JwtKeyRow): JwtKeyRecord {
  return {
    kid: r.kid, state: r.state, publicKey: r.public_key, createdAt: r.created_at, signsFrom: r.signs_from,
    activatedAt: r.activated_at, retiredAt: r.retired_at,
  };
}

const lockRing = (tx: Tx) => tx.query(`SELECT pg_advisory_xact_lock($1)`, [JWT_RING_LOCK_KEY.toString()]);

export class PostgresJwtKeyStore implements JwtKeyStore {
  constructor(
    private readonly pool: pg.Pool,
    private readonly keys: KeyEncryptor,
  ) {}

  async jwtKeys(): Promise<JwtKeyRecord[]> {
    const r = await run<JwtKeyRow>(this.pool,
      `SELECT kid, state, public_key, created_at, signs_from, activated_at, retired_at FROM jwt_keys ORDER BY created_at, kid`);
    return r.rows.map(toRecord);
  }

  async jwtPrivateKey(kid: string): Promise<Buffer> {
    const r = await run<{ private_key_enc: Buffer }>(this.pool, `SELECT private_key_enc FROM jwt_keys WHERE kid = $1`, [kid]);
    const enc = r.rows[0]?.private_key_enc;
    if (!enc) throw new Error(`no JWT key ${kid}`);
    return decryptKey(this.keys, enc, aad(kid), `the private key of JWT key ${kid}`);
  }

  async insertJwtKey(k: NewJwtKey, opts: { state: "next" | "active"; onlyIfEmpty?: boolean }): Promise<boolean> {
    const privateKeyEnc = this.keys.encrypt(k.privateKey, aad(k.kid));
    return inTransaction(this.pool, async (tx) => {
      await lockRing(tx);
      if (opts.onlyIfEmpty && (await tx.query(`SELECT 1 FROM jwt_keys LIMIT 1`)).rowCount) return false;
      if ((await tx.query(`SELECT 1 FROM jwt_keys WHERE state = $1 LIMIT 1`, [opts.state])).rowCount) return false;
      await tx.query(
        `INSERT INTO jwt_keys (kid, state, public_key, private_key_enc, created_at, signs_from, activated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7)`,
        [k.kid, opts.state, k.publicKey, privateKeyEnc, k.now, k.signsFrom, opts.state === "active" ? k.now : null]);
      await tx.query(NOTIFY_SQL, [TRUST]);
      return true;
    });
  }

  async promoteJwtKey(kid: string, now: number): Promise<boolean> {
    return inTransaction(this.pool, async (tx) => {
      await lockRing(tx);
      const state = await tx.query<{ state: JwtKeyState }>(`SELECT state FROM jwt_keys WHERE kid = $1`, [kid]);
      if (state.rows[0]?.state !== "next") return false;
      // Retire first: the partial unique index allows one active key at a time.
      await tx.query(`UPDATE jwt_keys SET state = 'retired', retired_at = $1 WHERE state = 'active'`, [now]);
      await tx.query(`UPDATE jwt_keys SET state = 'active', activated_at = $1 WHERE kid = $2 AND state = 'next'`, [now, kid]);
      await tx.query(NOTIFY_SQL, [TRUST]);
      return true;
    });
  }

  async removeJwtKey(kid: string): Promise<boolean> {
    const r = await run(this.pool,
      `WITH d AS (DELETE FROM jwt_keys WHERE kid = $1 AND state = 'retired' RETURNING kid) SELECT kid, ${notifyCall(2)} FROM d`,
      [kid, TRUST]);
    return r.rowCount === 1;
  }
}
