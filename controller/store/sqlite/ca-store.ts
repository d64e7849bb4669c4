/**
 * The CA set in the controller's SQLite database (same connection as the main store).
 * Every change of the set is one immediate transaction; the ones an answer stands on (a CA
 * added, activated, removed; a CRL number taken) are synced at their COMMIT.
 */
import type Database from "better-sqlite3";
import type { KeyEncryptor } from "../key-encryption.ts";
import type { CaRecord, CaStore, IssuedCertificate, NewCa } from "../trust-types.ts";
import { prepareCaStatements, toCaRecord, type CaStatements } from "./ca-statements.ts";
import { durably } from "./durably.ts";

const keyAad = (id: string) => `ca:${id}`;

export class SqliteCaStore implements CaStore {
  private readonly s: CaStatements;

  constructor(
    private readonly db: Database.Database,
    private readonly keys: KeyEncryptor,
  ) {
    this.s = prepareCaStatements(db);
  }

  async trustBundle(): Promise<{ version: number; cas: CaRecord[] }> {
    // One read transaction: the version and the CAs it counts.
    return this.db.transaction(() => ({ version: this.s.version.get() ?? 0, cas: this.s.list.all().map(toCaRecord) }))();
  }

  async caPrivateKey(id: string): Promise<Buffer> {
    const enc = this.s.key.get(id);
    if (!enc) throw new Error(`no CA ${id} in the trust bundle`);
    return this.keys.decrypt(enc, keyAad(id));
  }

  async insertCa(ca: NewCa, opts: { state: "prepared" | "active"; onlyIfEmpty?: boolean }): Promise<boolean> {
    const keyEnc = this.keys.encrypt(ca.privateKey, keyAad(ca.id));
    return durably(this.db, () => this.db.transaction(() => {
      if (opts.onlyIfEmpty && (this.s.count.get() ?? 0) > 0) return false;
      if ((this.s.inState.get(opts.state) ?? 0) > 0) return false;
      const version = this.s.bumpVersion.get();
      if (version === undefined) throw new Error("the trust bundle version row is missing");
      this.s.insert.run({
        id: ca.id, certPem: ca.certPem, fingerprint: ca.fingerprint, keyType: ca.keyType, state: opts.state, notBefore: ca.notBefore,
        notAfter: ca.notAfter, now: ca.now, version, crossCertPem: ca.crossCertPem, keyEnc,
      });
      return true;
    }).immediate());
  }

  async activateCa(id: string, now: number): Promise<boolean> {
    return durably(this.db, () => this.db.transaction(() => {
      if (this.s.state.get(id) !== "prepared") return false;
      this.s.retireActive.run(now);
      return this.s.activate.run(now, id).changes === 1;
    }).immediate());
  }

  async removeCa(id: string, _now: number): Promise<boolean> {
    return durably(this.db, () => this.db.transaction(() => {
      if (this.s.removeRetired.run(id).changes !== 1) return false;
      this.s.bumpVersion.get();
      return true;
    }).immediate());
  }

  async recordIssued(c: IssuedCertificate): Promise<void> {
    this.db.transaction(() => {
      this.s.pruneExpired.run(c.executorId, c.issuedAt);
      this.s.insertIssued.run({ caId: c.caId, serial: c.serialHex.toLowerCase(), executorId: c.executorId, notAfter: c.notAfter, issuedAt: c.issuedAt });
      this.s.raiseLastIssued.run(c.notAfter, c.caId);
    }).immediate();
  }

  async revokedSerials(caId: string, now: number): Promise<{ serialHex: string; revokedAt: number }[]> {
    return this.s.revoked.all(caId, now).map((r) => ({ serialHex: r.serial, revokedAt: r.revoked_at }));
  }

  async nextCrlNumber(caId: string): Promise<number> {
    const n = durably(this.db, () => this.s.nextCrlNumber.get(caId));
    if (n === undefined) throw new Error(`no CA ${caId} in the trust bundle`);
    return n;
  }

  async bundleVersions(): Promise<{ id: string; version: number | null; lastSeenAt: number | null; revoked: boolean }[]> {
    return this.s.bundleVersions.all().map((r) => ({ id: r.id, version: r.trust_bundle_version, lastSeenAt: r.last_seen_at, revoked: r.revoked_at !== null }));
  }
}
