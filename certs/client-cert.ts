/**
 * The application-layer check of a presented client certificate, done once per TLS
 * connection: chains to a CA of the trust bundle, inside its validity, EKU
 * clientAuth, and exactly one SAN URI naming an executor of this trust domain.
 * Whether it is still that executor's current certificate is the caller's to check.
 */
import { X509Certificate, type KeyObject } from "node:crypto";
import { certThumbprint, type CertThumbprint } from "../shared/fingerprint.ts";
import { EXECUTOR_ID_PATTERN } from "../shared/ids.ts";

export interface ClientCertIdentity {
  executorId: string;
  fingerprint: CertThumbprint;
  /** notAfter, unix ms. */
  notAfter: number;
}

export type ClientCertResult = { ok: true; identity: ClientCertIdentity } | { ok: false; reason: string };

const CLIENT_AUTH = "1.3.6.1.5.5.7.3.2";
const escapeRe = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
const sanPatterns = new Map<string, RegExp>();
/** `X509Certificate.publicKey` makes a new KeyObject on every access; keep one per CA. */
const caKeys = new WeakMap<X509Certificate, KeyObject>();

function caKey(ca: X509Certificate): KeyObject {
  let k = caKeys.get(ca);
  if (!k) {
    k = ca.publicKey;
    caKeys.set(ca, k);
  }
  return k;
}

function sanPattern(trustDomain: string): RegExp {
  let re = sanPatterns.get(trustDomain);
  if (!re) {
    re = new RegExp(`^URI:spiffe://${escapeRe(trustDomain)}/executor/(${EXECUTOR_ID_PATTERN})$`);
    sanPatterns.set(trustDomain, re);
  }
  return re;
}

export function checkClientCert(
  der: Buffer | undefined,
  trust: { caCerts: X509Certificate[]; trustDomain: string },
  nowMs = Date.now(),
): ClientCertResult {
  if (!der || der.length === 0) return { ok: false, reason: "no certificate" };
  let cert: X509Certificate;
  try {
    cert = new X509Certificate(der);
  } catch {
    return { ok: false, reason: "unparseable certificate" };
  }
  if (!trust.caCerts.some((ca) => cert.checkIssued(ca) && cert.verify(caKey(ca)))) return { ok: false, reason: "untrusted issuer" };
  const notBefore = Date.parse(cert.validFrom);
  const notAfter = Date.parse(cert.validTo);
  if (nowMs < notBefore) return { ok: false, reason: "not yet valid" };
  if (nowMs >= notAfter) return { ok: false, reason: "expired" };
  if (cert.ca) return { ok: false, reason: "a CA certificate" };
  if (!cert.keyUsage?.includes(CLIENT_AUTH)) return { ok: false, reason: "no clientAuth EKU" };
  const executorId = sanPattern(trust.trustDomain).exec(cert.subjectAltName ?? "")?.[1];
  if (!executorId) return { ok: false, reason: "bad SAN" };
  return { ok: true, identity: { executorId, fingerprint: certThumbprint(cert.raw), notAfter } };
}
