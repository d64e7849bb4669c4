/** The CA set's SQL (migration 7), prepared once per connection, typed by parameters and row. */
import type Database from "better-sqlite3";
import type { CaFingerprint } from "../../../shared/fingerprint.ts";
import type { CaKeyType, CaRecord, CaState } from "../trust-types.ts";

export interface CaRow {
  id: string; cert_pem: string; fingerprint: CaFingerprint; key_type: CaKeyType; state: CaState; not_before: number;
  not_after: number; created_at: number; activated_at: number | null; retired_at: number | null; added_in_version: number;
  cross_cert_pem: string | null; last_issued_not_after: number;
}

interface InsertCaParams {
  id: string; certPem: string; fingerprint: string; keyType: CaKeyType; state: "prepared" | "active"; notBefore: number;
  notAfter: number; now: number; version: number; crossCertPem: string | null; keyEnc: Buffer;
}
interface IssuedParams { caId: string; serial: string; executorId: string | null; notAfter: number; issuedAt: number }

export function toCaRecord(r: CaRow): CaRecord {
  return {
    id: r.id, certPem: r.cert_pem, fingerprint: r.fingerprint, keyType: r.key_type, state: r.state, notBefore: r.not_before,
    notAfter: r.not_after, createdAt: r.created_at, activatedAt: r.activated_at, retiredAt: r.retired_at,
    addedInVersion: r.added_in_version, crossCertPem: r.cross_cert_pem, lastIssuedNotAfter: r.last_issued_not_after,
  };
}

const CA_COLUMNS = `id, cert_pem, fingerprint, key_type, state, not_before, not_after, created_at, activated_at, retired_at,
  added_in_version, cross_cert_pem, last_issued_not_after`;

export type CaStatements = ReturnType<typeof prepareCaStatements>;

export function prepareCaStatements(db: Database.Database) {
  return {
    version: db.prepare<[], number>(`SELECT version FROM trust_bundle WHERE singleton = 1`).pluck(),
    bumpVersion: db.prepare<[], number>(`UPDATE trust_bundle SET version = version + 1 WHERE singleton = 1 RETURNING version`).pluck(),
    list: db.prepare<[], CaRow>(`SELECT ${CA_COLUMNS} FROM cas ORDER BY created_at, id`),
    count: db.prepare<[], number>(`SELECT count(*) FROM cas`).pluck(),
    inState: db.prepare<[state: CaState], number>(`SELECT count(*) FROM cas WHERE state = ?`).pluck(),
    state: db.prepare<[id: string], CaState>(`SELECT state FROM cas WHERE id = ?`).pluck(),
    key: db.prepare<[id: string], Buffer>(`SELECT private_key_enc FROM cas WHERE id = ?`).pluck(),
    insert: db.prepare<InsertCaParams>(
      `INSERT INTO cas (id, cert_pem, fingerprint, key_type, state, not_before, not_after, created_at, activated_at,
         added_in_version, cross_cert_pem, private_key_enc)
       VALUES (@id, @certPem, @fingerprint, @keyType, @state, @notBefore, @notAfter, @now,
         CASE WHEN @state = 'active' THEN @now END, @version, @crossCertPem, @keyEnc)`,
    ),
    // The active one steps down first: at most one active CA is a constraint.
    retireActive: db.prepare<[now: number]>(`UPDATE cas SET state = 'retired', retired_at = ? WHERE state = 'active'`),
    activate: db.prepare<[now: number, id: string]>(`UPDATE cas SET state = 'active', activated_at = ? WHERE id = ? AND state = 'prepared'`),
    removeRetired: db.prepare<[id: string]>(`DELETE FROM cas WHERE id = ? AND state = 'retired'`),
    insertIssued: db.prepare<IssuedParams>(
      `INSERT OR REPLACE INTO certificates (ca_id, serial, executor_id, not_after, issued_at)
       VALUES (@caId, @serial, @executorId, @notAfter, @issuedAt)`,
    ),
    raiseLastIssued: db.prepare<[notAfter: number, caId: string]>(
      `UPDATE cas SET last_issued_not_after = max(last_issued_not_after, ?) WHERE id = ?`,
    ),
    // What no CRL needs any more: the expired certificates of the same holder.
    pruneExpired: db.prepare<[executorId: string | null, now: number]>(`DELETE FROM certificates WHERE executor_id IS ? AND not_after <= ?`),
    revoked: db.prepare<[caId: string, now: number], { serial: string; revoked_at: number }>(
      `SELECT c.serial, e.revoked_at FROM certificates c JOIN executors e ON e.id = c.executor_id
       WHERE c.ca_id = ? AND c.not_after > ? AND e.revoked_at IS NOT NULL ORDER BY c.serial`,
    ),
    nextCrlNumber: db.prepare<[id: string], number>(`UPDATE cas SET crl_number = crl_number + 1 WHERE id = ? RETURNING crl_number`).pluck(),
    bundleVersions: db.prepare<[], { id: string; trust_bundle_version: number | null; last_seen_at: number | null; revoked_at: number | null }>(
      `SELECT id, trust_bundle_version, last_seen_at, revoked_at FROM executors ORDER BY created_at, id`,
    ),
  };
}
