/** The JWT key ring in the controller's SQLite database (same connection as the main store). */
import type Database from "better-sqlite3";
import type { KeyEncryptor } from "../key-encryption.ts";
import type { JwtKeyRecord, JwtKeyState, JwtKeyStore, NewJwtKey } from "../trust-types.ts";
import { durably } from "./durably.ts";

interface JwtKeyRow {
  kid: string; state: JwtKeyState; public_key: Buffer; private_key_enc: Buffer;
  created_at: number; signs_from: number; activated_at: number | null; retired_at: number | null;
}

const aad = (kid: string) => `jwt:${kid}`;

function toRecord(r: JwtKeyRow): JwtKeyRecord {
  return {
    kid: r.kid, state: r.state, publicKey: r.public_key, createdAt: r.created_at, signsFrom: r.signs_from,
    activatedAt: r.activated_at, retiredAt: r.retired_at,
  };
}

export class SqliteJwtKeyStore implements JwtKeyStore {
  private readonly s;

  constructor(
    private readonly db: Database.Database,
    private readonly keys: KeyEncryptor,
  ) {
    this.s = {
      list: db.prepare<[], JwtKeyRow>(`SELECT * FROM jwt_keys ORDER BY created_at, kid`),
      any: db.prepare<[], 1>(`SELECT 1 FROM jwt_keys LIMIT 1`).pluck(),
      inState: db.prepare<[state: JwtKeyState], 1>(`SELECT 1 FROM jwt_keys WHERE state = ? LIMIT 1`).pluck(),
      privateKey: db.prepare<[kid: string], Buffer>(`SELECT private_key_enc FROM jwt_keys WHERE kid = ?`).pluck(),
      insert: db.prepare<{ kid: string; state: JwtKeyState; publicKey: Buffer; privateKeyEnc: Buffer; now: number; signsFrom: number; activatedAt: number | null }>(
        `INSERT INTO jwt_keys (kid, state, public_key, private_key_enc, created_at, signs_from, activated_at)
         VALUES (@kid, @state, @publicKey, @privateKeyEnc, @now, @signsFrom, @activatedAt)`,
      ),
      state: db.prepare<[kid: string], JwtKeyState>(`SELECT state FROM jwt_keys WHERE kid = ?`).pluck(),
      retireActive: db.prepare<[now: number]>(`UPDATE jwt_keys SET state = 'retired', retired_at = ? WHERE state = 'active'`),
      activate: db.prepare<[now: number, kid: string]>(`UPDATE jwt_keys SET state = 'active', activated_at = ? WHERE kid = ? AND state = 'next'`),
      remove: db.prepare<[kid: string]>(`DELETE FROM jwt_keys WHERE kid = ? AND state = 'retired'`),
    };
  }

  async jwtKeys(): Promise<JwtKeyRecord[]> {
    return this.s.list.all().map(toRecord);
  }

  async jwtPrivateKey(kid: string): Promise<Buffer> {
    const enc = this.s.privateKey.get(kid);
    if (!enc) throw new Error(`no JWT key ${kid}`);
    return this.keys.decrypt(enc, aad(kid));
  }

  async insertJwtKey(k: NewJwtKey, opts: { state: "next" | "active"; onlyIfEmpty?: boolean }): Promise<boolean> {
    const privateKeyEnc = this.keys.encrypt(k.privateKey, aad(k.kid));
    return durably(this.db, () =>
      this.db.transaction(() => {
        if (opts.onlyIfEmpty && this.s.any.get()) return false;
        if (this.s.inState.get(opts.state)) return false;
        this.s.insert.run({
          kid: k.kid, state: opts.state, publicKey: k.publicKey, privateKeyEnc, now: k.now, signsFrom: k.signsFrom,
          activatedAt: opts.state === "active" ? k.now : null,
        });
        return true;
      }).immediate(),
    );
  }

  async promoteJwtKey(kid: string, now: number): Promise<boolean> {
    return durably(this.db, () =>
      this.db.transaction(() => {
        if (this.s.state.get(kid) !== "next") return false;
        // Retire first: the partial unique index allows one active key at a time.
        this.s.retireActive.run(now);
        this.s.activate.run(now, kid);
        return true;
      }).immediate(),
    );
  }

  async removeJwtKey(kid: string): Promise<boolean> {
    return this.s.remove.run(kid).changes === 1;
  }
}
