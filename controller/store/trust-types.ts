/**
 * Trust material as data (PROTOCOL §7): the CA set with its bundle version, the
 * certificates they issued (for CRLs and for knowing when a retired CA may leave), and
 * the JWT key ring. Private keys are stored encrypted under the KEK (key-encryption.ts),
 * as HMAC keys are, so a shared database (PostgreSQL, §8) can hold them unchanged.
 * Times are unix milliseconds.
 */
import type { CaFingerprint } from "../../shared/fingerprint.ts";
import type { CaState, JwtKeyState } from "../../shared/wire/operator.ts";

export type { CaState, JwtKeyState };
export type CaKeyType = "ed25519" | "p256";

export interface CaRecord {
  id: string;
  certPem: string;
  fingerprint: CaFingerprint;
  keyType: CaKeyType;
  state: CaState;
  notBefore: number;
  notAfter: number;
  createdAt: number;
  activatedAt: number | null;
  retiredAt: number | null;
  /** The trust bundle version that first held it: an executor reporting this or more has adopted it. */
  addedInVersion: number;
  /**
   * This CA's key certified by the CA that was active when it was prepared (PEM): served
   * after the server certificate once it is active, so a daemon that trusts only the
   * previous CA still verifies the controller (§7.2). null for a first CA.
   */
  crossCertPem: string | null;
  /** The latest notAfter of any certificate it issued; a retired CA leaves the bundle after it. */
  lastIssuedNotAfter: number;
}

export interface NewCa {
  id: string;
  certPem: string;
  fingerprint: CaFingerprint;
  keyType: CaKeyType;
  notBefore: number;
  notAfter: number;
  crossCertPem: string | null;
  /** PKCS#8 DER; stored encrypted under the KEK, bound to the CA id. */
  privateKey: Buffer;
  now: number;
}

/** A certificate a CA of the bundle issued (executor or server), for CRLs and retirement. */
export interface IssuedCertificate {
  serialHex: string;
  caId: string;
  /** null for the controller's own server certificates. */
  executorId: string | null;
  notAfter: number;
  issuedAt: number;
}

export interface CaStore {
  /** The bundle version and every CA still in the bundle (removed ones are gone), oldest first. */
  trustBundle(): Promise<{ version: number; cas: CaRecord[] }>;
  /** The decrypted PKCS#8 DER private key of a CA in the bundle. */
  caPrivateKey(id: string): Promise<Buffer>;
  /**
   * Adds a CA and bumps the bundle version, in one transaction. `state: "active"` is for the
   * very first CA only: with `onlyIfEmpty` the insert is refused (false) when any CA exists,
   * so replicas or processes racing to bootstrap end with exactly one. Also refused (false)
   * when a CA in that state exists already: one prepared CA at a time, one active.
   */
  insertCa(ca: NewCa, opts: { state: "prepared" | "active"; onlyIfEmpty?: boolean }): Promise<boolean>;
  /** prepared → active and the active one → retired, atomically; false when `id` is not prepared. */
  activateCa(id: string, now: number): Promise<boolean>;
  /** A retired CA leaves the bundle (version + 1); false when it is not retired or already gone. */
  removeCa(id: string, now: number): Promise<boolean>;
  /** Records an issued certificate and raises its CA's lastIssuedNotAfter. */
  recordIssued(c: IssuedCertificate): Promise<void>;
  /** The unexpired certificates `caId` issued to executors that are revoked: serial (hex) and revocation time. */
  revokedSerials(caId: string, now: number): Promise<{ serialHex: string; revokedAt: number }[]>;
  /** The next CRL number of a CA (strictly growing). */
  nextCrlNumber(caId: string): Promise<number>;
  /** Every executor's reported bundle version, for adoption (§7.2). */
  bundleVersions(): Promise<{ id: string; version: number | null; lastSeenAt: number | null; revoked: boolean }[]>;
}

export interface JwtKeyRecord {
  kid: string;
  state: JwtKeyState;
  /** SPKI DER of the Ed25519 public key. */
  publicKey: Buffer;
  createdAt: number;
  /**
   * The earliest time it may sign: published one JWT lifetime before, as the process that
   * published it counts (the controller's --jwt-ttl; a CLI rotating on the data dir reads it here).
   */
  signsFrom: number;
  activatedAt: number | null;
  retiredAt: number | null;
}

export interface NewJwtKey {
  kid: string;
  signsFrom: number;
  publicKey: Buffer;
  /** PKCS#8 DER; stored encrypted under the KEK, bound to the kid. */
  privateKey: Buffer;
  now: number;
}

export interface JwtKeyStore {
  /** Every key of the ring (next, active, retired still published), oldest first. */
  jwtKeys(): Promise<JwtKeyRecord[]>;
  jwtPrivateKey(kid: string): Promise<Buffer>;
  /**
   * As insertCa: `active` only for the first key, `onlyIfEmpty` makes a bootstrap race end
   * with one, and refused (false) when a key in that state exists: one next key, one active.
   */
  insertJwtKey(k: NewJwtKey, opts: { state: "next" | "active"; onlyIfEmpty?: boolean }): Promise<boolean>;
  /** next → active and the active one → retired, atomically; false when `kid` is not next. */
  promoteJwtKey(kid: string, now: number): Promise<boolean>;
  /** A retired key leaves the ring. */
  removeJwtKey(kid: string): Promise<boolean>;
}
