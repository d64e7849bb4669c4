/** PostgreSQL's column lists and key decryption; the rows map to records as every backend's do (store/rows.ts). */
import type { KeyEncryptor } from "../key-encryption.ts";
export * from "../rows.ts";

export const EXECUTOR_COLUMNS = `id, name, labels, capacity, epoch, status, cert_fp, cert_issued_at, cert_expires_at, prev_cert_fp,
  prev_cert_grace_until, created_at, last_seen_at, revoked_at, drain, enrollment_token_id, cert_confirmed, trust_bundle_version, cert_ca_id`;
export const EXECUTOR_AUTH_COLUMNS = `id, epoch, cert_fp, prev_cert_fp, prev_cert_grace_until, cert_issued_at, cert_expires_at, drain,
  revoked_at, cert_confirmed, cert_ca_id`;
export const TOKEN_COLUMNS = `id, token_hash, created_at, expires_at, max_uses, uses, revoked_at, labels`;
export const API_TOKEN_COLUMNS = `id, name, role, token_hash, created_at, created_by, expires_at, revoked_at, last_used_at, last_used_ip`;

/**
 * Decrypts a stored private key (CA, JWT, HMAC). A failure here almost always means the
 * replica was given another KEK than the one the keys were stored under: say so.
 */
export function decryptKey(keys: KeyEncryptor, blob: Buffer, aad: string, what: string): Buffer {
  try {
    return keys.decrypt(blob, aad);
  } catch (e) {
    throw new Error(
      `cannot decrypt ${what}: the key-encryption key does not open it — is this the --kek-file the keys were stored under? (${(e as Error).message})`,
      { cause: e },
    );
  }
}
