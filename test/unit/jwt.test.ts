/** Unit tests of the JWT minting and verification code (the one place tokens are made in-process). */
import { describe, expect, it } from "vitest";
import { generateKeyPairSync, createPublicKey } from "node:crypto";
import { jwtVerify, createLocalJWKSet, exportJWK, calculateJwkThumbprint } from "jose";
import { ExecutorJwt } from "../../controller/domain/jwt.ts";
import { singleKey } from "../../controller/domain/trust/jwt-ring.ts";
import type { CertThumbprint } from "../../shared/fingerprint.ts";

/** Thumbprints are opaque to the JWT code; short stand-ins keep the tests readable. */
const FP = "fp" as CertThumbprint;
const OTHER = "other" as CertThumbprint;
const NOPE = "nope" as CertThumbprint;

async function keys() {
  const { privateKey, publicKey } = generateKeyPairSync("ed25519");
  const jwk = await exportJWK(publicKey);
  const kid = await calculateJwkThumbprint(jwk);
  return { kid, privateKey, publicKey, jwk: { ...jwk, kid, alg: "EdDSA" } };
}

describe("ExecutorJwt", () => {
  it("mints tokens an independent implementation (jose) verifies, with every PROTOCOL claim", async () => {
    const k = await keys();
    const j = new ExecutorJwt(singleKey(k), "tether.local", 900);
    const { jwt } = j.mint("ex_a", 3, FP);
    const { payload, protectedHeader } = await jwtVerify(jwt, createLocalJWKSet({ keys: [k.jwk] }), {
      issuer: "spiffe://tether.local/controller",
      audience: "tether-controller",
      subject: "ex_a",
    });
    expect(protectedHeader).toMatchObject({ alg: "EdDSA", kid: k.kid });
    expect(payload).toMatchObject({ epoch: 3, cnf: { "x5t#S256": "fp" } });
    expect(payload.exp! - payload.iat!).toBe(900);
    expect(payload.jti).toMatch(/^[A-Za-z0-9_-]{20,}$/);
  });

  it("verifies its own tokens and reports each failure", async () => {
    const k = await keys();
    const j = new ExecutorJwt(singleKey(k), "tether.local", 60);
    const now = Date.now();
    const { jwt } = j.mint("ex_a", 1, FP, now);
    expect(j.verify(jwt, { sub: "ex_a", thumbprint: FP }, now).ok).toBe(true);
    expect(j.verify(jwt, { sub: "ex_b", thumbprint: FP }, now)).toMatchObject({ ok: false, code: "TOKEN_INVALID" });
    expect(j.verify(jwt, { sub: "ex_a", thumbprint: OTHER }, now)).toMatchObject({ ok: false, code: "TOKEN_INVALID" });
    expect(j.verify(jwt, { sub: "ex_a", thumbprint: FP }, now + 61_000)).toMatchObject({ ok: false, code: "TOKEN_EXPIRED" });
    const other = new ExecutorJwt(singleKey(await keys()), "tether.local", 60);
    expect(other.verify(jwt, { sub: "ex_a", thumbprint: FP }, now)).toMatchObject({ ok: false, code: "TOKEN_INVALID" });
    const wrongDomain = new ExecutorJwt(singleKey(k), "other.domain", 60);
    expect(wrongDomain.verify(jwt, { sub: "ex_a", thumbprint: FP }, now)).toMatchObject({ ok: false, code: "TOKEN_INVALID", reason: "wrong iss" });
  });

  it("refuses alg none, other algs, edited payloads and garbage", async () => {
    const k = await keys();
    const j = new ExecutorJwt(singleKey(k), "tether.local", 60);
    const { jwt } = j.mint("ex_a", 1, FP);
    const [h, p, s] = jwt.split(".");
    const enc = (v: unknown) => Buffer.from(JSON.stringify(v)).toString("base64url");
    const claims = JSON.parse(Buffer.from(p!, "base64url").toString());
    for (const bad of [
      `${enc({ alg: "none", kid: k.kid })}.${p}.`,
      `${enc({ alg: "HS256", kid: k.kid })}.${p}.${s}`,
      `${h}.${enc({ ...claims, epoch: 2 })}.${s}`,
      `${enc({ alg: "EdDSA", kid: "other" })}.${p}.${s}`,
      `${enc({ alg: "EdDSA", kid: k.kid, crit: ["x"] })}.${p}.${s}`,
      "a.b.c", "abc", "", `${h}.${p}`, `${h}.${p}.${s}.x`,
    ]) {
      expect(j.verify(bad, { sub: "ex_a", thumbprint: FP })).toMatchObject({ ok: false, code: "TOKEN_INVALID" });
    }
  });

  it("caches a verified token and never caches a failed one", async () => {
    const k = await keys();
    const j = new ExecutorJwt(singleKey(k), "tether.local", 60);
    const { jwt } = j.mint("ex_a", 1, FP);
    // Change one signature character for certain: a fixed "AA" ending equals the real one about once in 256 runs.
    const tampered = jwt.slice(0, -2) + (jwt.at(-2) === "A" ? "B" : "A") + jwt.at(-1);
    expect(j.verify(tampered, { sub: "ex_a", thumbprint: FP }).ok).toBe(false);
    expect(j.cacheSize).toBe(0);
    j.verify(jwt, { sub: "ex_a", thumbprint: FP });
    expect(j.cacheSize).toBe(1);
    // a cached token still has its binding and expiry checked on every use
    expect(j.verify(jwt, { sub: "ex_a", thumbprint: NOPE }).ok).toBe(false);
    expect(j.verify(jwt, { sub: "ex_a", thumbprint: FP }, Date.now() + 120_000)).toMatchObject({ code: "TOKEN_EXPIRED" });
    expect(j.cacheSize).toBe(0);
  });

  it("bounds its cache", async () => {
    const k = await keys();
    const j = new ExecutorJwt(singleKey(k), "tether.local", 60, { maxCache: 10 });
    for (let i = 0; i < 25; i++) j.verify(j.mint(`ex_${i}`, 1, FP).jwt, { sub: `ex_${i}`, thumbprint: FP });
    expect(j.cacheSize).toBeLessThanOrEqual(10);
    expect(createPublicKey(k.privateKey).equals(k.publicKey)).toBe(true);
  });
});
