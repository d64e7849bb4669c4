/**
 * The client-certificate check as it was written with node:crypto's X509Certificate
 * (OpenSSL parses, `checkIssued` + `verify` chain it): the reference that
 * certs/client-cert.ts's DER check is compared with (test/certs/client-cert.test.ts).
 */
import { X509Certificate } from "node:crypto";
import { EXECUTOR_ID_PATTERN } from "../../shared/ids.ts";

export function x509ClientCertCheck(der: Buffer, trust: { caCerts: X509Certificate[]; trustDomain: string }, nowMs = Date.now()): { ok: boolean; executorId?: string; notAfter?: number } {
  let cert: X509Certificate;
  try {
    cert = new X509Certificate(der);
  } catch {
    return { ok: false };
  }
  if (!trust.caCerts.some((ca) => cert.checkIssued(ca) && cert.verify(ca.publicKey))) return { ok: false };
  const notAfter = Date.parse(cert.validTo);
  if (nowMs < Date.parse(cert.validFrom) || nowMs >= notAfter || cert.ca) return { ok: false };
  if (!cert.keyUsage?.includes("1.3.6.1.5.5.7.3.2")) return { ok: false };
  const td = trust.trustDomain.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
  const executorId = new RegExp(`^URI:spiffe://${td}/executor/(${EXECUTOR_ID_PATTERN})$`).exec(cert.subjectAltName ?? "")?.[1];
  return executorId ? { ok: true, executorId, notAfter } : { ok: false };
}
