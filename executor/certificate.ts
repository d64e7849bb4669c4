/** What the executor needs to know about its certificate, key and trust bundle (node:crypto only). */
import { X509Certificate } from "node:crypto";
import { certificateBlocks } from "../certs/bundle.ts";
import { certThumbprint, type CertThumbprint } from "../shared/fingerprint.ts";
import { EXECUTOR_ID_PATTERN } from "../shared/ids.ts";
import { publicKeyDerOfPrivateKey } from "./csr.ts";

export interface CertInfo {
  notBeforeMs: number;
  notAfterMs: number;
  /** How the executor and the controller name this certificate (the JWT `cnf.x5t#S256`). */
  fingerprint: CertThumbprint;
  /** The executor id the certificate names (SAN URI `…/executor/<id>`, else CN), if any. */
  executorId?: string;
  serial: string;
}

const SAN_URI_RE = new RegExp(`^URI:spiffe://[^/]+/executor/(${EXECUTOR_ID_PATTERN})$`);

export function certInfo(certPem: string): CertInfo {
  const c = new X509Certificate(certPem);
  return {
    notBeforeMs: Date.parse(c.validFrom),
    notAfterMs: Date.parse(c.validTo),
    fingerprint: certThumbprint(c.raw),
    executorId: executorIdOf(c),
    serial: c.serialNumber,
  };
}

function executorIdOf(c: X509Certificate): string | undefined {
  for (const part of (c.subjectAltName ?? "").split(/,\s*/)) {
    const m = SAN_URI_RE.exec(part.trim());
    if (m) return m[1];
  }
  const cn = /(?:^|\n)CN=([^\n]+)/.exec(c.subject);
  return cn ? cn[1] : undefined;
}

/** Whether `keyPem` is the private key of `certPem`. Never throws. */
export function keyMatchesCert(keyPem: string, certPem: string): boolean {
  try {
    const fromKey = publicKeyDerOfPrivateKey(keyPem);
    const fromCert = new X509Certificate(certPem).publicKey.export({ type: "spki", format: "der" });
    return fromKey.equals(fromCert);
  } catch {
    return false;
  }
}

/** The certificates of a PEM bundle (unparseable blocks are skipped). */
export function bundleCerts(bundlePem: string): X509Certificate[] {
  const out: X509Certificate[] = [];
  for (const block of certificateBlocks(bundlePem)) {
    try {
      out.push(new X509Certificate(block));
    } catch {
      /* skip a damaged block; the others still count */
    }
  }
  return out;
}

/** Whether `certPem` was issued and signed by one of the CAs in `bundlePem`. */
export function chainsTo(certPem: string, bundlePem: string): boolean {
  try {
    const cert = new X509Certificate(certPem);
    return bundleCerts(bundlePem).some((ca) => cert.checkIssued(ca) && cert.verify(ca.publicKey));
  } catch {
    return false;
  }
}

/** The union of PEM bundles, each certificate once (by fingerprint), in first-seen order. */
export function mergeBundles(...bundles: (string | undefined)[]): string {
  const seen = new Set<string>();
  const out: string[] = [];
  for (const b of bundles) {
    if (!b) continue;
    for (const c of bundleCerts(b)) {
      if (seen.has(c.fingerprint256)) continue;
      seen.add(c.fingerprint256);
      out.push(c.toString().trim());
    }
  }
  return out.length ? out.join("\n") + "\n" : "";
}
