/**
 * The controller's TLS server certificate (`server.pem`, `server.key`): issued by
 * the active CA for the configured SANs, re-issued when missing, mismatched, issued by
 * another CA (after a CA activation), for other SANs, or due for renewal.
 *
 * Crash safety: the key is written before the certificate, each atomically. A crash
 * in between leaves a new key next to the old certificate; the next load sees that
 * they do not match and issues again.
 */
import { readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { X509Certificate, createPrivateKey } from "node:crypto";
import { isIP } from "node:net";
import { ensurePrivateDir, fileExists, writeFileAtomic } from "../shared/secure-fs.ts";
import { issueServerCert, sanEntries } from "./profiles.ts";
import type { Ca } from "./ca.ts";

export const SERVER_CERT_FILE = "server.pem";
export const SERVER_KEY_FILE = "server.key";
export const DEFAULT_SERVER_CERT_TTL_SECONDS = 30 * 86_400;
export const DEFAULT_RENEW_BEFORE_FRACTION = 1 / 3;

export interface ServerCredentials {
  certPem: string;
  keyPem: string;
  notAfter: Date;
  notBefore: Date;
  /** Lowercase hex. */
  serialHex: string;
}

/** True when less than `fraction` of the certificate's lifetime is left (or it is not valid at `now`). */
export function serverCertNeedsRenewal(creds: ServerCredentials, now = new Date(), fraction = DEFAULT_RENEW_BEFORE_FRACTION): boolean {
  const t = now.getTime();
  if (t < creds.notBefore.getTime()) return true;
  const life = creds.notAfter.getTime() - creds.notBefore.getTime();
  return creds.notAfter.getTime() - t < life * fraction;
}

/** A comparable form of one SAN: IPs by canonical address, DNS names case-insensitively. */
function sanKey(type: "ip" | "dns", value: string): string {
  if (type === "dns") return `dns:${value.toLowerCase()}`;
  if (isIP(value) === 6) return `ip:${new URL(`http://[${value}]/`).hostname}`;
  return `ip:${value}`;
}

function requestedSanSet(sans: string[]): string {
  return sanEntries(sans).map((n) => sanKey(n.type as "ip" | "dns", n.value as string)).sort().join(",");
}

/** From node's `subjectAltName` text ("DNS:a, IP Address:1.2.3.4"); anything else makes it unequal. */
function presentSanSet(subjectAltName: string | undefined): string {
  if (!subjectAltName) return "";
  return subjectAltName
    .split(", ")
    .map((e) => {
      if (e.startsWith("DNS:")) return sanKey("dns", e.slice(4));
      if (e.startsWith("IP Address:")) return sanKey("ip", e.slice(11));
      return `other:${e}`;
    })
    .sort()
    .join(",");
}

function loadExisting(dataDir: string, ca: Ca, sans: string[]): ServerCredentials | undefined {
  const certPath = join(dataDir, SERVER_CERT_FILE);
  const keyPath = join(dataDir, SERVER_KEY_FILE);
  if (!fileExists(certPath) || !fileExists(keyPath)) return undefined;
  try {
    // A key others could read is treated as spent: issue a fresh one (written 0600).
    if ((statSync(keyPath).mode & 0o077) !== 0) return undefined;
    const certPem = readFileSync(certPath, "utf8");
    const keyPem = readFileSync(keyPath, "utf8");
    const cert = new X509Certificate(certPem);
    const caCert = new X509Certificate(ca.certPem);
    if (!cert.checkIssued(caCert) || !cert.verify(caCert.publicKey)) return undefined;
    if (!cert.checkPrivateKey(createPrivateKey(keyPem))) return undefined;
    if (presentSanSet(cert.subjectAltName) !== requestedSanSet(sans)) return undefined;
    return { certPem, keyPem, notBefore: new Date(cert.validFrom), notAfter: new Date(cert.validTo), serialHex: cert.serialNumber.toLowerCase() };
  } catch {
    return undefined;
  }
}

export async function loadOrCreateServerCert(
  dataDir: string,
  ca: Ca,
  opts: { sans: string[]; ttlSeconds?: number; renewBeforeFraction?: number },
): Promise<{ creds: ServerCredentials; issued: boolean }> {
  ensurePrivateDir(dataDir);
  const existing = loadExisting(dataDir, ca, opts.sans);
  if (existing && !serverCertNeedsRenewal(existing, new Date(), opts.renewBeforeFraction)) return { creds: existing, issued: false };
  const issued = await issueServerCert(ca, { sans: opts.sans, ttlSeconds: opts.ttlSeconds ?? DEFAULT_SERVER_CERT_TTL_SECONDS });
  writeFileAtomic(join(dataDir, SERVER_KEY_FILE), issued.keyPem);
  writeFileAtomic(join(dataDir, SERVER_CERT_FILE), issued.pem, 0o644);
  return {
    creds: { certPem: issued.pem, keyPem: issued.keyPem, notBefore: issued.notBefore, notAfter: issued.notAfter, serialHex: issued.serialHex },
    issued: true,
  };
}
