/**
 * The trust bundle as the executor keeps it (PROTOCOL §7.1, §7.2, §7.6): pure
 * functions, no I/O.
 *
 * On disk (`ca.pem` in the state dir) the bundle and its `trust_bundle_version`
 * are ONE file, written atomically: a first line `# tether-trust-bundle-version: N`
 * (text before the first PEM block, which OpenSSL, curl and Node skip) followed by
 * the CA certificates. A crash can therefore never leave a version that claims CAs
 * the file does not hold. A file without that line (written at enrollment, by an
 * older version, or from a controller that sends no version) has version 0:
 * "unknown", and the first heartbeat answer with a version makes the daemon fetch.
 */
import { X509Certificate } from "node:crypto";
import { certificateBlocks } from "../certs/bundle.ts";
import { caFingerprint, type CaFingerprint } from "../shared/fingerprint.ts";
import { chainsTo } from "./certificate.ts";

const VERSION_LINE_RE = /^# tether-trust-bundle-version: (\d{1,15})\r?\n/;

export interface TrustFile {
  /** The CA certificates, PEM, without the version line. */
  pem: string;
  /** 0: unknown. */
  version: number;
}

export function parseTrustFile(text: string): TrustFile {
  const m = VERSION_LINE_RE.exec(text);
  return m ? { pem: text.slice(m[0].length), version: Number(m[1]) } : { pem: text, version: 0 };
}

export function formatTrustFile(t: TrustFile): string {
  return t.version > 0 ? `# tether-trust-bundle-version: ${t.version}\n${t.pem}` : t.pem;
}

/** The CAs of a bundle and why it cannot be used, if it cannot: unparseable, empty, or holding a non-CA certificate. */
export function bundleProblem(pem: string): string | undefined {
  const blocks = certificateBlocks(pem);
  if (blocks.length === 0) return "it holds no certificate";
  for (const [i, b] of blocks.entries()) {
    let c: X509Certificate;
    try {
      c = new X509Certificate(b);
    } catch {
      return `certificate ${i + 1} cannot be parsed`;
    }
    if (!c.ca) return `certificate ${i + 1} (${c.subject.replace(/\n/g, ", ")}) is not a CA certificate`;
  }
  return undefined;
}

/**
 * Whether a bundle may replace the one in use: it parses, holds only CA
 * certificates, and `certInUsePem` (the executor's certificate from now on) still
 * chains to a CA in it — otherwise adopting it would cut the executor off.
 */
export function adoptionProblem(pem: string, certInUsePem: string): string | undefined {
  const p = bundleProblem(pem);
  if (p) return p;
  if (!chainsTo(certInUsePem, pem)) return "the executor's certificate does not chain to any CA in it";
  return undefined;
}

/** The SHA-256 fingerprints (as `tether ca show` prints them) of the certificates in a bundle; unparseable blocks are skipped. */
export function caFingerprints(pem: string): CaFingerprint[] {
  const out: CaFingerprint[] = [];
  for (const b of certificateBlocks(pem)) {
    try {
      out.push(caFingerprint(new X509Certificate(b).raw));
    } catch {
      /* not a certificate */
    }
  }
  return out;
}

/** The set of CAs two bundles hold is the same (order and text aside). */
export function sameCas(a: string, b: string): boolean {
  const x = new Set(caFingerprints(a));
  const y = caFingerprints(b);
  return x.size === new Set(y).size && y.every((f) => x.has(f));
}

/**
 * The CA certificate (PEM) of `pem` whose fingerprint is `pin`, if it is a CA
 * certificate; undefined otherwise. Only that certificate is trusted from an
 * unverified download: the rest of the bundle came from a server nobody has
 * verified yet.
 */
export function pinnedCa(pem: string, pin: CaFingerprint): string | undefined {
  for (const b of certificateBlocks(pem)) {
    try {
      const c = new X509Certificate(b);
      if (c.ca && caFingerprint(c.raw) === pin) return c.toString().trim() + "\n";
    } catch {
      /* skip */
    }
  }
  return undefined;
}
