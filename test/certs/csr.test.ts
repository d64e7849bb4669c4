import { describe, expect, it } from "vitest";
import { join } from "node:path";
import { readFileSync } from "node:fs";
import { webcrypto } from "node:crypto";
import { CsrError, parseAndVerifyCsr } from "../../certs/csr.ts";
import { x509 } from "../../certs/x509.ts";
import { hasOpenssl, keyPair, makeCsr, openssl, pem, type Alg } from "./helpers.ts";
import { tempDir } from "../support/temp-dir.ts";


async function expectCsrError(input: unknown, msg?: RegExp): Promise<void> {
  let err: unknown;
  try {
    await parseAndVerifyCsr(input as string);
  } catch (e) {
    err = e;
  }
  expect(err, `expected a CsrError for ${String(input).slice(0, 60)}`).toBeInstanceOf(CsrError);
  if (msg) expect((err as Error).message).toMatch(msg);
}

function csrDer(csrPem: string): Buffer {
  return Buffer.from(csrPem.replace(/-----[^-]+-----/g, "").replace(/\s+/g, ""), "base64");
}
const csrPem = (der: Uint8Array) => pem("CERTIFICATE REQUEST", der);

function opensslCsr(newkey: string[], extra: string[] = []): string {
  const dir = tempDir("tether-openssl-");
  const out = join(dir, "req.pem");
  openssl(["req", "-new", ...newkey, "-nodes", "-keyout", join(dir, "key.pem"), "-subj", "/CN=my-executor", ...extra, "-out", out]);
  return readFileSync(out, "utf8");
}

