/** The trust bundle: one or more CA certificates in PEM. */
import { X509Certificate } from "node:crypto";
import type { Ca } from "./ca.ts";

const CERT_RE = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g;

/** The PEM certificate blocks in `pem`, in order (not parsed: each caller decides what a bad one means). */
export function certificateBlocks(pem: string): string[] {
  return pem.match(CERT_RE) ?? [];
}

export function parseBundle(pem: string): X509Certificate[] {
  const blocks = certificateBlocks(pem);
  if (blocks.length === 0) throw new Error("no certificate in the bundle");
  return blocks.map((b) => new X509Certificate(b));
}

export function bundlePem(cas: Ca[]): string {
  return cas.map((c) => c.certPem.trimEnd() + "\n").join("");
}
