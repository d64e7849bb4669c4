import { beforeAll, describe, expect, it } from "vitest";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { X509Certificate } from "node:crypto";
import type { Ca } from "../../certs/ca.ts";
import { parseAndVerifyCsr } from "../../certs/csr.ts";
import { issueExecutorCert, issueServerCert } from "../../certs/profiles.ts";
import { certThumbprint } from "../../shared/fingerprint.ts";
import { x509 } from "../../certs/x509.ts";
import { hasOpenssl, keyPair, makeCsr, openssl, type Alg } from "./helpers.ts";
import { createTestCa } from "../support/ca.ts";
import { tempDir } from "../support/temp-dir.ts";

const TD = "tether.local";
let edCa: Ca;
let ecCa: Ca;
beforeAll(async () => {
  edCa = (await createTestCa({ trustDomain: TD })).ca;
  ecCa = (await createTestCa({ trustDomain: TD, keyType: "p256" })).ca;
});

describe("executor certificate profile", () => {
  for (const caName of ["ed25519", "p256"] as const) {
    for (const alg of ["Ed25519", "P-256", "P-384"] as Alg[]) {
      it(`${caName} CA, ${alg} key: exactly the PROTOCOL §2 profile`, async () => {
        const ca = caName === "ed25519" ? edCa : ecCa;
        const parsed = await parseAndVerifyCsr((await makeCsr(alg)).pem);
        const publicKey = parsed.publicKey;
        const now = new Date(Date.now() - 1000);
        const c = await issueExecutorCert(ca, { executorId: "exec_01-A", trustDomain: TD, publicKey, ttlSeconds: 86_400, now });
        const n = new X509Certificate(c.pem);
        expect(Buffer.from(c.der)).toEqual(n.raw);
        expect(c.fingerprint).toBe(certThumbprint(n.raw));
        expect(c.fingerprint).toMatch(/^[A-Za-z0-9_-]{43}$/);
        expect(n.subject).toBe("CN=exec_01-A");
        expect(n.issuer).toBe(new X509Certificate(ca.certPem).subject);
        expect(n.issuer).toMatch(/^CN=Tether CA .+\nO=tether.local$/);
        expect(n.subjectAltName).toBe("URI:spiffe://tether.local/executor/exec_01-A");
        expect(n.keyUsage).toEqual(["1.3.6.1.5.5.7.3.2"]);
        expect(n.ca).toBe(false);
        const caCert = new X509Certificate(ca.certPem);
        expect(n.checkIssued(caCert)).toBe(true);
        expect(n.verify(caCert.publicKey)).toBe(true);
        // 16-byte positive serial
        expect(n.serialNumber).toMatch(/^[0-7][0-9A-F]{31}$/);
        expect(c.serialHex.toUpperCase()).toBe(n.serialNumber);
        expect(c.notBefore.getTime()).toBe(Math.floor(now.getTime() / 1000) * 1000 - 5 * 60_000);
        expect(c.notAfter.getTime()).toBe(Math.floor((now.getTime() + 86_400_000) / 1000) * 1000);
        expect(new Date(n.validTo).getTime()).toBe(c.notAfter.getTime());

        const p = new x509.X509Certificate(c.pem);
        const bc = p.getExtension(x509.BasicConstraintsExtension)!;
        expect([bc.critical, bc.ca]).toEqual([true, false]);
        const ku = p.getExtension(x509.KeyUsagesExtension)!;
        expect([ku.critical, ku.usages]).toEqual([true, x509.KeyUsageFlags.digitalSignature]);
        const aki = p.getExtension(x509.AuthorityKeyIdentifierExtension)!;
        expect(aki.keyId).toBe(ca.cert.getExtension(x509.SubjectKeyIdentifierExtension)!.keyId);
        expect(p.extensions.map((e) => e.type).sort()).toEqual(
          ["2.5.29.19", "2.5.29.15", "2.5.29.37", "2.5.29.17", "2.5.29.35"].sort(),
        );
        expect(new Uint8Array(p.publicKey.rawData)).toEqual(new Uint8Array(parsed.spki));
      });
    }
  }

  it("ignores the CN, SANs and extensions the CSR asks for", async () => {
    const { pem } = await makeCsr("P-256", {
      cn: "admin",
      sans: [
        { type: "dns", value: "evil.example" },
        { type: "url", value: "spiffe://tether.local/executor/admin" },
        { type: "ip", value: "10.0.0.1" },
      ],
    });
    const { publicKey } = await parseAndVerifyCsr(pem);
    const c = await issueExecutorCert(edCa, { executorId: "e1", trustDomain: TD, publicKey, ttlSeconds: 3600 });
    const n = new X509Certificate(c.pem);
    expect(n.subject).toBe("CN=e1");
    expect(n.subjectAltName).toBe("URI:spiffe://tether.local/executor/e1");
    expect(c.pem).not.toContain("evil");
  });

  it.skipIf(!hasOpenssl)("openssl sees EKU clientAuth only, KU digitalSignature critical, CA:FALSE, one URI SAN, and verifies it as sslclient", async () => {
    const { pem } = await makeCsr("Ed25519", { cn: "other", sans: [{ type: "dns", value: "extra.example" }] });
    const { publicKey } = await parseAndVerifyCsr(pem);
    const c = await issueExecutorCert(ecCa, { executorId: "abc", trustDomain: TD, publicKey, ttlSeconds: 3600 });
    const text = openssl(["x509", "-noout", "-text"], c.pem);
    expect(text).toMatch(/X509v3 Basic Constraints: critical\s+CA:FALSE/);
    expect(text).toMatch(/X509v3 Key Usage: critical\s+Digital Signature\n/);
    expect(text).toMatch(/X509v3 Extended Key Usage:\s*\n\s+TLS Web Client Authentication\n/);
    expect(text).toMatch(/X509v3 Subject Alternative Name:\s*\n\s+URI:spiffe:\/\/tether.local\/executor\/abc\n/);
    expect(text).toMatch(/X509v3 Authority Key Identifier/);
    expect(text).toMatch(/Subject: CN ?= ?abc\n/);
    expect(text).not.toMatch(/DNS:|extra/);
    const dir = tempDir();
    writeFileSync(join(dir, "ca.pem"), ecCa.certPem);
    writeFileSync(join(dir, "c.pem"), c.pem);
    expect(openssl(["verify", "-CAfile", join(dir, "ca.pem"), "-purpose", "sslclient", join(dir, "c.pem")])).toMatch(/OK/);
  });

  it("never lasts past the CA's notAfter", async () => {
    const { ca } = await createTestCa({ trustDomain: TD, validityDays: 1 });
    const { publicKey } = await keyPair("Ed25519");
    const c = await issueExecutorCert(ca, { executorId: "e", trustDomain: TD, publicKey, ttlSeconds: 7 * 86_400 });
    expect(c.notAfter.getTime()).toBe(Math.floor(ca.notAfter.getTime() / 1000) * 1000);
    expect(Date.parse(new X509Certificate(c.pem).validTo)).toBeLessThanOrEqual(ca.notAfter.getTime());
    await expect(issueExecutorCert(ca, { executorId: "e", trustDomain: TD, publicKey, ttlSeconds: 60, now: new Date(ca.notAfter.getTime() + 1000) })).rejects.toThrow(/expired/);
  });

  it("gives every certificate a distinct serial and refuses ids outside [A-Za-z0-9_-]{1,64}", async () => {
    const { publicKey } = await keyPair("Ed25519");
    const serials = new Set<string>();
    for (let i = 0; i < 20; i++) serials.add((await issueExecutorCert(edCa, { executorId: "e", trustDomain: TD, publicKey, ttlSeconds: 60 })).serialHex);
    expect(serials.size).toBe(20);
    for (const bad of ["", "a,O=x", "a/b", "a.b", "x".repeat(65), "é"]) {
      await expect(issueExecutorCert(edCa, { executorId: bad, trustDomain: TD, publicKey, ttlSeconds: 60 })).rejects.toThrow(/invalid executor id/);
    }
    await expect(issueExecutorCert(edCa, { executorId: "e", trustDomain: TD, publicKey, ttlSeconds: 0 })).rejects.toThrow();
  });

  it("is quick enough to issue in the request path", async () => {
    const { publicKey } = await keyPair("P-256");
    const n = 100;
    const t0 = performance.now();
    for (let i = 0; i < n; i++) await issueExecutorCert(edCa, { executorId: `e${i}`, trustDomain: TD, publicKey, ttlSeconds: 3600 });
    const per = (performance.now() - t0) / n;
    console.log(`issueExecutorCert: ${per.toFixed(2)} ms/cert (Ed25519 CA)`);
    expect(per).toBeLessThan(50);
  });
});

