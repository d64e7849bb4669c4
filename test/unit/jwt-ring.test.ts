/**
 * The JWT key ring (PROTOCOL §7.3) over a real SQLite store: prepublished next key,
 * rotation gated on it, retired keys verifying until their tokens expired, the schedule,
 * a rotation made by another process, and the import of an earlier version's jwt.key.
 */
import { describe, expect, it } from "vitest";
import { existsSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { ExecutorJwt } from "../../controller/domain/jwt.ts";
import { JwtKeyRing } from "../../controller/domain/trust/jwt-ring.ts";
import { MemoryAudit } from "../../controller/domain/audit.ts";
import { openStore, type StoreHandle } from "../../controller/store/open-store.ts";
import { newJwtKey } from "../../certs/jwt-key.ts";
import { TetherError } from "../../shared/errors.ts";
import type { CertThumbprint } from "../../shared/fingerprint.ts";
import { tempDir } from "../support/temp-dir.ts";

const TTL_S = 60; // JWT lifetime
const KEY_TTL_S = 3600; // --jwt-key-ttl
const T0 = Date.UTC(2026, 10, 30, 12);
const FP = "fp".padEnd(43, "A") as CertThumbprint;

async function fixture(dataDir = join(tempDir(), "data")): Promise<{ h: StoreHandle; ring: JwtKeyRing; audit: MemoryAudit; dataDir: string }> {
  const h = await openStore({ dataDir, create: true });
  const audit = new MemoryAudit();
  const ring = await JwtKeyRing.open(h.jwtKeys, dataDir, { jwtTtlSeconds: TTL_S, keyTtlSeconds: KEY_TTL_S }, audit, T0);
  return { h, ring, audit, dataDir };
}

const states = (ring: JwtKeyRing) => ring.views().map((v) => v.state);

describe("JWT key ring", () => {
  it("starts with an active key that signs and a next key that is published but verifies nothing", async () => {
    const { h, ring } = await fixture();
    expect(states(ring)).toEqual(["active", "next"]);
    const [active, next] = ring.views();
    expect(ring.signing().kid).toBe(active!.kid);
    expect(ring.jwks().map((k) => k.kid)).toEqual([active!.kid, next!.kid]);
    expect(ring.verifying(active!.kid)).toBeDefined();
    expect(ring.verifying(next!.kid)).toBeUndefined();
    expect(ring.verifying("nope")).toBeUndefined();
    await h.close();
  });

  it("refuses to rotate until the next key has been published for one JWT lifetime (409, Retry-After), then rotates", async () => {
    const { h, ring, audit } = await fixture();
    const [first, next] = ring.views();
    const early = await ring.rotate({ via: "test" }, T0 + 10_000).catch((e: unknown) => e);
    expect(early).toBeInstanceOf(TetherError);
    expect(early).toMatchObject({ status: 409, code: "CONFLICT", headers: { "retry-after": "50" } });
    expect(ring.signing().kid).toBe(first!.kid);
    const after = await ring.rotate({ via: "test" }, T0 + TTL_S * 1000);
    expect(after.map((v) => [v.kid, v.state])).toEqual([[first!.kid, "retired"], [next!.kid, "active"], [after[2]!.kid, "next"]]);
    expect(ring.signing().kid).toBe(next!.kid);
    // The retired key still verifies (its tokens may be live) and is still published.
    expect(ring.verifying(first!.kid)).toBeDefined();
    expect(ring.jwks().map((k) => k.kid)).toContain(first!.kid);
    expect(audit.events.map((e) => e.event)).toContain("jwt_key.rotated");
    await h.close();
  });

  it("a token signed before a rotation verifies after it, until its key leaves the ring — also from the verified-token cache", async () => {
    const { h, ring } = await fixture();
    const jwt = new ExecutorJwt(ring, "tether.local", TTL_S);
    const now = Date.now();
    const old = jwt.mint("ex_a", 1, FP, now);
    expect(jwt.verify(old.jwt, { sub: "ex_a", thumbprint: FP }, now).ok).toBe(true); // now cached
    await ring.rotate({ via: "test" }, T0 + TTL_S * 1000);
    expect(jwt.verify(old.jwt, { sub: "ex_a", thumbprint: FP }, now).ok).toBe(true);
    const fresh = jwt.mint("ex_a", 1, FP, now);
    expect(JSON.parse(Buffer.from(fresh.jwt.split(".")[0]!, "base64url").toString()).kid).toBe(ring.signing().kid);
    expect(jwt.verify(fresh.jwt, { sub: "ex_a", thumbprint: FP }, now).ok).toBe(true);
    // One JWT lifetime (and the slack) after the retirement the key is gone, and so is its token.
    await ring.tick(T0 + TTL_S * 1000 + TTL_S * 1000 + 61_000);
    expect(states(ring)).toEqual(["active", "next"]);
    expect(jwt.verify(old.jwt, { sub: "ex_a", thumbprint: FP }, now)).toMatchObject({ ok: false, code: "TOKEN_INVALID", reason: "unknown kid" });
    await h.close();
  });

  it("the schedule rotates once the active key has signed for --jwt-key-ttl", async () => {
    const { h, ring } = await fixture();
    const first = ring.signing().kid;
    await ring.tick(T0 + KEY_TTL_S * 1000 - 1);
    expect(ring.signing().kid).toBe(first);
    await ring.tick(T0 + KEY_TTL_S * 1000);
    expect(ring.signing().kid).not.toBe(first);
    expect(states(ring)).toEqual(["retired", "active", "next"]);
    await h.close();
  });

  it("a rotation made by another process (the CLI on the data dir) is picked up at the next tick", async () => {
    const a = await fixture();
    const b = await fixture(a.dataDir);
    expect(b.ring.signing().kid).toBe(a.ring.signing().kid);
    await b.ring.rotate({ via: "cli" }, T0 + TTL_S * 1000);
    expect(a.ring.signing().kid).not.toBe(b.ring.signing().kid);
    await a.ring.tick(T0 + TTL_S * 1000 + 1);
    expect(a.ring.signing().kid).toBe(b.ring.signing().kid);
    await a.h.close();
    await b.h.close();
  });

  it("imports the jwt.key an earlier version left as the active key, then removes the file", async () => {
    const dataDir = join(tempDir(), "data");
    const legacy = newJwtKey();
    const { mkdirSync } = await import("node:fs");
    mkdirSync(dataDir, { recursive: true, mode: 0o700 });
    writeFileSync(join(dataDir, "jwt.key"), legacy.privateKey.export({ type: "pkcs8", format: "pem" }), { mode: 0o600 });
    const { h, ring, audit } = await fixture(dataDir);
    expect(ring.signing().kid).toBe(legacy.kid);
    expect(existsSync(join(dataDir, "jwt.key"))).toBe(false);
    expect(audit.events.find((e) => e.event === "jwt_key.imported")).toMatchObject({ kid: legacy.kid });
    await h.close();
  });

  it("processes racing to bootstrap an empty store end with one active key and one next key", async () => {
    const dataDir = join(tempDir(), "data");
    const opened = await Promise.all([fixture(dataDir), fixture(dataDir), fixture(dataDir)]);
    for (const o of opened) await o.ring.tick(T0);
    const views = opened.map((o) => o.ring.views().map((v) => `${v.kid}:${v.state}`).join(","));
    expect(new Set(views).size).toBe(1);
    expect(states(opened[0]!.ring)).toEqual(["active", "next"]);
    for (const o of opened) await o.h.close();
  });
});
