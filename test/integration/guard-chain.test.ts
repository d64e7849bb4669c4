/**
 * Every rule of PROTOCOL §3.2 over real TLS: certificates issued through the real
 * /register path, a real SQLite file, and each attack refused with the exact
 * status and code.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { generateKeyPairSync, sign as edSign } from "node:crypto";
import { tether } from "../support/process.ts";
import { startTestController, type TestController } from "../support/controller.ts";
import { executorCall, HEARTBEAT, register, WireClient, type Enrolled } from "../support/wire.ts";
import { CERT_GRACE_MS } from "../../shared/protocol.ts";

const hb = (id: string) => `/v1/executors/${id}/heartbeat`;
const code = (r: { json: any }) => r.json?.error?.code;

let tc: TestController;
let a: Enrolled;
let b: Enrolled;

beforeAll(async () => {
  tc = await startTestController();
  a = await register(tc.url, tc.caPem, await tc.createToken(), { name: "a" });
  b = await register(tc.url, tc.caPem, await tc.createToken(), { name: "b", alg: "P-256" });
});
afterAll(async () => {
  await a?.client.close();
  await b?.client.close();
  await tc?.close();
});

describe("the happy path", () => {
  it("heartbeats with mTLS + JWT + HMAC", async () => {
    const r = await executorCall(a, "POST", hb(a.id), HEARTBEAT);
    expect(r.status).toBe(200);
    expect(r.json).toMatchObject({ next_heartbeat_s: 10, drain: false, cancel_leases: [] });
    expect(Date.parse(r.json.server_time)).toBeGreaterThan(0);
    expect(Date.parse(r.json.jwt_renew_after)).toBeGreaterThan(Date.now());
    expect(Date.parse(r.json.cert_renew_after)).toBeGreaterThan(Date.now());
  });

  it("works for a P-256 executor too", async () => {
    expect((await executorCall(b, "POST", hb(b.id), HEARTBEAT)).status).toBe(200);
  });
});

describe("guard 1: mTLS", () => {
  it("no client certificate → 401 CERT_REQUIRED", async () => {
    const anon = new WireClient(tc.url, tc.caPem);
    const r = await executorCall(a, "POST", hb(a.id), HEARTBEAT, { client: anon });
    await anon.close();
    expect(r.status).toBe(401);
    expect(code(r)).toBe("CERT_REQUIRED");
  });

  it("a look-alike certificate from a foreign CA → 401 CERT_REQUIRED", async () => {
    const other = await startTestController();
    try {
      // Same trust domain, so the foreign certificate carries a SAN of the same shape.
      const foreign = await register(other.url, other.caPem, await other.createToken());
      const forged = new WireClient(tc.url, tc.caPem, { certPem: foreign.certPem, keyPem: foreign.keyPem });
      const r = await executorCall({ ...foreign, client: forged }, "POST", hb(foreign.id), HEARTBEAT);
      await forged.close();
      await foreign.client.close();
      expect(r.status).toBe(401);
      expect(code(r)).toBe("CERT_REQUIRED");
    } finally {
      await other.close();
    }
  });

  it("the certificate of A on B's path → 403 IDENTITY_MISMATCH", async () => {
    const r = await executorCall({ ...b, client: a.client }, "POST", hb(b.id), HEARTBEAT);
    expect(r.status).toBe(403);
    expect(code(r)).toBe("IDENTITY_MISMATCH");
  });

  it("an expired certificate → 401 CERT_REQUIRED", async () => {
    const short = await startTestController({ certTtlSeconds: 1 });
    try {
      const e = await register(short.url, short.caPem, await short.createToken());
      await new Promise((r) => setTimeout(r, 1500));
      const fresh = new WireClient(short.url, short.caPem, { certPem: e.certPem, keyPem: e.keyPem });
      const r = await executorCall({ ...e, client: fresh }, "POST", hb(e.id), HEARTBEAT);
      await fresh.close();
      await e.client.close();
      expect(r.status).toBe(401);
      expect(code(r)).toBe("CERT_REQUIRED");
    } finally {
      await short.close();
    }
  });
});

describe("guard 2: JWT", () => {
  it("missing bearer token → 401 TOKEN_INVALID", async () => {
    const r = await executorCall(a, "POST", hb(a.id), HEARTBEAT, { jwt: null });
    expect([r.status, code(r)]).toEqual([401, "TOKEN_INVALID"]);
  });

  it("the JWT of B over A's connection → 401 TOKEN_INVALID", async () => {
    const r = await executorCall(a, "POST", hb(a.id), HEARTBEAT, { jwt: b.jwt });
    expect([r.status, code(r)]).toEqual([401, "TOKEN_INVALID"]);
  });

  it("a JWT signed by another key → 401 TOKEN_INVALID", async () => {
    const [h, p] = a.jwt.split(".");
    const { privateKey } = generateKeyPairSync("ed25519");
    const forged = `${h}.${p}.${edSign(null, Buffer.from(`${h}.${p}`), privateKey).toString("base64url")}`;
    const r = await executorCall(a, "POST", hb(a.id), HEARTBEAT, { jwt: forged });
    expect([r.status, code(r)]).toEqual([401, "TOKEN_INVALID"]);
  });

  it("an alg: none JWT with the right claims → 401 TOKEN_INVALID", async () => {
    const claims = a.jwt.split(".")[1];
    const header = Buffer.from(JSON.stringify({ alg: "none", typ: "JWT" })).toString("base64url");
    for (const token of [`${header}.${claims}.`, `${header}.${claims}`]) {
      const r = await executorCall(a, "POST", hb(a.id), HEARTBEAT, { jwt: token });
      expect([r.status, code(r)]).toEqual([401, "TOKEN_INVALID"]);
    }
  });

  it("a JWT whose claims were edited (epoch bumped) → 401 TOKEN_INVALID", async () => {
    const [h, p, s] = a.jwt.split(".");
    const claims = JSON.parse(Buffer.from(p!, "base64url").toString());
    const edited = Buffer.from(JSON.stringify({ ...claims, exp: claims.exp + 3600 })).toString("base64url");
    const r = await executorCall(a, "POST", hb(a.id), HEARTBEAT, { jwt: `${h}.${edited}.${s}` });
    expect([r.status, code(r)]).toEqual([401, "TOKEN_INVALID"]);
  });

  it("an operator API token on an executor route → 401 TOKEN_INVALID", async () => {
    const r = await executorCall(a, "POST", hb(a.id), HEARTBEAT, { jwt: "tet_pat_" + "A".repeat(43) });
    expect([r.status, code(r)]).toEqual([401, "TOKEN_INVALID"]);
  });

  it("an expired JWT → 401 TOKEN_EXPIRED, and renew (no JWT needed) recovers", async () => {
    const short = await startTestController({ jwtTtlSeconds: 1 });
    try {
      const e = await register(short.url, short.caPem, await short.createToken());
      await new Promise((r) => setTimeout(r, 2100));
      const r = await executorCall(e, "POST", hb(e.id), HEARTBEAT);
      expect([r.status, code(r)]).toEqual([401, "TOKEN_EXPIRED"]);
      const renewed = await executorCall(e, "POST", `/v1/executors/${e.id}/renew`, {}, { jwt: null });
      expect(renewed.status).toBe(200);
      expect(renewed.json.certificate_pem).toBeUndefined();
      const again = await executorCall({ ...e, jwt: renewed.json.jwt }, "POST", hb(e.id), HEARTBEAT);
      expect(again.status).toBe(200);
      await e.client.close();
    } finally {
      await short.close();
    }
  });

  it("an old-epoch JWT after reregister → 401 EPOCH_MISMATCH", async () => {
    const e = await register(tc.url, tc.caPem, await tc.createToken());
    const rr = await executorCall(e, "POST", `/v1/executors/${e.id}/reregister`, {});
    expect(rr.status).toBe(200);
    expect(rr.json.epoch).toBe(2);
    const stale = await executorCall(e, "POST", hb(e.id), HEARTBEAT);
    expect([stale.status, code(stale)]).toEqual([401, "EPOCH_MISMATCH"]);
    const fresh = await executorCall({ ...e, jwt: rr.json.jwt }, "POST", hb(e.id), HEARTBEAT);
    expect(fresh.status).toBe(200);
    await e.client.close();
  });
});

describe("guard 3: HMAC", () => {
  it("missing signature headers → 401 SIGNATURE_INVALID", async () => {
    const r = await a.client.send("POST", hb(a.id), { body: JSON.stringify(HEARTBEAT), headers: { authorization: `Bearer ${a.jwt}` } });
    expect([r.status, code(r)]).toEqual([401, "SIGNATURE_INVALID"]);
  });

  it("a tampered body → 401 SIGNATURE_INVALID", async () => {
    const r = await executorCall(a, "POST", hb(a.id), { ...HEARTBEAT, running: 1 }, { signAs: { body: JSON.stringify(HEARTBEAT) } });
    expect([r.status, code(r)]).toEqual([401, "SIGNATURE_INVALID"]);
  });

  it("a signature over another path → 401 SIGNATURE_INVALID", async () => {
    const r = await executorCall(a, "POST", hb(a.id), HEARTBEAT, { signAs: { path: `/v1/executors/${a.id}/renew` } });
    expect([r.status, code(r)]).toEqual([401, "SIGNATURE_INVALID"]);
  });

  it("a signature with another executor's key → 401 SIGNATURE_INVALID", async () => {
    const r = await executorCall({ ...a, hmacKey: b.hmacKey }, "POST", hb(a.id), HEARTBEAT);
    expect([r.status, code(r)]).toEqual([401, "SIGNATURE_INVALID"]);
  });

  it("a skewed timestamp → 401 CLOCK_SKEW with server_time", async () => {
    for (const offset of [-301_000, 301_000]) {
      const r = await executorCall(a, "POST", hb(a.id), HEARTBEAT, { timestamp: String(Date.now() + offset) });
      expect([r.status, code(r)]).toEqual([401, "CLOCK_SKEW"]);
      expect(Math.abs(Date.parse(r.json.error.server_time) - Date.now())).toBeLessThan(5000);
    }
  });

  it("a timestamp inside the window is accepted", async () => {
    const r = await executorCall(a, "POST", hb(a.id), HEARTBEAT, { timestamp: String(Date.now() - 240_000) });
    expect(r.status).toBe(200);
  });

  it("a replayed nonce → 409 NONCE_REPLAY", async () => {
    const nonce = "replay-" + Date.now() + "-aaaaaaaa";
    const first = await executorCall(a, "POST", hb(a.id), HEARTBEAT, { nonce });
    expect(first.status).toBe(200);
    const again = await executorCall(a, "POST", hb(a.id), HEARTBEAT, { nonce });
    expect([again.status, code(again)]).toEqual([409, "NONCE_REPLAY"]);
  });

  it("a request rejected for its signature does not consume its nonce", async () => {
    const nonce = "unspent-" + Date.now() + "-aaaaaaa";
    const bad = await executorCall({ ...a, hmacKey: b.hmacKey }, "POST", hb(a.id), HEARTBEAT, { nonce });
    expect([bad.status, code(bad)]).toEqual([401, "SIGNATURE_INVALID"]);
    const good = await executorCall(a, "POST", hb(a.id), HEARTBEAT, { nonce });
    expect(good.status).toBe(200);
  });

  it("a malformed nonce → 401 SIGNATURE_INVALID", async () => {
    const r = await executorCall(a, "POST", hb(a.id), HEARTBEAT, { nonce: "short" });
    expect([r.status, code(r)]).toEqual([401, "SIGNATURE_INVALID"]);
  });
});

describe("bad input after the guards", () => {
  it("malformed JSON → 400 INVALID_REQUEST", async () => {
    const r = await executorCall(a, "POST", hb(a.id), '{"status": "ready",');
    expect([r.status, code(r)]).toEqual([400, "INVALID_REQUEST"]);
  });

  it("wrong types and missing fields → 400 INVALID_REQUEST", async () => {
    for (const body of [{ ...HEARTBEAT, running: "0" }, { status: "ready" }, { ...HEARTBEAT, status: "sleeping" }, []]) {
      const r = await executorCall(a, "POST", hb(a.id), body);
      expect([r.status, code(r)]).toEqual([400, "INVALID_REQUEST"]);
    }
  });

  it("unknown fields are ignored", async () => {
    const r = await executorCall(a, "POST", hb(a.id), { ...HEARTBEAT, future_field: { x: 1 } });
    expect(r.status).toBe(200);
  });

  it("a body over 64 KiB → 413 PAYLOAD_TOO_LARGE", async () => {
    const r = await executorCall(a, "POST", hb(a.id), { ...HEARTBEAT, pad: "x".repeat(70_000) });
    expect([r.status, code(r)]).toEqual([413, "PAYLOAD_TOO_LARGE"]);
  });

  it("malformed JSON from an unauthenticated caller is refused by the guards first", async () => {
    const anon = new WireClient(tc.url, tc.caPem);
    const r = await anon.send("POST", hb(a.id), { body: "{nope" });
    await anon.close();
    expect([r.status, code(r)]).toEqual([401, "CERT_REQUIRED"]);
  });
});

describe("renewal and revocation", () => {
  it("renew with a CSR: the new certificate works, the previous one stays valid for the grace window only", async () => {
    const e = await register(tc.url, tc.caPem, await tc.createToken());
    const { newKeyAndCsr } = await import("../support/wire.ts");
    const next = await newKeyAndCsr("P-256");
    const r = await executorCall(e, "POST", `/v1/executors/${e.id}/renew`, { csr_pem: next.csrPem });
    expect(r.status).toBe(200);
    expect(r.json.certificate_pem).toContain("BEGIN CERTIFICATE");
    const newClient = new WireClient(tc.url, tc.caPem, { certPem: r.json.certificate_pem, keyPem: next.keyPem });
    const onNew = await executorCall({ ...e, jwt: r.json.jwt, client: newClient }, "POST", hb(e.id), HEARTBEAT);
    expect(onNew.status).toBe(200);
    // The new JWT is bound to the new certificate: over the old connection it is refused …
    const boundElsewhere = await executorCall({ ...e, jwt: r.json.jwt }, "POST", hb(e.id), HEARTBEAT);
    expect([boundElsewhere.status, code(boundElsewhere)]).toEqual([401, "TOKEN_INVALID"]);
    // … while the old certificate itself is still accepted inside the grace window (renew works).
    const viaOld = await executorCall(e, "POST", `/v1/executors/${e.id}/renew`, {});
    expect(viaOld.status).toBe(200);
    // … but only for requests that rotate nothing: once the new certificate is in use, the old
    // one may neither get a certificate for another key nor re-register.
    const stolen = await newKeyAndCsr();
    const rotateViaOld = await executorCall(e, "POST", `/v1/executors/${e.id}/renew`, { csr_pem: stolen.csrPem });
    expect([rotateViaOld.status, code(rotateViaOld)]).toEqual([401, "CERT_REQUIRED"]);
    const reregViaOld = await executorCall(e, "POST", `/v1/executors/${e.id}/reregister`, {});
    expect([reregViaOld.status, code(reregViaOld)]).toEqual([401, "CERT_REQUIRED"]);
    expect((await tc.c.ctx.executors.show(e.id)).epoch).toBe(1);
    // A second rotation pushes the first certificate out entirely.
    const third = await newKeyAndCsr();
    const r2 = await executorCall({ ...e, jwt: r.json.jwt, client: newClient }, "POST", `/v1/executors/${e.id}/renew`, { csr_pem: third.csrPem });
    expect(r2.status).toBe(200);
    const gone = await executorCall(e, "POST", `/v1/executors/${e.id}/renew`, {});
    expect([gone.status, code(gone)]).toEqual([401, "CERT_REQUIRED"]);
    expect(CERT_GRACE_MS).toBe(300_000);
    await newClient.close();
    await e.client.close();
  });

  it("a daemon that crashed before receiving its renewed certificate recovers with the previous one (nobody used the new one yet)", async () => {
    const e = await register(tc.url, tc.caPem, await tc.createToken());
    const { newKeyAndCsr } = await import("../support/wire.ts");
    // The controller issues; the answer is lost (the daemon crashed): the new certificate is never used.
    const lost = await executorCall(e, "POST", `/v1/executors/${e.id}/renew`, { csr_pem: (await newKeyAndCsr()).csrPem });
    expect(lost.status).toBe(200);
    // Restarted on its old key and certificate: re-register, then rotate again — both allowed.
    const rereg = await executorCall(e, "POST", `/v1/executors/${e.id}/reregister`, {});
    expect([rereg.status, rereg.json.epoch]).toEqual([200, 2]);
    const next = await newKeyAndCsr();
    // Each of these rotates the HMAC key as well (PROTOCOL §7.4): the daemon signs with the newest one.
    const afterRereg = { ...e, jwt: rereg.json.jwt, hmacKey: Buffer.from(rereg.json.hmac_key, "base64url") };
    const again = await executorCall(afterRereg, "POST", `/v1/executors/${e.id}/renew`, { csr_pem: next.csrPem });
    expect(again.status).toBe(200);
    const c = new WireClient(tc.url, tc.caPem, { certPem: again.json.certificate_pem, keyPem: next.keyPem });
    const moved = { ...e, jwt: again.json.jwt, hmacKey: Buffer.from(again.json.hmac_key, "base64url"), client: c };
    expect((await executorCall(moved, "POST", hb(e.id), HEARTBEAT)).status).toBe(200);
    await c.close();
    await e.client.close();
  });

  it("revocation applies to the very next request on an already-authenticated keep-alive connection", async () => {
    const e = await register(tc.url, tc.caPem, await tc.createToken());
    expect((await executorCall(e, "POST", hb(e.id), HEARTBEAT)).status).toBe(200);
    await tc.c.ctx.executors.revoke(e.id, { via: "test" });
    const r = await executorCall(e, "POST", hb(e.id), HEARTBEAT);
    expect([r.status, code(r)]).toEqual([401, "CERT_REVOKED"]);
    const rr = await executorCall(e, "POST", `/v1/executors/${e.id}/reregister`, {});
    expect([rr.status, code(rr)]).toEqual([401, "CERT_REVOKED"]);
    await e.client.close();
  });

  it("revocation by another process (the CLI on the data dir) applies to the next request", async () => {
    const e = await register(tc.url, tc.caPem, await tc.createToken());
    expect((await executorCall(e, "POST", hb(e.id), HEARTBEAT)).status).toBe(200);
    const cli = tether(["executors", "revoke", e.id, "--data-dir", tc.dataDir]);
    expect(cli.stderr).toContain(`revoked executor ${e.id}`);
    expect(cli.status).toBe(0);
    const r = await executorCall(e, "POST", hb(e.id), HEARTBEAT);
    expect([r.status, code(r)]).toEqual([401, "CERT_REVOKED"]);
    await e.client.close();
  });
});

describe("durability of the replay store", () => {
  it("a request replayed after a controller restart is still refused", async () => {
    const own = await startTestController();
    try {
      const e = await register(own.url, own.caPem, await own.createToken());
      const nonce = "restart-" + Date.now() + "-aaaaaaa";
      const timestamp = String(Date.now());
      const first = await executorCall(e, "POST", hb(e.id), HEARTBEAT, { nonce, timestamp });
      expect(first.status).toBe(200);
      await e.client.close();
      await own.restart();
      e.client = new WireClient(own.c.url, own.caPem, { certPem: e.certPem, keyPem: e.keyPem });
      const replay = await executorCall(e, "POST", hb(e.id), HEARTBEAT, { nonce, timestamp });
      expect([replay.status, code(replay)]).toEqual([409, "NONCE_REPLAY"]);
      // and the executor itself carries on after the restart with its saved credentials
      const fresh = await executorCall(e, "POST", hb(e.id), HEARTBEAT);
      expect(fresh.status).toBe(200);
      await e.client.close();
    } finally {
      await own.close();
    }
  });
});
