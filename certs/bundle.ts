/** The trust bundle: one or more CA certificates in PEM. */
import { X509Certificate } from "node:crypto";
import type { Ca } from "./ca.ts";

const CERT_RE = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g;

export function parseBundle(pem: string): X509Certificate[] {
  const blocks = pem.match(CERT_RE) ?? [];
  if (blocks.length === 0) throw new Error("no certificate in the bundle");
  return blocks.map((b) => new X509Certificate(b));
}

export function bundlePem(cas: Ca[]): string {
  return cas.map((c) => c.certPem.trimEnd() + "\n").join("");
}
