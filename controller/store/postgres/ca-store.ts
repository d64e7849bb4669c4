/**
 * The CA set on PostgreSQL, shared by every replica. Every change of the set first locks
 * the one trust_bundle row, so changes run one after the other across replicas and each
 * check (is the set empty? is a CA prepared already?) sees the previous change: racing
 * bootstraps end with exactly one CA. Each change notifies `trust` in its transaction.
 * Private keys are encrypted under the KEK, bound to the CA id (AAD `ca:<id>`, as on SQLite).
 */
import type pg from "pg";
import type { CaFingerprint } from "../../../shared/fingerprint.ts";
import { encodeChange } from "../changes.ts";
import type { KeyEncryptor } from "../key-encryption.ts";
import type { CaKeyType, CaRecord, CaState, CaStore, IssuedCertificate, NewCa } from "../trust-types.ts";
import { inTransaction, NOTIFY_SQL, run, type Tx } from "./pool.ts";
import { decryptKey } from "./rows.ts";

const keyAad = (id: string) => `ca:${id}`;
const TRUST = encodeChange({ kind: "trust" });

interface CaRow {
  id: string; cert_pem: string; fingerprint: CaFingerprint; key_type: CaKeyType; state: CaState; not_before: number;
  not_after: number; created_at: number; activated_at: number | null; retired_at: number | null; added_in_version: number;
  cross_cert_pem: string | null; last_issued_not_after: number;
}

function toCaRecord(r: CaRow): CaRecord {
  return {
    id: r.id, certPem: r.cert_pem, fingerprint: r.fingerprint, keyType: r.key_type, state: r.state, notBefore: r.not_before,
    notAfter: r.not_after, createdAt: r.created_at, activatedAt: r.activated_at, retiredAt: r.retired_at,
    addedInVersion: r.added_in_version, crossCertPem: r.cross_cert_pem, lastIssuedNotAfter: r.last_issued_not_after,
  };
}

/** Takes the CA set's lock for the rest of the transaction: the bundle version row. */
async function lockBundle(tx: Tx): Promise<void> {
  const r = await tx.query(`SELECT version FROM trust_bundle WHERE singleton = 1 FOR UPDATE`);
  if (r.rowCount !== 1) throw new Error("the trust bundle version row is missing");
}

export class PostgresCaStore implements CaStore {
  constructor(
    private readonly pool: pg.Pool,
    private readonly keys: KeyEncryptor,
  ) {}

  /** One statement, so the version and the CAs it counts come from one snapshot. */
  async trustBundle(): Promise<{ version: number; cas: CaRecord[] }> {
    const r = await run<CaRow & { version: number }>(this.pool,
      `SELECT b.version, c.id, c.cert_pem, c.fingerprint, c.key_type, c.state, c.not_before, c.not_after, c.created_at, c.activated_at,
         c.retired_at, c.added_in_version, c.cross_cert_pem, c.last_issued_not_after
       FROM trust_bundle b LEFT JOIN cas c ON true
       WHERE b.singleton = 1 ORDER BY c.created_at, c.id`);
    return { version: r.rows[0]?.version ?? 0, cas: r.rows.filter((row) => row.id !== null).map(toCaRecord) };
  }

  async caPrivateKey(id: string): Promise<Buffer> {
    const r = await run<{ private_key_enc: Buffer }>(this.pool, `SELECT private_key_enc FROM cas WHERE id = $1`, [id]);
    const enc = r.rows[0]?.private_key_enc;
    if (!enc) throw new Error(`no CA ${id} in the trust bundle`);
    return decryptKey(this.keys, enc, keyAad(id), `the private key of CA ${id}`);
  }

  async insertCa(ca: NewCa, opts: { state: "prepared" | "active"; onlyIfEmpty?: boolean }): Promise<boolean> {
    const keyEnc = this.keys.encrypt(ca.privateKey, keyAad(ca.id));
    return inTransaction(this.pool, async (tx) => {
      await lockBundle(tx);
      const present = await tx.query<{ any: boolean; in_state: boolean }>(
        `SELECT EXISTS (SELECT 1 FROM cas) AS any, EXISTS (SELECT 1 FROM cas WHERE state = $1) AS in_state`, [opts.state]);
      const p = present.rows[0];
      if (!p || (opts.onlyIfEmpty && p.any) || p.in_state) return false;
      const version = await tx.query<{ version: number }>(`UPDATE trust_bundle SET version = version + 1 WHERE singleton = 1 RETURNING version`);
      await tx.query(
        `INSERT INTO cas (id, cert_pem, fingerprint, key_type, state, not_before, not_after, created_at, activated_at,
           added_in_version, cross_cert_pem, private_key_enc)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, CASE WHEN $5 = 'active' THEN $8::bigint END, $9, $10, $11)`,
        [ca.id, ca.certPem, ca.fingerprint, ca.keyType, opts.state, ca.notBefore, ca.notAfter, ca.now, version.rows[0]?.version,
          ca.crossCertPem, keyEnc]);
      await tx.query(NOTIFY_SQL, [TRUST]);
      return true;
    });
  }

