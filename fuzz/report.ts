/** Findings grouped and written out so each can be replayed by hand. */
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { Failure, Oracle } from "./oracle.ts";

export interface FailureGroup {
  key: string;
  oracle: Oracle;
  count: number;
  /** The smallest request that showed it. */
  example: Failure;
}

export class Findings {
  readonly groups = new Map<string, FailureGroup>();

  /** Adds a failure; true when it is a new finding. */
  add(f: Failure): boolean {
    const g = this.groups.get(f.key);
    if (g) {
      g.count++;
      if ((f.case?.bytes.length ?? Infinity) < (g.example.case?.bytes.length ?? Infinity)) g.example = f;
      return false;
    }
    this.groups.set(f.key, { key: f.key, oracle: f.oracle, count: 1, example: f });
    return true;
  }
}

/** The bytes, readable: printable ASCII as is, CR/LF shown and broken into lines, the rest escaped. */
export function printable(bytes: Buffer, max = 1_500): string {
  const shown = bytes.subarray(0, max);
  let s = "";
  for (const b of shown) {
    if (b === 0x0a) s += "\\n\n";
    else if (b === 0x0d) s += "\\r";
    else if (b >= 0x20 && b < 0x7f && b !== 0x5c) s += String.fromCharCode(b);
    else s += `\\x${b.toString(16).padStart(2, "0")}`;
  }
  if (bytes.length > max) s += `… (${bytes.length - max} more bytes)`;
  return s
    .split("\n")
    .map((l) => `    ${l.length > 240 ? `${l.slice(0, 240)}… (${l.length} chars)` : l}`)
    .join("\n");
}

export function describeFailure(g: FailureGroup, seed: string): string {
  const f = g.example;
  const c = f.case;
  const lines = [`✗ [${g.oracle}] ${c ? (c.raw ? `raw ${c.label}` : c.label) : ""}: ${f.message}${g.count > 1 ? `  (×${g.count})` : ""}`];
  if (c) {
    lines.push(`  case #${c.n} (seed ${JSON.stringify(seed)}), as ${c.identityDesc}${c.identity.localAddress ? ` from ${c.identity.localAddress}` : ""}${c.identity.tls12 ? " over TLS 1.2" : ""}`);
    if (c.what.length) lines.push(`  mutations: ${c.what.join("; ")}`);
    lines.push(`  request (${c.bytes.length} bytes${c.raw ? ", raw, own connection" : ""}):`, printable(c.bytes));
  }
  if (f.observed) lines.push(`  observed: ${f.observed}`);
  return lines.join("\n");
}

/** One directory per finding: the request bytes, the client certificate, and how to replay them. */
export function writeReproducers(dir: string, groups: FailureGroup[], opts: { caPem: string; port: number; seed: string }): void {
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, "ca.pem"), opts.caPem);
  groups.forEach((g, i) => {
    const c = g.example.case;
    const sub = join(dir, `${String(i + 1).padStart(2, "0")}-${g.oracle}`);
    mkdirSync(sub, { recursive: true });
    let replay = "";
    if (c) {
      writeFileSync(join(sub, "request.bin"), c.bytes);
      const cert = c.identity.cert;
      if (cert) {
        writeFileSync(join(sub, "cert.pem"), cert.certPem);
        writeFileSync(join(sub, "key.pem"), cert.keyPem, { mode: 0o600 });
      }
      replay = `openssl s_client -quiet -ign_eof -connect 127.0.0.1:${opts.port} -CAfile ../ca.pem${cert ? " -cert cert.pem -key key.pem" : ""}${c.identity.tls12 ? " -tls1_2" : ""} < request.bin`;
    }
    writeFileSync(join(sub, "README.txt"), `${describeFailure(g, opts.seed)}\n\nReplay (while that controller runs; signatures expire after 300 s):\n  ${replay}\n`);
  });
}
