/**
 * CA rotation (PROTOCOL §7.1, §7.2) over real TLS against a real controller and SQLite
 * file, with the low-level wire client: the bundle and its version, prepare, adoption
 * reported by heartbeats, the adoption gate (409 ADOPTION_INCOMPLETE naming the pending
 * executors), force, the server certificate re-issued and served with the cross
 * certificate (a client that trusts only the old CA still connects), the renewal hint,
 * renewal onto the new CA, removal of a drained CA, and the schedule.
 */
import { describe, expect, it } from "vitest";
import { readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { connect, type PeerCertificate } from "node:tls";
import { X509Certificate } from "node:crypto";
import { parseBundle } from "../../certs/bundle.ts";
import { issueExecutorCert } from "../../certs/profiles.ts";
import { caFingerprint } from "../../shared/fingerprint.ts";
import type { startTestController, TestController } from "../support/controller.ts";
import { executorCall, newKeyAndCsr, WireClient, type Enrolled, type Response } from "../support/wire.ts";
import { heartbeat, trustFixture } from "../support/trust.ts";

const t = trustFixture();

async function controller(overrides: Parameters<typeof startTestController>[0] = {}) {
  const tc = await t.controller(overrides);
  const admin = (await tc.c.ctx.apiTokens.create({ name: "ca-admin", role: "admin" }, "test", { via: "test" })).token;
  const viewer = (await tc.c.ctx.apiTokens.create({ name: "ca-viewer", role: "viewer" }, "test", { via: "test" })).token;
  const anon = t.track(new WireClient(tc.url, tc.caPem));
  const op = (method: string, path: string, body?: unknown, token = admin) =>
    anon.send(method, path, { body: method === "POST" ? JSON.stringify(body ?? {}) : undefined, headers: token ? { authorization: `Bearer ${token}` } : {} });
  return { tc, op, anon, viewer };
}
const enroll = t.enroll;

/** Renews with a fresh key; the executor switches certificate, key, JWT and HMAC key, as a daemon does. */
async function renewWithCsr(e: Enrolled, trustPem: string): Promise<Response> {
  const { keyPem, csrPem } = await newKeyAndCsr("P-256");
  const r = await executorCall(e, "POST", `/v1/executors/${e.id}/renew`, { csr_pem: csrPem });
  expect(r.status, r.text).toBe(200);
  e.certPem = r.json.certificate_pem;
  e.keyPem = keyPem;
  e.jwt = r.json.jwt;
  if (r.json.hmac_key) e.hmacKey = Buffer.from(r.json.hmac_key, "base64url");
  e.client = t.track(new WireClient(e.client.url, trustPem, { certPem: e.certPem, keyPem }));
  return r;
}

/** The certificate chain the server presents to a client that trusts only `caPem`, and whether that client accepted it. */
function peerChain(port: number, caPem: string): Promise<{ authorized: boolean; error?: string; chain: PeerCertificate[] }> {
  return new Promise((resolve, reject) => {
    const s = connect({ host: "127.0.0.1", port, ca: caPem, servername: "localhost", rejectUnauthorized: false }, () => {
      const chain: PeerCertificate[] = [];
      for (let c = s.getPeerCertificate(true); c && !chain.includes(c); c = c.issuerCertificate) chain.push(c);
      resolve({ authorized: s.authorized, error: s.authorizationError?.toString(), chain });
      s.end();
    });
    s.on("error", reject);
  });
}

async function eventually<T>(fn: () => Promise<T | undefined>, what: string, timeoutMs = 5000): Promise<T> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

const auditEvents = (tc: TestController) =>
  readFileSync(join(tc.dataDir, "audit.log"), "utf8").trim().split("\n").map((l) => JSON.parse(l) as { event: string } & Record<string, unknown>);

describe("CA rotation by hand, gated on adoption", () => {
  it("prepare → adoption by heartbeats → 409 ADOPTION_INCOMPLETE naming the pending → activate; the old CA's clients still connect, are told to renew, and move", async () => {
    const { tc, op, anon } = await controller({ heartbeatIntervalSeconds: 2 });
    const oldCaPem = tc.caPem;
    const e1 = await enroll(tc);
    const e2 = await enroll(tc);
    expect(e1.reg.trust_bundle_version).toBe(1);
    expect(e1.reg.ca_bundle_pem).toBe(oldCaPem);

    // The bundle and its version, public.
    const b1 = await anon.send("GET", "/v1/ca/bundle.pem");
    expect([b1.status, b1.headers["x-tether-bundle-version"], b1.text]).toEqual([200, "1", oldCaPem]);
    for (const e of [e1, e2]) expect((await heartbeat(e, 1)).json.trust_bundle_version).toBe(1);

    // Prepare: the bundle grows (version 2), the new CA signs nothing yet.
    const prepared = await op("POST", "/api/v1/ca/rotate");
    expect(prepared.status, prepared.text).toBe(201);
    expect(prepared.json).toMatchObject({ state: "prepared", adopted_by: 0, pending: [e1.id, e2.id] });
    const again = await op("POST", "/api/v1/ca/rotate");
    expect([again.status, again.json.error.code]).toEqual([409, "CONFLICT"]);
    const b2 = await anon.send("GET", "/v1/ca/bundle.pem");
    expect(b2.headers["x-tether-bundle-version"]).toBe("2");
    const bundle = parseBundle(b2.text);
    expect(bundle.map((c) => caFingerprint(c.raw))).toEqual([caFingerprint(new X509Certificate(oldCaPem).raw), prepared.json.fingerprint_sha256]);
    expect(readFileSync(join(tc.dataDir, "ca.pem"), "utf8")).toBe(b2.text);
    expect(statSync(join(tc.dataDir, "ca.pem")).mode & 0o777).toBe(0o644);
    const newCaPem = bundle[1]!.toString();
    // Still issued by the old CA until activation.
    const hb1 = await heartbeat(e1, 2);
    expect(hb1.json.trust_bundle_version).toBe(2);

    // The gate: e2 is live and has not adopted.
    const refused = await op("POST", "/api/v1/ca/activate", {});
    expect(refused.status).toBe(409);
    expect(refused.json.error).toMatchObject({ code: "ADOPTION_INCOMPLETE", pending: [e2.id] });
    const status = await op("GET", "/api/v1/ca");
    expect(status.json.trust_bundle_version).toBe(2);
    expect(status.json.cas).toMatchObject([
      { state: "active", adopted_by: 2, pending: [] },
      { state: "prepared", fingerprint_sha256: prepared.json.fingerprint_sha256, adopted_by: 1, pending: [e2.id] },
    ]);
    expect((await peerChain(tc.c.port, oldCaPem)).chain[0]!.issuer.CN).toBe(new X509Certificate(oldCaPem).subject.split("\n")[0]!.slice(3));

    await heartbeat(e2, 2);
    const activatedAt = Date.now();
    const activated = await op("POST", "/api/v1/ca/activate", {});
    expect(activated.status, activated.text).toBe(200);
    expect(activated.json).toMatchObject({ state: "active", fingerprint_sha256: prepared.json.fingerprint_sha256, adopted_by: 2, pending: [] });
    expect((await op("POST", "/api/v1/ca/activate", {})).json.error.code).toBe("CONFLICT");

    // Served at once: the server certificate is the new CA's, followed by the cross certificate.
    // A client that trusts only the old CA accepts the chain; so does one that trusts only the new CA.
    const viaOld = await peerChain(tc.c.port, oldCaPem);
    expect(viaOld.authorized, viaOld.error).toBe(true);
    expect(viaOld.chain.map((c) => c.subject.CN)).toEqual([
      "localhost", new X509Certificate(newCaPem).subject.split("\n")[0]!.slice(3), new X509Certificate(oldCaPem).subject.split("\n")[0]!.slice(3),
    ]);
    expect((await peerChain(tc.c.port, newCaPem)).authorized).toBe(true);
    const oldOnly = t.track(new WireClient(tc.url, oldCaPem, { certPem: e1.certPem, keyPem: e1.keyPem }));
    const hbOld = await heartbeat(e1, 2, oldOnly);
    expect(hbOld.status, hbOld.text).toBe(200);

    // Told to renew within one heartbeat interval plus a fixed jitter, the same on every heartbeat.
    const renewAfter = Date.parse(hbOld.json.cert_renew_after);
    expect(renewAfter).toBeGreaterThanOrEqual(Math.floor(activatedAt / 1000) * 1000 - 1000 + 2000);
    expect(renewAfter).toBeLessThanOrEqual(Date.now() + 2 * 2000);
    expect(Date.parse((await heartbeat(e1, 2, oldOnly)).json.cert_renew_after)).toBe(renewAfter);

    // Renewal moves it to the new CA; the hint is then the usual 2/3 of the lifetime.
    const renewed = await renewWithCsr(e1, oldCaPem);
    expect(renewed.json.trust_bundle_version).toBe(2);
    expect(renewed.json.ca_bundle_pem).toBe(b2.text);
    expect(new X509Certificate(e1.certPem).checkIssued(new X509Certificate(newCaPem))).toBe(true);
    const after = await heartbeat(e1, 2);
    expect(after.status, after.text).toBe(200);
    expect(Date.parse(after.json.cert_renew_after)).toBeGreaterThan(Date.now() + 3600_000);

    const events = auditEvents(tc).map((e) => e.event);
    for (const name of ["ca.created", "ca.prepared", "ca.activation_refused", "ca.activated", "ca.retired", "server_cert.reissued"]) expect(events, name).toContain(name);
    expect(auditEvents(tc).find((e) => e.event === "ca.activation_refused")).toMatchObject({ pending: [e2.id], source: "127.0.0.1" });
  });

  it("force activates past the gate, audited with who was pending; nothing to activate is 409 CONFLICT; a viewer may look but not act; a bad body is 400", async () => {
    const { tc, op, viewer } = await controller();
    const e = await enroll(tc);
    await heartbeat(e, 1);
    const none = await op("POST", "/api/v1/ca/activate", { force: true });
    expect([none.status, none.json.error.code]).toEqual([409, "CONFLICT"]);
    expect((await op("POST", "/api/v1/ca/rotate", {}, viewer)).json.error.code).toBe("FORBIDDEN");
    expect((await op("POST", "/api/v1/ca/rotate", {}, viewer)).status).toBe(403);
    expect((await op("POST", "/api/v1/ca/rotate", {}, "")).status).toBe(401);
    expect((await op("GET", "/api/v1/ca", undefined, viewer)).status).toBe(200);
    expect((await op("POST", "/api/v1/ca/rotate")).status).toBe(201);
    const bad = await op("POST", "/api/v1/ca/activate", { force: "yes" });
    expect([bad.status, bad.json.error.code]).toEqual([400, "INVALID_REQUEST"]);
    expect((await op("POST", "/api/v1/ca/activate", { force: false })).json.error).toMatchObject({ code: "ADOPTION_INCOMPLETE", pending: [e.id] });
    const forced = await op("POST", "/api/v1/ca/activate", { force: true });
    expect(forced.status, forced.text).toBe(200);
    expect(forced.json).toMatchObject({ state: "active", pending: [e.id] });
    expect(auditEvents(tc).findLast((x) => x.event === "ca.activated")).toMatchObject({ forced: true, pending: [e.id] });
    // The executor that had not adopted still works: through the cross certificate, then it adopts.
    const oldOnly = t.track(new WireClient(tc.url, tc.caPem, { certPem: e.certPem, keyPem: e.keyPem }));
    const hb = await heartbeat(e, 1, oldOnly);
    expect([hb.status, hb.json.trust_bundle_version]).toEqual([200, 2]);
  });
});

describe("a retired CA leaves the bundle", () => {
  it("once the last certificate it issued (executor or server) has expired: version + 1, ca.pem rewritten, audited", async () => {
    const { tc, op, anon } = await controller({ certTtlSeconds: 4, serverCertTtlSeconds: 3, serverCertCheckMs: 250, caTtlSeconds: 240 });
    const e = await enroll(tc);
    await heartbeat(e, 1);
    const oldCa = tc.c.ctx.cas.active().ca;
    await op("POST", "/api/v1/ca/rotate");
    await heartbeat(e, 2);
    expect((await op("POST", "/api/v1/ca/activate")).status).toBe(200);
    const retired = tc.c.ctx.cas.records().find((r) => r.state === "retired");
    expect(retired?.lastIssuedNotAfter).toBeGreaterThan(Date.now() - 1000);
    expect((await op("GET", "/api/v1/ca")).json.cas.map((c: { state: string }) => c.state)).toEqual(["retired", "active"]);
    // The schedule's check (every 2 s for a 240 s CA lifetime) removes it after its last certificate's notAfter.
    const version = await eventually(async () => {
      const r = await anon.send("GET", "/v1/ca/bundle.pem");
      return r.headers["x-tether-bundle-version"] === "3" ? r : undefined;
    }, "the retired CA to leave the bundle", 10_000);
    expect(Date.now()).toBeGreaterThanOrEqual(retired!.lastIssuedNotAfter);
    expect(parseBundle(version.text)).toHaveLength(1);
    expect(readFileSync(join(tc.dataDir, "ca.pem"), "utf8")).toBe(version.text);
    expect((await op("GET", "/api/v1/ca")).json.cas.map((c: { state: string }) => c.state)).toEqual(["active"]);
    expect(auditEvents(tc).find((x) => x.event === "ca.removed")).toMatchObject({ ca_id: retired!.id, via: "schedule" });
    // Trust is exactly the bundle: a certificate the removed CA signs now is refused at the first guard.
    const { keyPem, keys } = await newKeyAndCsr("P-256");
    const late = await issueExecutorCert(oldCa, { executorId: e.id, trustDomain: "tether.local", publicKey: keys.publicKey, ttlSeconds: 600 });
    const refused = await heartbeat(e, 3, t.track(new WireClient(tc.url, version.text, { certPem: late.pem, keyPem })));
    expect([refused.status, refused.json.error.code]).toEqual([401, "CERT_REQUIRED"]);
  }, 20_000);
});

describe("the schedule (--ca-ttl)", () => {
  it("prepares at ½, holds a gated activation at ⅙ (audited once), activates once adopted; forces at 1/12", async () => {
    // Offline after 6 × 30 s: the executor stays live through the simulated minute and a half.
    const { tc } = await controller({ caTtlSeconds: 60, heartbeatIntervalSeconds: 30 });
    const cas = tc.c.ctx.cas;
    const e = await enroll(tc);
    await heartbeat(e, 1);
    const first = cas.records()[0]!;
    const at = (fraction: number) => first.notAfter - fraction * 60_000;

    await cas.tick(at(0.51));
    expect(cas.version()).toBe(1);
    await cas.tick(at(0.5));
    expect(cas.records().map((r) => r.state)).toEqual(["active", "prepared"]);
    expect(cas.version()).toBe(2);
    await cas.tick(at(0.2));
    expect(cas.records().map((r) => r.state)).toEqual(["active", "prepared"]);
    await cas.tick(at(1 / 6));
    await cas.tick(at(1 / 6) + 1);
    expect(cas.records().map((r) => r.state)).toEqual(["active", "prepared"]);
    expect(auditEvents(tc).filter((x) => x.event === "ca.activation_blocked")).toEqual([expect.objectContaining({ pending: [e.id], via: "schedule" })]);
    await heartbeat(e, 2);
    await cas.tick(at(1 / 6) + 2);
    expect(cas.records().map((r) => r.state)).toEqual(["retired", "active"]);
    expect(auditEvents(tc).findLast((x) => x.event === "ca.activated")).toMatchObject({ via: "schedule", forced: false });
    // The server certificate followed.
    expect(new X509Certificate(tc.c.serverCredentials().certPem).checkIssued(new X509Certificate(cas.records()[1]!.certPem))).toBe(true);

    // The next CA: prepared at ½ of its own life left (the first, drained by then, leaves), forced at 1/12
    // although the executor never adopted it.
    const second = cas.records()[1]!;
    await cas.tick(second.notAfter - 30_000);
    expect(cas.records().map((r) => [r.id === second.id ? "second" : r.id === first.id ? "first" : "third", r.state])).toEqual([["second", "active"], ["third", "prepared"]]);
    await cas.tick(second.notAfter - 5000);
    expect(cas.records().map((r) => r.state)).toEqual(["retired", "active"]);
    expect(auditEvents(tc).findLast((x) => x.event === "ca.activated")).toMatchObject({ via: "schedule", forced: true, pending: [e.id] });
  });
});
