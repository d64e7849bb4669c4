/** Fixtures for the certs tests: key pairs, CSRs, openssl. Temp dirs and CAs are in test/support/. */
import { spawnSync } from "node:child_process";
import { x509, toPem } from "../../certs/x509.ts";
import { generateKeyPair, signingParams, type KeyAlgorithmName } from "../../certs/keys.ts";

export type Alg = KeyAlgorithmName;

export const keyPair = generateKeyPair;

export async function makeCsr(alg: Alg, opts: { cn?: string; sans?: x509.JsonGeneralName[]; keys?: CryptoKeyPair } = {}) {
  const keys = opts.keys ?? (await keyPair(alg));
  const extensions = opts.sans ? [new x509.SubjectAlternativeNameExtension(opts.sans)] : [];
  const csr = await x509.Pkcs10CertificateRequestGenerator.create({
    name: `CN=${opts.cn ?? "executor"}`,
    keys,
    signingAlgorithm: signingParams(alg),
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
