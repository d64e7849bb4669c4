/**
 * Rotating the keys an executor request is checked with, over real TLS (PROTOCOL §7.3,
 * §7.4): the HMAC key changes with every new certificate and every re-registration, the
 * previous one staying accepted for the grace window; the JWT key ring rotates through
 * its prepublished next key, by API and by the CLI on the data dir, without a token in
 * flight failing.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { tether } from "../support/process.ts";
import { startTestController, type TestController } from "../support/controller.ts";
import { executorCall, HEARTBEAT, newKeyAndCsr, register, WireClient, type Enrolled } from "../support/wire.ts";

const hb = (id: string) => `/v1/executors/${id}/heartbeat`;
const code = (r: { json: any }) => r.json?.error?.code;
const kidOf = (jwt: string) => JSON.parse(Buffer.from(jwt.split(".")[0]!, "base64url").toString()).kid as string;
const JWT_TTL_S = 2;

let tc: TestController;
let admin: string;

beforeAll(async () => {
  tc = await startTestController({ jwtTtlSeconds: JWT_TTL_S });
  admin = (await tc.c.ctx.apiTokens.create({ name: "rotation-admin", role: "admin" }, "test", { via: "test" })).token;
});
afterAll(async () => {
  await tc?.close();
});

async function api(method: string, path: string, token = admin) {
  const c = new WireClient(tc.url, tc.caPem);
  try {
    return await c.send(method, path, { body: method === "POST" ? "{}" : undefined, headers: { authorization: `Bearer ${token}` } });
  } finally {
    await c.close();
  }
}

describe("HMAC key rotation", () => {
  it("a renew with a CSR returns a new key; requests signed with either key pass during the grace window", async () => {
    const e = await register(tc.url, tc.caPem, await tc.createToken());
    const plain = await executorCall(e, "POST", `/v1/executors/${e.id}/renew`, {});
    expect(plain.status).toBe(200);
    expect(plain.json.hmac_key).toBeUndefined(); // no new certificate, no new key
    const next = await newKeyAndCsr();
    const r = await executorCall(e, "POST", `/v1/executors/${e.id}/renew`, { csr_pem: next.csrPem });
    expect(r.status).toBe(200);
    const newKey = Buffer.from(r.json.hmac_key, "base64url");
    expect(newKey).toHaveLength(32);
    expect(newKey.equals(e.hmacKey)).toBe(false);
    const moved: Enrolled = {
      ...e, jwt: r.json.jwt, hmacKey: newKey,
      client: new WireClient(tc.url, tc.caPem, { certPem: r.json.certificate_pem, keyPem: next.keyPem }),
    };
    expect((await executorCall(moved, "POST", hb(e.id), HEARTBEAT)).status).toBe(200);
    // A request in flight with the old key (on the new connection) still passes.
    expect((await executorCall({ ...moved, hmacKey: e.hmacKey }, "POST", hb(e.id), HEARTBEAT)).status).toBe(200);
    // Any other key does not.
    const wrong = await executorCall({ ...moved, hmacKey: Buffer.alloc(32, 7) }, "POST", hb(e.id), HEARTBEAT);
    expect([wrong.status, code(wrong)]).toEqual([401, "SIGNATURE_INVALID"]);
    await moved.client.close();
    await e.client.close();
  });

  it("every re-registration returns a new key; a second rotation leaves only the last two keys accepted", async () => {
    const e = await register(tc.url, tc.caPem, await tc.createToken());
    const first = await executorCall(e, "POST", `/v1/executors/${e.id}/reregister`, {});
    expect([first.status, first.json.epoch]).toEqual([200, 2]);
    const k2 = Buffer.from(first.json.hmac_key, "base64url");
    const second = await executorCall({ ...e, hmacKey: k2 }, "POST", `/v1/executors/${e.id}/reregister`, {});
    expect(second.status).toBe(200);
    const k3 = Buffer.from(second.json.hmac_key, "base64url");
    expect(new Set([e.hmacKey.toString("hex"), k2.toString("hex"), k3.toString("hex")]).size).toBe(3);
    const at = (hmacKey: Buffer) => executorCall({ ...e, jwt: second.json.jwt, hmacKey }, "POST", hb(e.id), HEARTBEAT);
    expect((await at(k3)).status).toBe(200);
    expect((await at(k2)).status).toBe(200);
    const stale = await at(e.hmacKey);
    expect([stale.status, code(stale)]).toEqual([401, "SIGNATURE_INVALID"]);
    await e.client.close();
  });
});

describe("JWT key ring", () => {
  it("the JWKS publishes the signing key and the next one; a rotation too early is 409 with Retry-After", async () => {
    const jwks = await api("GET", "/.well-known/jwks.json");
    expect(jwks.json.keys).toHaveLength(2);
    const status = await api("GET", "/api/v1/ca");
    expect(status.json.jwt_keys.map((k: { state: string }) => k.state)).toEqual(["active", "next"]);
    // Right after start the next key is younger than one JWT lifetime only if the start was that recent.
    const soon = await api("POST", "/api/v1/jwt-keys/rotate");
    if (soon.status === 409) {
      expect(code(soon)).toBe("CONFLICT");
      expect(Number(soon.headers["retry-after"])).toBeGreaterThanOrEqual(1);
    } else expect(soon.status).toBe(201);
  });

  it("rotation by API: tokens signed before keep working, new tokens come from the promoted key, the old key stays published", async () => {
    const e = await register(tc.url, tc.caPem, await tc.createToken());
    await new Promise((r) => setTimeout(r, JWT_TTL_S * 1000 + 100)); // the next key has been published for one JWT lifetime
    // A fresh token (the JWT lifetime here is 2 s), signed by the key about to be retired.
    const fresh = await executorCall(e, "POST", `/v1/executors/${e.id}/renew`, {});
    const before = kidOf(fresh.json.jwt);
    const rotated = await api("POST", "/api/v1/jwt-keys/rotate");
    expect(rotated.status).toBe(201);
    const keys = rotated.json.jwt_keys as { kid: string; state: string }[];
    const active = keys.find((k) => k.state === "active")!.kid;
    expect(active).not.toBe(before);
    expect(keys.find((k) => k.kid === before)?.state).toBe("retired");
    expect((await api("GET", "/.well-known/jwks.json")).json.keys.map((k: { kid: string }) => k.kid)).toContain(before);
    // The token minted before the rotation still verifies (its key is retired, not gone).
    expect((await executorCall({ ...e, jwt: fresh.json.jwt }, "POST", hb(e.id), HEARTBEAT)).status).toBe(200);
    const renewed = await executorCall(e, "POST", `/v1/executors/${e.id}/renew`, {});
    expect(kidOf(renewed.json.jwt)).toBe(active);
    expect((await executorCall({ ...e, jwt: renewed.json.jwt }, "POST", hb(e.id), HEARTBEAT)).status).toBe(200);
    // Only admins rotate.
    const viewer = (await tc.c.ctx.apiTokens.create({ name: "v", role: "viewer" }, "test", { via: "test" })).token;
    const refused = await api("POST", "/api/v1/jwt-keys/rotate", viewer);
    expect([refused.status, code(refused)]).toEqual([403, "FORBIDDEN"]);
    await e.client.close();
  });

  it("tether jwt-key rotate on the data dir, while the controller runs: the controller signs with the new key within a second", async () => {
    const e = await register(tc.url, tc.caPem, await tc.createToken());
    await new Promise((r) => setTimeout(r, JWT_TTL_S * 1000 + 100));
    const cli = tether(["jwt-key", "rotate", "--data-dir", tc.dataDir, "--json"]);
    expect(cli.status, cli.stderr).toBe(0);
    const active = (JSON.parse(cli.stdout) as { kid: string; state: string }[]).find((k) => k.state === "active")!.kid;
    expect(cli.stderr).toContain(`JWT key ${active} signs from now on`);
    let kid = "";
    for (let i = 0; i < 30 && kid !== active; i++) {
      await new Promise((r) => setTimeout(r, 100));
      kid = kidOf((await executorCall(e, "POST", `/v1/executors/${e.id}/renew`, {})).json.jwt);
    }
    expect(kid).toBe(active);
    await e.client.close();
  });
});
