/**
 * Certificate fingerprints, one type per encoding so they cannot be mixed up:
 *
 * - `CertThumbprint`: base64url SHA-256 of a certificate's DER. The JWT `cnf.x5t#S256`
 *   (RFC 8705), and how the controller and the executor name an executor certificate.
 * - `CaFingerprint`: uppercase hex SHA-256 with colons, as `openssl x509 -fingerprint
 *   -sha256` and `tether ca show` print it; what an operator reads and pins.
 */
import { createHash } from "node:crypto";

export type CertThumbprint = string & { readonly __brand: "x5t#S256" };
export type CaFingerprint = string & { readonly __brand: "ca-fingerprint-sha256" };

export function certThumbprint(der: Uint8Array): CertThumbprint {
  return createHash("sha256").update(der).digest("base64url") as CertThumbprint;
}

/** A presented `x5t#S256` value (a JWT claim) taken as a thumbprint; only its shape is checked. */
export function asCertThumbprint(v: unknown): CertThumbprint | undefined {
  return typeof v === "string" && /^[A-Za-z0-9_-]{43}$/.test(v) ? (v as CertThumbprint) : undefined;
}

export function caFingerprint(der: Uint8Array): CaFingerprint {
  const hex = createHash("sha256").update(der).digest("hex").toUpperCase();
  return hex.match(/../g)!.join(":") as CaFingerprint;
}

/**
 * An operator-given CA fingerprint (`SHA256:AB:CD…`, the prefix and colons optional,
 * any case) in the canonical form, or undefined when it is not 32 bytes of hex.
 */
export function parseCaFingerprint(text: string): CaFingerprint | undefined {
  const hex = text.trim().replace(/^sha256:/i, "").replace(/:/g, "").toUpperCase();
  if (!/^[0-9A-F]{64}$/.test(hex)) return undefined;
  return hex.match(/../g)!.join(":") as CaFingerprint;
}
