/**
 * Rows of the controller's tables as every backend returns them, and their mapping to
 * store records. Flags are 0/1 in SQLite and booleans in PostgreSQL: `Flag` takes both.
 */
import type { CertThumbprint } from "../../shared/fingerprint.ts";
import type {
  ApiTokenRecord,
  ApiTokenRole,
  EnrollmentTokenRecord,
  ExecutorAuthState,
  ExecutorRecord,
  ExecutorRunStatus,
  TokenDenyReason,
} from "./types.ts";

type Flag = number | boolean;

// Column types that CHECK constraints or the store's own writes guarantee are typed as such.
export interface ExecutorRow {
  id: string; name: string; labels: string; capacity: number; epoch: number; status: ExecutorRunStatus;
  cert_fp: CertThumbprint; cert_issued_at: number; cert_expires_at: number; prev_cert_fp: CertThumbprint | null;
  prev_cert_grace_until: number | null; created_at: number; last_seen_at: number | null;
  revoked_at: number | null; drain: Flag; enrollment_token_id: string | null; cert_confirmed: Flag;
  trust_bundle_version: number | null; cert_ca_id: string | null;
}
export type ExecutorAuthRow = Pick<
  ExecutorRow,
  | "id" | "epoch" | "cert_fp" | "prev_cert_fp" | "prev_cert_grace_until" | "cert_issued_at" | "cert_expires_at" | "drain"
  | "revoked_at" | "cert_confirmed" | "cert_ca_id"
>;
export interface TokenRow {
  id: string; token_hash: string; created_at: number; expires_at: number; max_uses: number;
  uses: number; revoked_at: number | null; labels: string;
}
export interface ApiTokenRow {
  id: string; name: string; role: ApiTokenRole; token_hash: string; created_at: number; created_by: string;
  expires_at: number | null; revoked_at: number | null; last_used_at: number | null; last_used_ip: string | null;
}

export function toApiToken(r: ApiTokenRow): ApiTokenRecord {
  return {
    id: r.id, name: r.name, role: r.role, tokenHash: r.token_hash, createdAt: r.created_at,
    createdBy: r.created_by, expiresAt: r.expires_at, revokedAt: r.revoked_at, lastUsedAt: r.last_used_at,
    lastUsedIp: r.last_used_ip,
  };
}

export function toExecutor(r: ExecutorRow): ExecutorRecord {
  return {
    id: r.id, name: r.name, labels: JSON.parse(r.labels), capacity: r.capacity, epoch: r.epoch,
    status: r.status, certFingerprint: r.cert_fp, certIssuedAt: r.cert_issued_at,
    certExpiresAt: r.cert_expires_at, prevCertFingerprint: r.prev_cert_fp,
    prevCertGraceUntil: r.prev_cert_grace_until, createdAt: r.created_at, lastSeenAt: r.last_seen_at,
    revokedAt: r.revoked_at, drain: Boolean(r.drain), enrollmentTokenId: r.enrollment_token_id,
  };
}

export function toExecutorAuth(r: ExecutorAuthRow): ExecutorAuthState {
  return {
    id: r.id, epoch: r.epoch, certFingerprint: r.cert_fp, prevCertFingerprint: r.prev_cert_fp,
    prevCertGraceUntil: r.prev_cert_grace_until, certIssuedAt: r.cert_issued_at, certExpiresAt: r.cert_expires_at,
    drain: Boolean(r.drain), revoked: r.revoked_at !== null, certConfirmed: Boolean(r.cert_confirmed), certCaId: r.cert_ca_id,
  };
}

export function toToken(r: TokenRow): EnrollmentTokenRecord {
  return {
    id: r.id, tokenHash: r.token_hash, createdAt: r.created_at, expiresAt: r.expires_at,
    maxUses: r.max_uses, uses: r.uses, revokedAt: r.revoked_at, labels: JSON.parse(r.labels),
  };
}

export function denyReason(t: TokenRow | undefined, now: number): TokenDenyReason | undefined {
  if (!t) return "unknown";
  if (t.revoked_at !== null) return "revoked";
  if (t.expires_at <= now) return "expired";
  if (t.uses >= t.max_uses) return "used_up";
  return undefined;
}
