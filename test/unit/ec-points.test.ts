/**
 * Issued EC certificates carry the uncompressed point whatever form the CSR used
 * (docs/security.md, "Store failures and durability" → finding 10): a CSR made by
 * openssl from a key converted with `-conv_form compressed`.
 */
import { execFileSync } from "node:child_process";
import { X509Certificate } from "node:crypto";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { parseAndVerifyCsr } from "../../certs/csr.ts";
import { issueExecutorCert } from "../../certs/profiles.ts";
import { createTestCa, TEST_TRUST_DOMAIN } from "../support/ca.ts";
import { tempDir } from "../support/temp-dir.ts";

/**
 * The SEC1 point inside an SPKI: 0x04 ‖ X ‖ Y uncompressed, 0x02/0x03 ‖ X compressed. It is the
 * content of the BIT STRING that ends the SPKI (03 len 00 point), which says which form it is.
 */
function ecPoint(spkiDer: Buffer, coordinateBytes: number): Buffer {
  for (const n of [1 + 2 * coordinateBytes, 1 + coordinateBytes]) {
    const at = spkiDer.length - n;
    if (at >= 3 && spkiDer[at - 3] === 0x03 && spkiDer[at - 2] === n + 1 && spkiDer[at - 1] === 0x00) return spkiDer.subarray(at);
  }
  throw new Error("no EC point at the end of the SPKI");
}

function compressedCsr(curve: string): string {
  const dir = tempDir("tether-ec-");
  const openssl = (...args: string[]) => execFileSync("openssl", args, { stdio: ["ignore", "pipe", "pipe"] });
  openssl("ecparam", "-name", curve, "-genkey", "-noout", "-out", join(dir, "k.pem"));
  openssl("ec", "-in", join(dir, "k.pem"), "-conv_form", "compressed", "-out", join(dir, "kc.pem"));
  openssl("req", "-new", "-key", join(dir, "kc.pem"), "-subj", "/CN=ignored", "-out", join(dir, "csr.pem"));
  return readFileSync(join(dir, "csr.pem"), "utf8");
}

describe("EC certificates", () => {
  for (const [curve, bytes] of [["prime256v1", 32], ["secp384r1", 48]] as const) {
    it(`a CSR with a compressed ${curve} point yields a certificate with the uncompressed point`, async () => {
      const csrPem = compressedCsr(curve);
      const csr = await parseAndVerifyCsr(csrPem);
      const csrPoint = ecPoint(Buffer.from(csr.spki), bytes);
      expect([0x02, 0x03]).toContain(csrPoint[0]); // the CSR really is compressed
      const { ca } = await createTestCa();
      const cert = await issueExecutorCert(ca, { executorId: "ex_ec1", trustDomain: TEST_TRUST_DOMAIN, publicKey: csr.publicKey, ttlSeconds: 600 });
      const spki = new X509Certificate(cert.pem).publicKey.export({ type: "spki", format: "der" });
      const point = ecPoint(spki, bytes);
      expect(point[0]).toBe(0x04);
      expect(point.subarray(1, 1 + bytes).equals(csrPoint.subarray(1))).toBe(true); // same X: the same key
    });
  }
});
