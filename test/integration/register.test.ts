/** Registration (PROTOCOL §3.1) over real TLS: tokens, CSRs, the certificate profile, bad input. */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { webcrypto, X509Certificate } from "node:crypto";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import "reflect-metadata";
import * as x509 from "@peculiar/x509";
import { startTestController, type TestController } from "../support/controller.ts";
import { newKeyAndCsr, WireClient } from "../support/wire.ts";

const code = (r: { json: any }) => r.json?.error?.code;
let tc: TestController;
let anon: WireClient;

beforeAll(async () => {
  tc = await startTestController();
  anon = new WireClient(tc.url, tc.caPem);
});
afterAll(async () => {
  await anon?.close();
  await tc?.close();
});

async function registerWith(body: Record<string, unknown>) {
  return anon.send("POST", "/v1/executors/register", { body: JSON.stringify(body) });
}

describe("register", () => {
  it("issues a certificate with exactly the PROTOCOL §2 profile, ignoring what the CSR asks for", async () => {
    const { csrPem } = await newKeyAndCsr("Ed25519", { cn: "admin", sans: ["evil.example.com", "spiffe://tether.local/controller"] });
    const r = await registerWith({ enrollment_token: await tc.createToken({ labels: { zone: "a" } }), csr_pem: csrPem, name: "n1", labels: { zone: "b", os: "linux" }, capacity: 3 });
    expect(r.status).toBe(201);
    const body = r.json;
    expect(body.executor_id).toMatch(/^[A-Za-z0-9_-]{1,64}$/);
    expect(body.epoch).toBe(1);
    expect(Buffer.from(body.hmac_key, "base64url")).toHaveLength(32);
    expect(body.heartbeat_interval_s).toBe(10);
    expect(body.ca_bundle_pem).toBe(tc.caPem);
    expect(body.trust_bundle_version).toBe(1);
    const cert = new X509Certificate(body.certificate_pem);
    expect(cert.subject).toBe(`CN=${body.executor_id}`);
    expect(cert.subjectAltName).toBe(`URI:spiffe://tether.local/executor/${body.executor_id}`);
    expect(cert.keyUsage).toEqual(["1.3.6.1.5.5.7.3.2"]);
    expect(cert.ca).toBe(false);
    expect(cert.verify(new X509Certificate(tc.caPem).publicKey)).toBe(true);
    const parsed = new x509.X509Certificate(body.certificate_pem);
    const ku = parsed.getExtension(x509.KeyUsagesExtension)!;
    expect(ku.usages).toBe(x509.KeyUsageFlags.digitalSignature);
    expect(Buffer.from(parsed.serialNumber, "hex").length).toBeGreaterThanOrEqual(8);
    const life = Date.parse(cert.validTo) - Date.parse(cert.validFrom);
    expect(life).toBeGreaterThan(24 * 3600_000);
    expect(life).toBeLessThanOrEqual(24 * 3600_000 + 5 * 60_000 + 1000);
    expect(Date.now() - Date.parse(cert.validFrom)).toBeLessThanOrEqual(5 * 60_000 + 2000);
    expect(Date.parse(body.cert_expires_at)).toBe(Math.floor(Date.parse(cert.validTo) / 1000) * 1000);
    const shown = await tc.c.ctx.executors.show(body.executor_id);
    expect(shown).toMatchObject({ name: "n1", labels: { zone: "a", os: "linux" }, capacity: 3, epoch: 1, revoked: false });
  });

  it("issues a JWT with the claims of PROTOCOL §3.2 bound to the certificate", async () => {
    const { csrPem } = await newKeyAndCsr("P-384");
    const r = await registerWith({ enrollment_token: await tc.createToken(), csr_pem: csrPem });
    expect(r.status).toBe(201);
    const [h, p] = r.json.jwt.split(".");
    const header = JSON.parse(Buffer.from(h, "base64url").toString());
    const claims = JSON.parse(Buffer.from(p, "base64url").toString());
    const jwks = await anon.send("GET", "/.well-known/jwks.json");
    expect(header).toMatchObject({ alg: "EdDSA", kid: jwks.json.keys[0].kid });
    expect(jwks.json.keys[0]).toMatchObject({ kty: "OKP", crv: "Ed25519" });
    expect(claims).toMatchObject({ iss: "spiffe://tether.local/controller", aud: "tether-controller", sub: r.json.executor_id, epoch: 1 });
    expect(claims.exp - claims.iat).toBe(900);
    expect(typeof claims.jti).toBe("string");
    const der = new X509Certificate(r.json.certificate_pem).raw;
    const { createHash } = await import("node:crypto");
    expect(claims.cnf["x5t#S256"]).toBe(createHash("sha256").update(der).digest("base64url"));
  });

  it("every token problem gives one identical 401 ENROLLMENT_DENIED, and the reason goes to the audit log", async () => {
    const { csrPem } = await newKeyAndCsr();
    const used = await tc.createToken();
    expect((await registerWith({ enrollment_token: used, csr_pem: csrPem })).status).toBe(201);
    const revokedId = (await tc.c.ctx.enrollment.create({}, { via: "test" }));
    await tc.c.ctx.enrollment.revoke(revokedId.id, { via: "test" });
    const expired = await tc.c.ctx.enrollment.create({ ttlSeconds: 1 }, { via: "test" });
    await new Promise((r) => setTimeout(r, 1100));
    const cases = {
      unknown: "tet_enr_" + "x".repeat(43),
      malformed: "hello",
      used_up: used,
      revoked: revokedId.token,
      expired: expired.token,
    };
    const bodies = new Set<string>();
    for (const token of Object.values(cases)) {
      const r = await registerWith({ enrollment_token: token, csr_pem: csrPem });
      expect(r.status).toBe(401);
      expect(code(r)).toBe("ENROLLMENT_DENIED");
      bodies.add(r.text);
    }
    expect(bodies.size).toBe(1);
    const audit = readFileSync(join(tc.dataDir, "audit.log"), "utf8");
    for (const reason of ["unknown", "malformed", "used_up", "revoked", "expired"]) expect(audit).toContain(`"reason":"${reason}"`);
    for (const token of Object.values(cases)) expect(audit).not.toContain(token);
  });

  it("a race of concurrent registrations on a single-use token yields exactly one success", async () => {
    const token = await tc.createToken();
    const csrs = await Promise.all(Array.from({ length: 12 }, () => newKeyAndCsr()));
    const clients = csrs.map(() => new WireClient(tc.url, tc.caPem));
    const results = await Promise.all(
      csrs.map((c, i) => clients[i]!.send("POST", "/v1/executors/register", { body: JSON.stringify({ enrollment_token: token, csr_pem: c.csrPem }) })),
    );
    await Promise.all(clients.map((c) => c.close()));
    expect(results.filter((r) => r.status === 201)).toHaveLength(1);
    expect(results.filter((r) => r.status === 401 && code(r) === "ENROLLMENT_DENIED")).toHaveLength(11);
    const tokens = await tc.c.ctx.enrollment.list();
    expect(tokens.filter((t) => t.uses > t.max_uses)).toHaveLength(0);
  });

  it("a token with max uses N enrolls exactly N executors", async () => {
    const token = await tc.createToken({ maxUses: 3 });
    const statuses: number[] = [];
    for (let i = 0; i < 4; i++) statuses.push((await registerWith({ enrollment_token: token, csr_pem: (await newKeyAndCsr()).csrPem })).status);
    expect(statuses).toEqual([201, 201, 201, 401]);
  });

  it("garbage, RSA and badly-signed CSRs → 400 INVALID_CSR, and the token is not consumed", async () => {
    const token = await tc.createToken();
    const rsaKeys = await webcrypto.subtle.generateKey(
      { name: "RSASSA-PKCS1-v1_5", modulusLength: 2048, publicExponent: new Uint8Array([1, 0, 1]), hash: "SHA-256" }, true, ["sign", "verify"],
    );
    const rsaCsr = await x509.Pkcs10CertificateRequestGenerator.create({ name: "CN=rsa", keys: rsaKeys, signingAlgorithm: { name: "RSASSA-PKCS1-v1_5" } });
    const good = await newKeyAndCsr("P-256");
    const der = Buffer.from(good.csrPem.replace(/-----[^-]+-----|\s/g, ""), "base64");
    der[der.length - 5]! ^= 0xff; // inside the signature
    const badSig = `-----BEGIN CERTIFICATE REQUEST-----\n${der.toString("base64")}\n-----END CERTIFICATE REQUEST-----\n`;
    for (const csr_pem of ["not a csr", "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n", rsaCsr.toString("pem"), badSig, tc.caPem]) {
      const r = await registerWith({ enrollment_token: token, csr_pem });
      expect([r.status, code(r)]).toEqual([400, "INVALID_CSR"]);
    }
    expect((await registerWith({ enrollment_token: token, csr_pem: good.csrPem })).status).toBe(201);
  });

  it("malformed JSON, wrong types and missing fields → 400 INVALID_REQUEST", async () => {
    const { csrPem } = await newKeyAndCsr();
    const token = await tc.createToken();
    const bad = [
      "{not json",
      JSON.stringify({ csr_pem: csrPem }),
      JSON.stringify({ enrollment_token: token }),
      JSON.stringify({ enrollment_token: 42, csr_pem: csrPem }),
      JSON.stringify({ enrollment_token: token, csr_pem: csrPem, capacity: 0 }),
      JSON.stringify({ enrollment_token: token, csr_pem: csrPem, capacity: "2" }),
      JSON.stringify({ enrollment_token: token, csr_pem: csrPem, name: "x".repeat(65) }),
      JSON.stringify({ enrollment_token: token, csr_pem: csrPem, labels: { a: 1 } }),
      "[]",
      "",
    ];
    for (const body of bad) {
      const r = await anon.send("POST", "/v1/executors/register", { body });
      expect([r.status, code(r)], body).toEqual([400, "INVALID_REQUEST"]);
    }
    // nothing was half-written: the token still works
    expect((await registerWith({ enrollment_token: token, csr_pem: csrPem })).status).toBe(201);
  });

  it("a name or label holding a control character (a terminal escape) → 400 INVALID_REQUEST, token not consumed", async () => {
    const { csrPem } = await newKeyAndCsr();
    const token = await tc.createToken();
    for (const extra of [
      { name: "evil\u001b]0;pwned\u0007" },
      { name: "c1-csi\u009b2J" },
      { name: "del\u007f" },
      { labels: { zone: "a\u001b[31m" } },
      { labels: { "k\u0000": "v" } },
    ]) {
      const r = await registerWith({ enrollment_token: token, csr_pem: csrPem, ...extra });
      expect([r.status, code(r)], JSON.stringify(extra)).toEqual([400, "INVALID_REQUEST"]);
    }
    const ok = await registerWith({ enrollment_token: token, csr_pem: csrPem, name: "zürich-01 (rack 4)", labels: { zone: "ä" } });
    expect(ok.status).toBe(201);
  });

  it("a body over 64 KiB → 413 PAYLOAD_TOO_LARGE", async () => {
    const r = await registerWith({ enrollment_token: "x", csr_pem: "y".repeat(70_000) });
    expect([r.status, code(r)]).toEqual([413, "PAYLOAD_TOO_LARGE"]);
  });
});

