/**
 * The store interface. Every method is async so a PostgreSQL store (and a Redis
 * replay store) can drop in behind it without touching the domain layer.
 * Times are unix milliseconds.
 */
import type { CertThumbprint } from "../../shared/fingerprint.ts";
import type { ExecutorCounts, LivenessBounds } from "./counts.ts";

export type ExecutorRunStatus = "ready" | "draining";

export interface ExecutorRecord {
  id: string;
  name: string;
  labels: Record<string, string>;
  capacity: number;
  epoch: number;
  /** Last status the executor reported. Liveness (suspect/offline) is derived from lastSeenAt. */
  status: ExecutorRunStatus;
  certFingerprint: CertThumbprint;
  certIssuedAt: number;
  certExpiresAt: number;
  prevCertFingerprint: CertThumbprint | null;
  prevCertGraceUntil: number | null;
  createdAt: number;
  lastSeenAt: number | null;
  revokedAt: number | null;
  drain: boolean;
  enrollmentTokenId: string | null;
}

/** The slice of an executor the guard chain needs on every request. */
export interface ExecutorAuthState {
  id: string;
  epoch: number;
  certFingerprint: CertThumbprint;
  prevCertFingerprint: CertThumbprint | null;
  prevCertGraceUntil: number | null;
  certIssuedAt: number;
  certExpiresAt: number;
  drain: boolean;
  revoked: boolean;
  /**
   * Whether a request has been made with the current certificate since it was issued.
   * Until then the previous one (in its grace window) may still rotate credentials: the
   * daemon that asked may have crashed before it received the new certificate.
   */
  certConfirmed: boolean;
  /** The CA that issued the current certificate (null: the first CA, before CAs had ids). */
  certCaId: string | null;
}

/** An executor's HMAC keys: the current one, and the previous one inside its grace window (PROTOCOL §7.4). */
export interface HmacKeys {
  current: Buffer;
  previous: Buffer | null;
  /** Until when (unix ms) the previous key is accepted. */
  previousUntil: number | null;
}

export interface EnrollmentTokenRecord {
  id: string;
  tokenHash: string;
  createdAt: number;
  expiresAt: number;
  maxUses: number;
  uses: number;
  revokedAt: number | null;
  labels: Record<string, string>;
}

export type TokenDenyReason = "unknown" | "expired" | "used_up" | "revoked";

export type ApiTokenRole = "admin" | "operator" | "viewer";

/** An operator API token (PROTOCOL §5). Only the SHA-256 of the secret is stored. */
export interface ApiTokenRecord {
  id: string;
  name: string;
  role: ApiTokenRole;
  tokenHash: string;
  createdAt: number;
  /** Who minted it: `api_token:<id>`, `cli:<user>` or `bootstrap:<user>`. */
  createdBy: string;
  /** null: never expires. */
  expiresAt: number | null;
  revokedAt: number | null;
  lastUsedAt: number | null;
  lastUsedIp: string | null;
}

export interface NewExecutor {
  id: string;
  name: string;
  labels: Record<string, string>;
  capacity: number;
  certFingerprint: CertThumbprint;
  certIssuedAt: number;
  certExpiresAt: number;
  hmacKey: Buffer;
  now: number;
  /** The CA that issued the certificate. */
  certCaId?: string;
}

export interface CertRotation {
  certFingerprint: CertThumbprint;
  certIssuedAt: number;
  certExpiresAt: number;
  /** The old certificate stays accepted until then. */
  prevCertGraceUntil: number;
  /** The CA that issued the new certificate. */
  certCaId?: string;
}

export interface ReplayStore {
  /** Records a nonce; false when this executor already used it (a replay). */
  rememberNonce(executorId: string, nonce: string, expiresAt: number): Promise<boolean>;
  pruneNonces(now: number): Promise<number>;
}

export interface Store extends ReplayStore {
  // enrollment tokens
  insertEnrollmentToken(t: EnrollmentTokenRecord): Promise<void>;
  listEnrollmentTokens(): Promise<EnrollmentTokenRecord[]>;
  revokeEnrollmentToken(id: string, now: number): Promise<boolean>;
  /** Read-only check (no use consumed). */
  checkEnrollmentToken(tokenHash: string, now: number): Promise<{ ok: true; token: EnrollmentTokenRecord } | { ok: false; reason: TokenDenyReason }>;
  /**
   * Atomically consumes one use of the token and inserts the executor, in one
   * transaction: either both happen or neither.
   */
  enrollExecutor(tokenHash: string, e: NewExecutor): Promise<{ ok: true; tokenId: string } | { ok: false; reason: TokenDenyReason }>;

  // operator API tokens
  /**
   * Inserts the token. With `onlyIfNoActiveAdmin`, atomically (one write
   * transaction) refuses — returns false — when an unrevoked, unexpired admin token
   * exists at `t.createdAt`: two concurrent bootstraps produce one admin token.
   */
  insertApiToken(t: ApiTokenRecord, opts?: { onlyIfNoActiveAdmin?: boolean }): Promise<boolean>;
  getApiTokenByHash(tokenHash: string): Promise<ApiTokenRecord | undefined>;
  getApiToken(id: string): Promise<ApiTokenRecord | undefined>;
  listApiTokens(): Promise<ApiTokenRecord[]>;
  /** false when unknown or already revoked. */
  revokeApiToken(id: string, now: number): Promise<boolean>;
  /** Records a use; returns the address of the previous use (null on the first one). */
  touchApiToken(id: string, ip: string, now: number): Promise<{ previousIp: string | null }>;

  // executors
  getExecutor(id: string): Promise<ExecutorRecord | undefined>;
  getExecutorAuth(id: string): Promise<ExecutorAuthState | undefined>;
  listExecutors(): Promise<ExecutorRecord[]>;
  getHmacKeys(id: string): Promise<HmacKeys | undefined>;
  /** A new HMAC key; the current one becomes the previous, accepted until `previousUntil`. */
  rotateHmacKey(id: string, key: Buffer, previousUntil: number): Promise<void>;
  /** The new certificate becomes current (unconfirmed); the old one is remembered for the grace window. */
  rotateCertificate(id: string, rotation: CertRotation): Promise<void>;
  /** A request was made with the current certificate `fingerprint` (a no-op once it is not current). */
  confirmCertificate(id: string, fingerprint: CertThumbprint): Promise<void>;
  /** epoch + 1; returns the new epoch. */
  bumpEpoch(id: string): Promise<number>;
  /** Seen now, with the status it reports and (only ever raised) the trust bundle version it holds. */
  recordHeartbeat(id: string, status: ExecutorRunStatus, now: number, trustBundleVersion?: number): Promise<void>;
  revokeExecutor(id: string, now: number): Promise<boolean>;
  setDrain(id: string, drain: boolean): Promise<boolean>;

  // metrics (PROTOCOL §9.1): one query each, read at scrape time
  /** Executors by liveness (store/counts.ts), every status present. */
  executorCounts(bounds: LivenessBounds): Promise<ExecutorCounts>;
  /** Nonces held, expired ones not yet pruned included. */
  nonceCount(): Promise<number>;

  /**
   * Resolves when the store answers (GET /readyz): it can be read and would accept a
   * write now. A store that cannot rejects with 503 UNAVAILABLE (store/unavailable.ts).
   */
  ping(): Promise<void>;

  /** The running controller's settings other processes on the data dir act with (controller/settings.ts). */
  readSettings(): Promise<Record<string, string>>;
  writeSettings(values: Record<string, string>, now: number): Promise<void>;

  close(): Promise<void>;
}