describe("server certificate profile", () => {
  it("has CN = first SAN, DNS and IP SANs, EKU serverAuth, a fresh P-256 key", async () => {
    const s = await issueServerCert(edCa, { sans: ["localhost", "127.0.0.1", "::1", "tether.example"], ttlSeconds: 3600 });
    const n = new X509Certificate(s.pem);
    expect(n.subject).toBe("CN=localhost");
    expect(n.subjectAltName).toBe("DNS:localhost, IP Address:127.0.0.1, IP Address:0:0:0:0:0:0:0:1, DNS:tether.example");
    expect(n.keyUsage).toEqual(["1.3.6.1.5.5.7.3.1"]);
    expect(n.ca).toBe(false);
    expect(n.publicKey.asymmetricKeyDetails?.namedCurve).toBe("prime256v1");
    expect(s.keyPem).toMatch(/^-----BEGIN PRIVATE KEY-----\n/);
    const { createPrivateKey } = await import("node:crypto");
    expect(n.checkPrivateKey(createPrivateKey(s.keyPem))).toBe(true);
    expect(n.checkHost("localhost")).toBe("localhost");
    expect(n.checkIP("127.0.0.1")).toBe("127.0.0.1");
    await expect(issueServerCert(edCa, { sans: [], ttlSeconds: 3600 })).rejects.toThrow(/SAN/);
  });

  it.skipIf(!hasOpenssl)("openssl verifies it as sslserver", async () => {
    const s = await issueServerCert(edCa, { sans: ["localhost"], ttlSeconds: 3600 });
    const dir = tempDir();
    writeFileSync(join(dir, "ca.pem"), edCa.certPem);
    writeFileSync(join(dir, "s.pem"), s.pem);
    expect(openssl(["verify", "-CAfile", join(dir, "ca.pem"), "-purpose", "sslserver", join(dir, "s.pem")])).toMatch(/OK/);
    expect(openssl(["x509", "-noout", "-text"], s.pem)).toMatch(/X509v3 Extended Key Usage:\s*\n\s+TLS Web Server Authentication\n/);
  });
});
