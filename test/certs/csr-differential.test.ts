/**
 * The strict DER CSR parser (certs/csr.ts) against the @peculiar/x509 one it replaced
 * (test/certs/legacy-peculiar.ts), over valid CSRs and their mutations: it accepts nothing
 * the old one refused, returns the same key when both accept, only ever throws CsrError,
 * and where it refuses what the old one accepted, the change is in the unsigned tail (the
 * signature's AlgorithmIdentifier or BIT STRING), encoded in a way DER does not allow and
 * asn1js let through (a BIT STRING with unused bits, a non-canonical ECDSA signature).
 */
import { describe, expect, it } from "vitest";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { CsrError, parseAndVerifyCsr } from "../../certs/csr.ts";
import { childrenOf, readSingle } from "../../certs/der.ts";
import { hasOpenssl, makeCsr, openssl, pem, type Alg } from "./helpers.ts";
import { legacyParseAndVerifyCsr } from "./legacy-peculiar.ts";
import { tempDir } from "../support/temp-dir.ts";

const derOf = (p: string) => Buffer.from(p.replace(/-----[^-]+-----/g, "").replace(/\s+/g, ""), "base64");

function opensslCsr(newkey: string[], extra: string[] = []): Buffer {
  const dir = tempDir("tether-openssl-");
  openssl(["req", "-new", ...newkey, "-nodes", "-keyout", join(dir, "k.pem"), "-subj", "/CN=x", ...extra, "-out", join(dir, "r.pem")]);
  return derOf(readFileSync(join(dir, "r.pem"), "utf8"));
}

async function compare(der: Buffer): Promise<"both" | "neither" | "old only"> {
  const p = pem("CERTIFICATE REQUEST", der);
  let fresh: ReturnType<typeof parseAndVerifyCsr> | undefined;
  try {
    fresh = parseAndVerifyCsr(p);
  } catch (e) {
    expect(e).toBeInstanceOf(CsrError);
  }
  const old = await legacyParseAndVerifyCsr(p).catch(() => undefined);
  if (fresh && !old) throw new Error(`accepted a CSR the former parser refused: ${der.toString("hex")}`);
  if (fresh && old) {
    expect(fresh.keyAlg).toBe(old.keyAlg);
    expect(fresh.spki.equals(Buffer.from(old.spki))).toBe(true);
    return "both";
  }
  return old ? "old only" : "neither";
}

describe("the DER CSR parser against the former @peculiar/x509 one", () => {
  const sources: Array<[string, () => Promise<Buffer>]> = [
    ...(["Ed25519", "P-256", "P-384"] as Alg[]).map((alg): [string, () => Promise<Buffer>] => [
      `${alg} (@peculiar/x509, with a SAN request)`, async () => derOf((await makeCsr(alg, { sans: [{ type: "dns", value: "a.example" }] })).pem),
    ]),
    ...(hasOpenssl
      ? ([
          ["openssl ed25519", async () => opensslCsr(["-newkey", "ed25519"])],
          ["openssl P-256 -sha1", async () => opensslCsr(["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-sha1"])],
          ["openssl P-384 -sha512 with extensions", async () => opensslCsr(["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:secp384r1", "-sha512"], ["-addext", "basicConstraints=critical,CA:TRUE"])],
        ] as Array<[string, () => Promise<Buffer>]>)
      : []),
  ];
  for (const [name, make] of sources) {
    it(`${name}: bit flips and truncations`, async () => {
      const der = await make();
      expect(await compare(der)).toBe("both");
      // Where the signed CertificationRequestInfo ends: changes after it are not signed.
      const infoEnd = childrenOf(der, readSingle(der))[0]!.end;
      const oldOnly: number[] = [];
      for (let i = 0; i < der.length; i++) {
        for (const bit of [0, 1 + (i % 6), 7]) {
          const m = Buffer.from(der);
          m[i] ^= 1 << bit;
          if ((await compare(m)) === "old only") oldOnly.push(i);
        }
      }
      for (let n = 1; n < der.length; n += 7) expect(await compare(der.subarray(0, n))).toBe("neither");
      expect(oldOnly.filter((i) => i < infoEnd)).toEqual([]);
    });
  }
});