describe("parseAndVerifyCsr", () => {
  for (const alg of ["Ed25519", "P-256", "P-384"] as Alg[]) {
    it(`accepts an ${alg} CSR from @peculiar/x509 and returns its key`, async () => {
      const { pem: p, keys } = await makeCsr(alg);
      const parsed = await parseAndVerifyCsr(p);
      expect(parsed.keyAlg).toBe(alg);
      const expected = new Uint8Array(await webcrypto.subtle.exportKey("spki", keys.publicKey));
      expect(new Uint8Array(parsed.spki)).toEqual(expected);
      expect(new Uint8Array(await webcrypto.subtle.exportKey("spki", parsed.publicKey))).toEqual(expected);
    });
  }

  it("accepts P-256 signed with SHA-384 and P-384 signed with SHA-256", async () => {
    for (const [alg, hash] of [["P-256", "SHA-384"], ["P-384", "SHA-256"], ["P-256", "SHA-512"]] as const) {
      const keys = await keyPair(alg);
      const csr = await x509.Pkcs10CertificateRequestGenerator.create({ name: "CN=x", keys, signingAlgorithm: { name: "ECDSA", hash } });
      expect((await parseAndVerifyCsr(csr.toString("pem"))).keyAlg).toBe(alg);
    }
  });

  it("accepts CRLF line endings and the NEW CERTIFICATE REQUEST label", async () => {
    const { pem: p } = await makeCsr("P-256");
    expect((await parseAndVerifyCsr(p.replace(/\n/g, "\r\n"))).keyAlg).toBe("P-256");
    expect((await parseAndVerifyCsr(p.replace(/CERTIFICATE REQUEST/g, "NEW CERTIFICATE REQUEST"))).keyAlg).toBe("P-256");
  });

  describe.skipIf(!hasOpenssl)("CSRs made by openssl req -new", () => {
    it("accepts ed25519", async () => {
      expect((await parseAndVerifyCsr(opensslCsr(["-newkey", "ed25519"]))).keyAlg).toBe("Ed25519");
    });
    it("accepts prime256v1 (ecdsa-with-SHA256)", async () => {
      const p = opensslCsr(["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"]);
      expect(openssl(["req", "-noout", "-text"], p)).toMatch(/ecdsa-with-SHA256/);
      expect((await parseAndVerifyCsr(p)).keyAlg).toBe("P-256");
    });
    it("accepts secp384r1 with openssl's default digest and with -sha384", async () => {
      expect((await parseAndVerifyCsr(opensslCsr(["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:secp384r1"]))).keyAlg).toBe("P-384");
      expect((await parseAndVerifyCsr(opensslCsr(["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:secp384r1", "-sha384"]))).keyAlg).toBe("P-384");
    });
    it("accepts a CSR with requested SANs and extensions (they are ignored)", async () => {
      const p = opensslCsr(["-newkey", "ed25519"], ["-addext", "subjectAltName=DNS:evil.example,URI:spiffe://tether.local/executor/admin", "-addext", "basicConstraints=critical,CA:TRUE"]);
      expect((await parseAndVerifyCsr(p)).keyAlg).toBe("Ed25519");
    });
    it("rejects RSA, secp521r1, secp256k1 and ed448", async () => {
      await expectCsrError(opensslCsr(["-newkey", "rsa:2048"]), /unsupported/);
      await expectCsrError(opensslCsr(["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:secp521r1"]), /unsupported/);
      await expectCsrError(opensslCsr(["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:secp256k1"]));
      await expectCsrError(opensslCsr(["-newkey", "ed448"]), /unsupported/);
    });
  });

  it("rejects an RSA CSR made with WebCrypto", async () => {
    const keys = (await webcrypto.subtle.generateKey(
      { name: "RSASSA-PKCS1-v1_5", modulusLength: 2048, publicExponent: new Uint8Array([1, 0, 1]), hash: "SHA-256" },
      true,
      ["sign", "verify"],
    )) as CryptoKeyPair;
    const csr = await x509.Pkcs10CertificateRequestGenerator.create({ name: "CN=x", keys, signingAlgorithm: { name: "RSASSA-PKCS1-v1_5", hash: "SHA-256" } });
    await expectCsrError(csr.toString("pem"), /unsupported/);
  });

  it("rejects a CSR whose signature byte was flipped", async () => {
    for (const alg of ["Ed25519", "P-256", "P-384"] as Alg[]) {
      const der = csrDer((await makeCsr(alg)).pem);
      der[der.length - 1] ^= 0x01; // the last byte of the signature BIT STRING
      await expectCsrError(csrPem(der), /does not verify|unparseable/);
    }
  });

  it("rejects a CSR whose signed content was altered", async () => {
    const { pem: p } = await makeCsr("Ed25519", { cn: "aaaaaaaa" });
    const der = csrDer(p);
    const at = der.indexOf(Buffer.from("aaaaaaaa"));
    expect(at).toBeGreaterThan(0);
    der[at] = "b".charCodeAt(0);
    await expectCsrError(csrPem(der), /does not verify/);
  });

  it("rejects a CSR signed by a different key than the one it carries", async () => {
    for (const alg of ["Ed25519", "P-256"] as Alg[]) {
      const a = await keyPair(alg);
      const b = await keyPair(alg);
      const { pem: p } = await makeCsr(alg, { keys: { publicKey: a.publicKey, privateKey: b.privateKey } });
      await expectCsrError(p, /does not verify/);
    }
  });

  it("rejects garbage, wrong PEM types, truncation and oversize input only with CsrError", async () => {
    const good = (await makeCsr("P-256")).pem;
    const der = csrDer(good);
    const cases: unknown[] = [
      "",
      "hello",
      undefined,
      null,
      42,
      { pem: good },
      good.replace(/CERTIFICATE REQUEST/g, "CERTIFICATE"),
      "-----BEGIN CERTIFICATE REQUEST-----\n!!!!\n-----END CERTIFICATE REQUEST-----\n",
      csrPem(Buffer.from("not der at all, really")),
      csrPem(der.subarray(0, der.length - 10)),
      csrPem(Buffer.concat([der, Buffer.from([0, 0])])),
      csrPem(webcrypto.getRandomValues(new Uint8Array(300))),
      csrPem(Buffer.from([0x30, 0x82, 0xff, 0xff, 0x30, 0x00])),
      good + good,
      good.slice(0, 100),
      good + "x".repeat(17 * 1024),
      "-----BEGIN CERTIFICATE REQUEST-----\n" + "A".repeat(16 * 1024) + "\n-----END CERTIFICATE REQUEST-----\n",
    ];
    for (const c of cases) await expectCsrError(c);
  });

  it("rejects random mutations of a valid CSR only with CsrError", async () => {
    const der = csrDer((await makeCsr("P-256")).pem);
    for (let i = 0; i < 200; i++) {
      const m = Buffer.from(der);
      const pos = i % m.length;
      m[pos] ^= 1 << (i % 8);
      let err: unknown;
      try {
        await parseAndVerifyCsr(csrPem(m));
      } catch (e) {
        err = e;
      }
      // Most flips break parsing or the signature; a few land on bytes the signature does
      // not cover (outer lengths are caught by the parser), so only ever a CsrError.
      if (err !== undefined) expect(err).toBeInstanceOf(CsrError);
    }
  });
});