describe("register rate limit", () => {
  it("429 RATE_LIMITED with Retry-After when one address registers too fast", async () => {
    const limited = await startTestController({ registerBurst: 3, registerPerSecond: 0.2 });
    const c = new WireClient(limited.url, limited.caPem);
    try {
      const statuses: number[] = [];
      let last: Awaited<ReturnType<WireClient["send"]>> | undefined;
      for (let i = 0; i < 5; i++) {
        last = await c.send("POST", "/v1/executors/register", { body: JSON.stringify({ enrollment_token: "tet_enr_" + "x".repeat(43), csr_pem: "x" }) });
        statuses.push(last.status);
      }
      expect(statuses).toEqual([401, 401, 401, 429, 429]);
      expect(code(last!)).toBe("RATE_LIMITED");
      expect(Number(last!.headers["retry-after"])).toBeGreaterThanOrEqual(1);
    } finally {
      await c.close();
      await limited.close();
    }
  });
});

describe("public routes and posture", () => {
  it("serves the CA bundle, the JWKS and health", async () => {
    const bundle = await anon.send("GET", "/v1/ca/bundle.pem");
    expect(bundle.status).toBe(200);
    expect(bundle.text).toBe(tc.caPem);
    expect([bundle.headers["content-type"], bundle.headers["x-tether-bundle-version"]]).toEqual(["application/x-pem-file", "1"]);
    const health = await anon.send("GET", "/healthz");
    expect([health.status, health.json]).toEqual([200, { status: "ok" }]);
    const jwks = await anon.send("GET", "/.well-known/jwks.json");
    // The signing key and the prepublished next key (PROTOCOL §7.3).
    expect(jwks.json.keys).toHaveLength(2);
    for (const k of jwks.json.keys) expect(Object.keys(k).sort()).toEqual(["alg", "crv", "kid", "kty", "use", "x"]);
  });

  it("production posture by default: the dev token route is absent (404)", async () => {
    expect(tc.config.env).toBe("production");
    const r = await anon.send("POST", "/v1/dev/enrollment-tokens", { body: "{}" });
    expect([r.status, code(r)]).toEqual([404, "NOT_FOUND"]);
  });

  it("development mode mounts the dev token route, whose tokens register", async () => {
    const dev = await startTestController({ env: "development" });
    const c = new WireClient(dev.url, dev.caPem);
    try {
      const r = await c.send("POST", "/v1/dev/enrollment-tokens", { body: JSON.stringify({ max_uses: 2 }) });
      expect(r.status).toBe(201);
      expect(r.json.token).toMatch(/^tet_enr_[A-Za-z0-9_-]{43}$/);
      const { csrPem } = await newKeyAndCsr();
      const reg = await c.send("POST", "/v1/executors/register", { body: JSON.stringify({ enrollment_token: r.json.token, csr_pem: csrPem }) });
      expect(reg.status).toBe(201);
      expect(readFileSync(join(dev.dataDir, "audit.log"), "utf8")).toMatch(/"via":"dev-route","source":"127\.0\.0\.1"/);
    } finally {
      await c.close();
      await dev.close();
    }
  });

  it("unknown routes → 404 NOT_FOUND in the error shape", async () => {
    const r = await anon.send("GET", "/nope");
    expect([r.status, code(r)]).toEqual([404, "NOT_FOUND"]);
  });
});
