import { describe, expect, it } from "vitest";
import { join } from "node:path";
import { readFileSync } from "node:fs";
import { KeyObject, sign, webcrypto } from "node:crypto";
import { CsrError, parseAndVerifyCsr } from "../../certs/csr.ts";
import { bitString, seq, tlv, TAG } from "../../certs/der.ts";
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
      expect(new Uint8Array(parsed.publicKey.export({ type: "spki", format: "der" }))).toEqual(expected);
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

/**
 * CSRs built part by part and signed by their own key, so that only the part under test is
 * wrong: the parser is strict DER (RFC 2986 structure, RFC 8410 / RFC 5480 key encodings,
 * RFC 5758 signature algorithm identifiers), whatever the signature says.
 */
describe("parseAndVerifyCsr: strict DER", () => {
  const hex = (h: string) => Buffer.from(h, "hex");
  const oid = (h: string) => tlv(TAG.OID, hex(h));
  const ED25519 = seq(oid("2b6570"));
  const ECDSA_SHA256 = seq(oid("2a8648ce3d040302"));
  const NAME = seq(tlv(TAG.SET, seq(oid("550403"), tlv(TAG.UTF8_STRING, Buffer.from("executor")))));
  const V1 = hex("020100");
  const NO_ATTRIBUTES = tlv(0xa0);

  interface Parts { version: Buffer; subject: Buffer; spki: Buffer; attributes: Buffer; extra: Buffer[]; sigAlg: Buffer; digest: string | null; unusedBits: number; info?: Buffer; signature?: (s: Buffer) => Buffer }

  async function builder(alg: Alg) {
    const keys = await keyPair(alg);
    const spki = Buffer.from(await webcrypto.subtle.exportKey("spki", keys.publicKey));
    const key = KeyObject.from(keys.privateKey as webcrypto.CryptoKey);
    const base: Parts = {
      version: V1, subject: NAME, spki, attributes: NO_ATTRIBUTES, extra: [], sigAlg: alg === "Ed25519" ? ED25519 : ECDSA_SHA256,
      digest: alg === "Ed25519" ? null : "sha256", unusedBits: 0,
    };
    return Object.assign((edit: Partial<Parts> = {}): string => {
      const p = { ...base, ...edit };
      const info = p.info ?? seq(p.version, p.subject, p.spki, p.attributes, ...p.extra);
      let sig: Buffer = sign(p.digest, info, p.digest ? { key, dsaEncoding: "der" } : key);
      if (p.signature) sig = p.signature(sig);
      const sigBits = p.unusedBits ? tlv(TAG.BIT_STRING, Buffer.from([p.unusedBits]), sig) : bitString(sig);
      return pem("CERTIFICATE REQUEST", seq(info, p.sigAlg, sigBits));
    }, { spki });
  }

  it("accepts what the builder makes when nothing is changed", async () => {
    for (const alg of ["Ed25519", "P-256", "P-384"] as Alg[]) expect(parseAndVerifyCsr((await builder(alg))()).keyAlg).toBe(alg);
  });

  it("refuses a signature BIT STRING with unused bits", async () => {
    const csr = await builder("Ed25519");
    await expectCsrError(csr({ unusedBits: 1 }), /^unparseable CSR$/);
  });

  it("refuses BER in the signed part: a long-form length that fits in one byte, an indefinite length, a multi-byte tag", async () => {
    const csr = await builder("Ed25519");
    const nameContent = NAME.subarray(2);
    await expectCsrError(csr({ subject: Buffer.concat([hex("3081"), Buffer.from([nameContent.length]), nameContent]) }), /^unparseable CSR$/);
    // A high-tag-number form tag (bf 02 …): read as a one-byte tag, bf 02 05 00 would look well-formed.
    await expectCsrError(csr({ attributes: tlv(0xa0, seq(oid("2a864886f70d01090e"), tlv(TAG.SET, hex("bf020500")))) }), /^unparseable CSR$/);
    // Indefinite-length info: 30 80 … 00 00.
    const inner = Buffer.concat([V1, NAME]);
    await expectCsrError(csr({ info: Buffer.concat([hex("3080"), inner, hex("0000")]) }), /^unparseable CSR$/);
  });

  it("refuses a version other than v1, missing attributes, an element after them, and a subject that is no Name", async () => {
    const csr = await builder("Ed25519");
    await expectCsrError(csr({ version: hex("020101") }), /^unparseable CSR$/);
    await expectCsrError(csr({ version: hex("02020000") }), /^unparseable CSR$/);
    await expectCsrError(csr({ attributes: Buffer.alloc(0) }), /^unparseable CSR$/);
    await expectCsrError(csr({ extra: [hex("0500")] }), /^unparseable CSR$/);
    await expectCsrError(csr({ subject: seq(hex("020101")) }), /^unparseable CSR$/);
    await expectCsrError(csr({ subject: seq(tlv(TAG.SET, seq(hex("020101"), hex("0500")))) }), /^unparseable CSR$/);
    await expectCsrError(csr({ attributes: tlv(0xa0, seq(hex("0500"))) }), /^unparseable CSR$/);
  });

  it("refuses an Ed25519 key with parameters (RFC 8410: absent)", async () => {
    const csr = await builder("Ed25519");
    const withNull = seq(seq(oid("2b6570"), hex("0500")), csr.spki.subarray(csr.spki.length - 35));
    await expectCsrError(csr({ spki: withNull }), /^unsupported CSR key type ed25519 with non-standard parameters$/);
  });

  it("refuses a signature algorithm of another key type, with parameters, or with SHA-224", async () => {
    const ed = await builder("Ed25519");
    await expectCsrError(ed({ sigAlg: ECDSA_SHA256 }), /^unsupported CSR signature algorithm for its Ed25519 key$/);
    const ec = await builder("P-256");
    await expectCsrError(ec({ sigAlg: ED25519 }), /^unsupported CSR signature algorithm for its P-256 key$/);
    await expectCsrError(ec({ sigAlg: seq(oid("2a8648ce3d040302"), hex("0500")) }), /^unsupported CSR signature algorithm/);
    await expectCsrError(ec({ sigAlg: seq(oid("2a8648ce3d040301")), digest: "sha224" }), /^unsupported CSR signature algorithm/);
  });

  it("refuses an ECDSA signature that is not canonical DER", async () => {
    const ec = await builder("P-256");
    // SEQUENCE { INTEGER r, INTEGER s } with a redundant leading zero added to r.
    const padR = (sig: Buffer) => {
      const rLen = sig[3]!;
      const r = Buffer.concat([hex("00"), sig.subarray(4, 4 + rLen)]);
      const rest = sig.subarray(4 + rLen);
      return seq(tlv(TAG.INTEGER, r), rest);
    };
    await expectCsrError(ec({ signature: padR }), /^CSR self-signature does not verify$/);
  });

  it("refuses nesting deeper than any CSR needs, with a CsrError (no stack overflow)", async () => {
    const csr = await builder("Ed25519");
    let deep: Buffer = hex("0500");
    for (let i = 0; i < 40; i++) deep = seq(deep);
    await expectCsrError(csr({ attributes: tlv(0xa0, seq(oid("2a864886f70d01090e"), tlv(TAG.SET, deep))) }), /^unparseable CSR$/);
    const huge = "-----BEGIN CERTIFICATE REQUEST-----\n" + Buffer.from("3080".repeat(5000), "hex").toString("base64") + "\n-----END CERTIFICATE REQUEST-----\n";
    await expectCsrError(huge);
  });
});
