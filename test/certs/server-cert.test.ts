import { beforeAll, describe, expect, it } from "vitest";
import { readFileSync, statSync, writeFileSync, rmSync, chmodSync } from "node:fs";
import { join } from "node:path";
import { X509Certificate, generateKeyPairSync } from "node:crypto";
import { once } from "node:events";
import tls from "node:tls";
import { loadOrCreateCa, type Ca } from "../../certs/ca.ts";
import { loadOrCreateServerCert, serverCertNeedsRenewal } from "../../certs/server-cert.ts";
import { checkClientCert } from "../../certs/client-cert.ts";
import { issueExecutorCert } from "../../certs/profiles.ts";
import { parseBundle, bundlePem } from "../../certs/bundle.ts";
import { keyPair, pem } from "./helpers.ts";
import { createTestCa } from "../support/ca.ts";
import { tempDir } from "../support/temp-dir.ts";
import { webcrypto } from "node:crypto";

const TD = "tether.local";
let ca: Ca;
beforeAll(async () => {
  ca = (await createTestCa({ trustDomain: TD })).ca;
});
const mode = (p: string) => statSync(p).mode & 0o777;
const SANS = ["localhost", "127.0.0.1", "::1"];

describe("loadOrCreateServerCert", () => {
  it("issues once (key 0600) and then reuses the same pair, whatever the SAN order", async () => {
    const dir = tempDir();
    const a = await loadOrCreateServerCert(dir, ca, { sans: SANS });
    expect(a.issued).toBe(true);
    expect(mode(join(dir, "server.key"))).toBe(0o600);
    expect(readFileSync(join(dir, "server.pem"), "utf8")).toBe(a.creds.certPem);
    expect(readFileSync(join(dir, "server.key"), "utf8")).toBe(a.creds.keyPem);
    const days = (a.creds.notAfter.getTime() - Date.now()) / 86_400_000;
    expect(days).toBeGreaterThan(29.9);
    expect(days).toBeLessThanOrEqual(30);
    const b = await loadOrCreateServerCert(dir, ca, { sans: ["::1", "LOCALHOST", "127.0.0.1", "localhost"] });
    expect(b.issued).toBe(false);
    expect(b.creds).toEqual(a.creds);
    const c = await loadOrCreateServerCert(dir, ca, { sans: ["0:0:0:0:0:0:0:1", "localhost", "127.0.0.1"] });
    expect(c.issued).toBe(false);
  });

  it("re-issues when the SAN set changes", async () => {
    const dir = tempDir();
    await loadOrCreateServerCert(dir, ca, { sans: SANS });
    const b = await loadOrCreateServerCert(dir, ca, { sans: [...SANS, "tether.example"] });
    expect(b.issued).toBe(true);
    expect(new X509Certificate(b.creds.certPem).subjectAltName).toContain("DNS:tether.example");
    expect((await loadOrCreateServerCert(dir, ca, { sans: ["localhost"] })).issued).toBe(true);
    expect((await loadOrCreateServerCert(dir, ca, { sans: ["localhost"] })).issued).toBe(false);
  });

  it("re-issues when the certificate is from another CA", async () => {
    const dir = tempDir();
    await loadOrCreateServerCert(dir, ca, { sans: SANS });
    const { ca: ca2 } = await createTestCa({ trustDomain: TD });
    const b = await loadOrCreateServerCert(dir, ca2, { sans: SANS });
    expect(b.issued).toBe(true);
    expect(new X509Certificate(b.creds.certPem).verify(new X509Certificate(ca2.certPem).publicKey)).toBe(true);
  });

  it("detects a crash between writing server.key and server.pem (key does not match) and re-issues", async () => {
    const dir = tempDir();
    const a = await loadOrCreateServerCert(dir, ca, { sans: SANS });
    const { privateKey } = generateKeyPairSync("ec", { namedCurve: "P-256" });
    writeFileSync(join(dir, "server.key"), privateKey.export({ type: "pkcs8", format: "pem" }), { mode: 0o600 });
    const b = await loadOrCreateServerCert(dir, ca, { sans: SANS });
    expect(b.issued).toBe(true);
    expect(b.creds.certPem).not.toBe(a.creds.certPem);
    expect(new X509Certificate(b.creds.certPem).checkPrivateKey(privateKey)).toBe(false);
    expect((await loadOrCreateServerCert(dir, ca, { sans: SANS })).issued).toBe(false);
  });

  it("re-issues when a file is missing or unreadable garbage, or the key is group-readable", async () => {
    const dir = tempDir();
    await loadOrCreateServerCert(dir, ca, { sans: SANS });
    rmSync(join(dir, "server.pem"));
    expect((await loadOrCreateServerCert(dir, ca, { sans: SANS })).issued).toBe(true);
    writeFileSync(join(dir, "server.pem"), "garbage");
    expect((await loadOrCreateServerCert(dir, ca, { sans: SANS })).issued).toBe(true);
    chmodSync(join(dir, "server.key"), 0o644);
    expect((await loadOrCreateServerCert(dir, ca, { sans: SANS })).issued).toBe(true);
    expect(mode(join(dir, "server.key"))).toBe(0o600);
  });

  it("renews when less than a third of the life is left", async () => {
    const dir = tempDir();
    const a = await loadOrCreateServerCert(dir, ca, { sans: SANS, ttlSeconds: 3000 });
    const start = a.creds.notBefore.getTime();
    const life = a.creds.notAfter.getTime() - start;
    expect(serverCertNeedsRenewal(a.creds, new Date(start + life * 0.6))).toBe(false);
    expect(serverCertNeedsRenewal(a.creds, new Date(start + life * 0.7))).toBe(true);
    expect(serverCertNeedsRenewal(a.creds, new Date(start + life * 0.4), 0.5)).toBe(false);
    expect(serverCertNeedsRenewal(a.creds, new Date(start + life * 0.6), 0.5)).toBe(true);
    expect(serverCertNeedsRenewal(a.creds, new Date(a.creds.notAfter.getTime() + 1))).toBe(true);
    expect(serverCertNeedsRenewal(a.creds, new Date(start - 1))).toBe(true);
    // a fraction past 1 means "always": the stored pair is replaced
    expect((await loadOrCreateServerCert(dir, ca, { sans: SANS, renewBeforeFraction: 1.01 })).issued).toBe(true);
  });
});

