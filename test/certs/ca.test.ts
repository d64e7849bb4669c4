import { describe, expect, it } from "vitest";
import { chmodSync, existsSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { X509Certificate, createPrivateKey } from "node:crypto";
import { loadOrCreateCa } from "../../certs/ca.ts";
import { bundlePem, parseBundle } from "../../certs/bundle.ts";
import { x509 } from "../../certs/x509.ts";
import { hasOpenssl, openssl } from "./helpers.ts";
import { tempDir } from "../support/temp-dir.ts";

const mode = (p: string) => statSync(p).mode & 0o777;

describe("CA", () => {
  it("creates an Ed25519 CA with 0700 dir / 0600 key and reloads it unchanged", async () => {
    const dir = join(tempDir(), "data");
    const { ca, created } = await loadOrCreateCa(dir, { trustDomain: "tether.local" });
    expect(created).toBe(true);
    expect(ca.keyType).toBe("ed25519");
    expect(mode(dir)).toBe(0o700);
    expect(mode(join(dir, "ca.key"))).toBe(0o600);
    expect(readFileSync(join(dir, "ca.key"), "utf8")).toMatch(/^-----BEGIN PRIVATE KEY-----\n/);
    expect(createPrivateKey(readFileSync(join(dir, "ca.key"))).asymmetricKeyType).toBe("ed25519");
    expect(readFileSync(join(dir, "ca.pem"), "utf8")).toBe(ca.certPem);
    expect(ca.fingerprintSha256).toMatch(/^([0-9A-F]{2}:){31}[0-9A-F]{2}$/);

    const again = await loadOrCreateCa(dir, { trustDomain: "tether.local" });
    expect(again.created).toBe(false);
    expect(again.ca.fingerprintSha256).toBe(ca.fingerprintSha256);
    expect(again.ca.notAfter.getTime()).toBe(ca.notAfter.getTime());
  });

  it("has the CA profile: CA:true pathlen 1 critical, keyCertSign+cRLSign critical, SKI, a subject no other CA has", async () => {
    const { ca } = await loadOrCreateCa(tempDir(), { trustDomain: "example.org", validityDays: 10 });
    const n = new X509Certificate(ca.certPem);
    expect(n.ca).toBe(true);
    expect(n.subject).toMatch(/^CN=Tether CA \d{4}-\d{2}-\d{2} [0-9a-f]{12}\nO=example.org$/);
    const other = await loadOrCreateCa(tempDir(), { trustDomain: "example.org", validityDays: 10 });
    expect(new X509Certificate(other.ca.certPem).subject).not.toBe(n.subject);
    expect(n.checkIssued(n)).toBe(true);
    expect(n.verify(n.publicKey)).toBe(true);
    const bc = ca.cert.getExtension(x509.BasicConstraintsExtension)!;
    expect(bc.critical).toBe(true);
    expect(bc.ca).toBe(true);
    expect(bc.pathLength).toBe(1);
    const ku = ca.cert.getExtension(x509.KeyUsagesExtension)!;
    expect(ku.critical).toBe(true);
    expect(ku.usages).toBe(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign);
    expect(ca.cert.getExtension(x509.SubjectKeyIdentifierExtension)?.keyId).toMatch(/^[0-9a-f]{40}$/);
    const days = (ca.notAfter.getTime() - Date.now()) / 86_400_000;
    expect(days).toBeGreaterThan(9.9);
    expect(days).toBeLessThan(10.1);
  });

  it.skipIf(!hasOpenssl)("prints the same fingerprint as openssl and shows the CA extensions", async () => {
    const { ca } = await loadOrCreateCa(tempDir(), { trustDomain: "tether.local", keyType: "p256" });
    const fp = openssl(["x509", "-noout", "-fingerprint", "-sha256"], ca.certPem);
    expect(fp.trim().split("=")[1]).toBe(ca.fingerprintSha256);
    const text = openssl(["x509", "-noout", "-text"], ca.certPem);
    expect(text).toMatch(/Basic Constraints: critical\s+CA:TRUE, pathlen:1/);
    expect(text).toMatch(/Key Usage: critical\s+Certificate Sign, CRL Sign/);
    expect(text).toMatch(/ecdsa-with-SHA256/);
  });

  it("creates a P-256 CA and keeps an existing CA whatever keyType is asked for", async () => {
    const dir = tempDir();
    const { ca } = await loadOrCreateCa(dir, { trustDomain: "tether.local", keyType: "p256" });
    expect(ca.keyType).toBe("p256");
    expect(new X509Certificate(ca.certPem).publicKey.asymmetricKeyDetails?.namedCurve).toBe("prime256v1");
    const again = await loadOrCreateCa(dir, { trustDomain: "tether.local", keyType: "ed25519" });
    expect(again.created).toBe(false);
    expect(again.ca.keyType).toBe("p256");
    expect(again.ca.fingerprintSha256).toBe(ca.fingerprintSha256);
  });

  it("refuses a ca.key readable by group or others, naming the file", async () => {
    const dir = tempDir();
    await loadOrCreateCa(dir, { trustDomain: "tether.local" });
    const key = join(dir, "ca.key");
    chmodSync(key, 0o640);
    await expect(loadOrCreateCa(dir, { trustDomain: "tether.local" })).rejects.toThrow(key);
    chmodSync(key, 0o604);
    await expect(loadOrCreateCa(dir, { trustDomain: "tether.local" })).rejects.toThrow(/readable by group or others/);
    chmodSync(key, 0o600);
    await expect(loadOrCreateCa(dir, { trustDomain: "tether.local" })).resolves.toMatchObject({ created: false });
  });

  it("tightens a loose data dir to 0700", async () => {
    const dir = tempDir();
    chmodSync(dir, 0o755);
    await loadOrCreateCa(dir, { trustDomain: "tether.local" });
    expect(mode(dir)).toBe(0o700);
  });

  it("completes a CA whose certificate was never written (crash after the key) from the same key", async () => {
    const dir = tempDir();
    const { ca } = await loadOrCreateCa(dir, { trustDomain: "tether.local" });
    rmSync(join(dir, "ca.pem"));
    const again = await loadOrCreateCa(dir, { trustDomain: "tether.local" });
    expect(again.created).toBe(true);
    expect(new X509Certificate(again.ca.certPem).publicKey.export({ format: "jwk" })).toEqual(
      new X509Certificate(ca.certPem).publicKey.export({ format: "jwk" }),
    );
  });

  it("refuses to replace a ca.pem whose key is gone, and a ca.pem that does not match ca.key", async () => {
    const a = tempDir();
    const b = tempDir();
    await loadOrCreateCa(a, { trustDomain: "tether.local" });
    await loadOrCreateCa(b, { trustDomain: "tether.local" });
    writeFileSync(join(a, "ca.pem"), readFileSync(join(b, "ca.pem")));
    await expect(loadOrCreateCa(a, { trustDomain: "tether.local" })).rejects.toThrow(/does not match/);
    rmSync(join(b, "ca.key"));
    await expect(loadOrCreateCa(b, { trustDomain: "tether.local" })).rejects.toThrow(/ca\.key is missing/);
    expect(existsSync(join(b, "ca.pem"))).toBe(true);
  });

  it("bundles and parses several CA certificates", async () => {
    const { ca: a } = await loadOrCreateCa(tempDir(), { trustDomain: "tether.local" });
    const { ca: b } = await loadOrCreateCa(tempDir(), { trustDomain: "tether.local", keyType: "p256" });
    const bundle = bundlePem([a, b]);
    const certs = parseBundle(bundle);
    expect(certs.map((c) => c.fingerprint256)).toEqual([a.fingerprintSha256, b.fingerprintSha256]);
    expect(parseBundle(a.certPem.replace(/\n/g, "\r\n"))).toHaveLength(1);
    expect(() => parseBundle("nothing here")).toThrow();
  });
});