  /** prepared → active and active → retired in one transaction; the version stays (the set is the same). */
  async activateCa(id: string, now: number): Promise<boolean> {
    return inTransaction(this.pool, async (tx) => {
      await lockBundle(tx);
      const state = await tx.query<{ state: CaState }>(`SELECT state FROM cas WHERE id = $1`, [id]);
      if (state.rows[0]?.state !== "prepared") return false;
      // The active one steps down first: at most one active CA is a constraint.
      await tx.query(`UPDATE cas SET state = 'retired', retired_at = $1 WHERE state = 'active'`, [now]);
      const r = await tx.query(`UPDATE cas SET state = 'active', activated_at = $1 WHERE id = $2 AND state = 'prepared'`, [now, id]);
      await tx.query(NOTIFY_SQL, [TRUST]);
      return r.rowCount === 1;
    });
  }

  async removeCa(id: string, _now: number): Promise<boolean> {
    return inTransaction(this.pool, async (tx) => {
      await lockBundle(tx);
      const r = await tx.query(`DELETE FROM cas WHERE id = $1 AND state = 'retired'`, [id]);
      if (r.rowCount !== 1) return false;
      await tx.query(`UPDATE trust_bundle SET version = version + 1 WHERE singleton = 1`);
      await tx.query(NOTIFY_SQL, [TRUST]);
      return true;
    });
  }

  async recordIssued(c: IssuedCertificate): Promise<void> {
    // One statement, so the CA's row (every issuance raises last_issued_not_after) is
    // locked for one statement, not across a transaction's round trips: issuances of a
    // whole fleet queue on that row. It also drops what no CRL needs any more: the
    // expired certificates of the same holder (two forms, so both use the
    // (executor_id, not_after) index; IS NOT DISTINCT FROM would not).
    const holder = c.executorId === null ? "executor_id IS NULL" : "executor_id = $3";
    await run(this.pool,
      `WITH expired AS (DELETE FROM certificates WHERE ${holder} AND not_after <= $5),
            issued AS (
              INSERT INTO certificates (ca_id, serial, executor_id, not_after, issued_at) VALUES ($1, $2, $3, $4, $5)
              ON CONFLICT (ca_id, serial) DO UPDATE SET executor_id = excluded.executor_id, not_after = excluded.not_after, issued_at = excluded.issued_at)
       UPDATE cas SET last_issued_not_after = $4 WHERE id = $1 AND last_issued_not_after < $4`,
      [c.caId, c.serialHex.toLowerCase(), c.executorId, c.notAfter, c.issuedAt]);
  }

  async revokedSerials(caId: string, now: number): Promise<{ serialHex: string; revokedAt: number }[]> {
    const r = await run<{ serial: string; revoked_at: number }>(this.pool,
      `SELECT c.serial, e.revoked_at FROM certificates c JOIN executors e ON e.id = c.executor_id
       WHERE c.ca_id = $1 AND c.not_after > $2 AND e.revoked_at IS NOT NULL ORDER BY c.serial`,
      [caId, now]);
    return r.rows.map((row) => ({ serialHex: row.serial, revokedAt: row.revoked_at }));
  }

  async nextCrlNumber(caId: string): Promise<number> {
    const r = await run<{ crl_number: number }>(this.pool, `UPDATE cas SET crl_number = crl_number + 1 WHERE id = $1 RETURNING crl_number`, [caId]);
    const n = r.rows[0]?.crl_number;
    if (n === undefined) throw new Error(`no CA ${caId} in the trust bundle`);
    return n;
  }

  async bundleVersions(): Promise<{ id: string; version: number | null; lastSeenAt: number | null; revoked: boolean }[]> {
    const r = await run<{ id: string; trust_bundle_version: number | null; last_seen_at: number | null; revoked_at: number | null }>(this.pool,
      `SELECT id, trust_bundle_version, last_seen_at, revoked_at FROM executors ORDER BY created_at, id`);
    return r.rows.map((row) => ({ id: row.id, version: row.trust_bundle_version, lastSeenAt: row.last_seen_at, revoked: row.revoked_at !== null }));
  }
}