describe("mutual TLS with the issued certificates", () => {
  for (const keyType of ["ed25519", "p256"] as const) {
    it(`${keyType} CA: the server certificate and an executor certificate complete a real handshake`, async () => {
      const dir = tempDir();
      const { ca: tlsCa } = await loadOrCreateCa(dir, { trustDomain: TD, keyType });
      const { creds } = await loadOrCreateServerCert(dir, tlsCa, { sans: SANS });
      const bundle = bundlePem([tlsCa]);
      const keys = await keyPair("Ed25519");
      const c = await issueExecutorCert(tlsCa, { executorId: "e7", trustDomain: TD, publicKey: keys.publicKey, ttlSeconds: 600 });
      const clientKeyPem = pem("PRIVATE KEY", await webcrypto.subtle.exportKey("pkcs8", keys.privateKey));
      const server = tls.createServer({ cert: creds.certPem, key: creds.keyPem, ca: bundle, requestCert: true, rejectUnauthorized: true }, (s) => {
        const r = checkClientCert(s.getPeerCertificate().raw, { caCerts: parseBundle(bundle), trustDomain: TD });
        s.end(JSON.stringify(r));
      });
      server.listen(0, "127.0.0.1");
      await once(server, "listening");
      const port = (server.address() as { port: number }).port;
      try {
        for (const host of ["127.0.0.1", "localhost"]) {
          const sock = tls.connect({ host, port, servername: host === "localhost" ? host : undefined, ca: bundle, cert: c.pem, key: clientKeyPem });
          let body = "";
          sock.on("data", (d) => (body += d));
          await once(sock, "end");
          expect(JSON.parse(body)).toMatchObject({ ok: true, identity: { executorId: "e7", fingerprint: c.fingerprint } });
        }
        // a client without a certificate is turned away by TLS itself
        const bare = tls.connect({ host: "127.0.0.1", port, ca: bundle });
        let got = "";
        bare.on("data", (d) => (got += d));
        const err = await new Promise<Error | null>((res) => {
          bare.on("error", res);
          bare.on("close", () => res(null));
        });
        bare.destroy();
        expect(got).toBe("");
        expect(err?.message ?? "closed").toMatch(/certificate required|closed|ECONNRESET|socket hang up/);
      } finally {
        server.close();
      }
    });
  }
});
