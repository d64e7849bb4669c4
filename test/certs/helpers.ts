/** Shared fixtures for the certs tests: temp dirs, CSRs, openssl. */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { spawnSync } from "node:child_process";
import { webcrypto } from "node:crypto";
import { x509, toPem } from "../../certs/x509.ts";

export type Alg = "Ed25519" | "P-256" | "P-384";

const dirs: string[] = [];
export function tempDir(prefix = "tether-certs-"): string {
  const d = mkdtempSync(join(tmpdir(), prefix));
  dirs.push(d);
  return d;
}
export function cleanup(): void {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
}

export function algParams(alg: Alg): { gen: Algorithm | EcKeyGenParams; sign: Algorithm | EcdsaParams } {
  if (alg === "Ed25519") return { gen: { name: "Ed25519" }, sign: { name: "Ed25519" } };
  return { gen: { name: "ECDSA", namedCurve: alg }, sign: { name: "ECDSA", hash: alg === "P-384" ? "SHA-384" : "SHA-256" } };
}

export async function keyPair(alg: Alg): Promise<CryptoKeyPair> {
  return (await webcrypto.subtle.generateKey(algParams(alg).gen as EcKeyGenParams, true, ["sign", "verify"])) as CryptoKeyPair;
}

export async function makeCsr(alg: Alg, opts: { cn?: string; sans?: x509.JsonGeneralName[]; keys?: CryptoKeyPair } = {}) {
  const keys = opts.keys ?? (await keyPair(alg));
  const extensions = opts.sans ? [new x509.SubjectAlternativeNameExtension(opts.sans)] : [];
  const csr = await x509.Pkcs10CertificateRequestGenerator.create({
    name: `CN=${opts.cn ?? "executor"}`,
    keys,
    signingAlgorithm: algParams(alg).sign,
    extensions,
  });
  return { csr, pem: csr.toString("pem"), keys };
}

export const pem = toPem;

export const hasOpenssl = spawnSync("openssl", ["version"], { encoding: "utf8" }).status === 0;

export function openssl(args: string[], input?: string): string {
  const r = spawnSync("openssl", args, { encoding: "utf8", input });
  if (r.status !== 0) throw new Error(`openssl ${args.join(" ")} failed: ${r.stderr}`);
  return r.stdout;
}
