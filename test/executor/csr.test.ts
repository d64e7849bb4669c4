/**
 * The daemon's key and CSR (executor/csr.ts: certs/der.ts + node:crypto, no ASN.1
 * library): for every key type, the controller's own parser accepts the CSR and its
 * self-signature, and so do two independent implementations (OpenSSL and @peculiar/x509);
 * the signature covers the request info byte for byte.
 */
import { describe, expect, it } from "vitest";
import { execFileSync, spawnSync } from "node:child_process";
import { createPrivateKey, createPublicKey } from "node:crypto";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { KEY_TYPES, newKeyAndCsr, publicKeyDerOfPrivateKey } from "../../executor/csr.ts";
import { CsrError, parseAndVerifyCsr } from "../../certs/csr.ts";
import { x509 } from "../../certs/x509.ts";
import { tempDir } from "../support/temp-dir.ts";

const hasOpenssl = spawnSync("openssl", ["version"]).status === 0;
const ALG = { ed25519: "Ed25519", p256: "P-256", p384: "P-384" } as const;

const derOf = (pem: string) => Buffer.from(pem.replace(/-----[A-Z ]+-----/g, "").replace(/\s+/g, ""), "base64");
const pemOf = (der: Buffer) => `-----BEGIN CERTIFICATE REQUEST-----\n${der.toString("base64").replace(/(.{64})/g, "$1\n").replace(/\n$/, "")}\n-----END CERTIFICATE REQUEST-----\n`;

describe("executor/csr.ts", () => {
  for (const type of KEY_TYPES) {
    it(`${type}: the controller's parser accepts the CSR, its key is the new private key's`, async () => {
      const { keyPem, csrPem } = await newKeyAndCsr(type, "host-1.example");
      expect(keyPem).toMatch(/^-----BEGIN PRIVATE KEY-----\n/);
      expect(createPrivateKey(keyPem).asymmetricKeyType).toBe(type === "ed25519" ? "ed25519" : "ec");
      const parsed = parseAndVerifyCsr(csrPem);
      expect(parsed.keyAlg).toBe(ALG[type]);
      expect(parsed.spki.equals(publicKeyDerOfPrivateKey(keyPem))).toBe(true);
      expect(createPublicKey(keyPem).equals(parsed.publicKey)).toBe(true);
    });

    it(`${type}: @peculiar/x509 reads the same subject and verifies the self-signature`, async () => {
      const { csrPem } = await newKeyAndCsr(type, "host 1/ä");
      const csr = new x509.Pkcs10CertificateRequest(csrPem);
      expect(csr.subject).toBe("CN=host_1__");
      expect(await csr.verify()).toBe(true);
    });

    it.skipIf(!hasOpenssl)(`${type}: openssl req -verify accepts it`, async () => {
      const { csrPem } = await newKeyAndCsr(type);
      const file = join(tempDir(), "req.pem");
      writeFileSync(file, csrPem);
      const out = execFileSync("openssl", ["req", "-in", file, "-noout", "-verify", "-subject"], { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] });
      expect(out).toMatch(/CN ?= ?tether-executor/);
    });
  }

  it("the signature covers the request: one byte of the subject changed, the controller refuses it", async () => {
    const { csrPem } = await newKeyAndCsr("ed25519", "abcdef");
    const der = derOf(csrPem);
    const at = der.indexOf(Buffer.from("abcdef"));
    expect(at).toBeGreaterThan(0);
    der[at] = "x".charCodeAt(0);
    expect(() => parseAndVerifyCsr(pemOf(der))).toThrow(new CsrError("CSR self-signature does not verify"));
    // Unchanged, the same bytes are accepted (the edit above is what it refuses).
    expect(parseAndVerifyCsr(pemOf(derOf(csrPem))).keyAlg).toBe("Ed25519");
  });

  it("a name with nothing usable in it gets the default subject; a new key every time", async () => {
    const a = await newKeyAndCsr("ed25519", "");
    const b = await newKeyAndCsr("ed25519", "");
    expect(new x509.Pkcs10CertificateRequest(a.csrPem).subject).toBe("CN=tether-executor");
    expect(a.keyPem).not.toBe(b.keyPem);
  });

  it("refuses a key type it does not know", async () => {
    await expect(newKeyAndCsr("rsa" as never)).rejects.toThrow(/unsupported key type rsa/);
  });
});
