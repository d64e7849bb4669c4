/** Operator API tokens and the role → capability table, over a real SQLite file. */
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { appendFileSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tempDir } from "../support/temp-dir.ts";
import { join } from "node:path";
import { SqliteStore } from "../../controller/store/sqlite/sqlite-store.ts";
import { KeyEncryptor } from "../../controller/store/key-encryption.ts";
import { MemoryAudit } from "../../controller/domain/audit.ts";
import { ApiTokens, hashApiToken } from "../../controller/domain/api-tokens.ts";
import { ROLE_CAPABILITIES, capabilitiesOf, isCapability, roleHas } from "../../controller/domain/capabilities.ts";
import { CAPABILITIES, ROLES } from "../../shared/wire/operator.ts";
import { readAuditEvents } from "../../controller/domain/audit-reader.ts";
import { sha256Hex } from "../../shared/random.ts";

describe("role → capability table", () => {
  it("admin holds every capability", () => {
    expect(capabilitiesOf("admin")).toEqual([...CAPABILITIES]);
  });
  it("operator: tasks, drain, enrollment tokens and the reads — not revoke, API tokens or audit", () => {
    for (const c of ["tasks:read", "tasks:write", "executors:read", "executors:drain", "enrollment_tokens:read", "enrollment_tokens:write", "self:read"] as const) {
      expect(roleHas("operator", c), c).toBe(true);
    }
    for (const c of ["executors:revoke", "api_tokens:read", "api_tokens:write", "audit:read", "trust:write"] as const) expect(roleHas("operator", c), c).toBe(false);
  });
  it("viewer only reads", () => {
    expect(capabilitiesOf("viewer").sort()).toEqual(["enrollment_tokens:read", "events:read", "executors:read", "self:read", "tasks:read", "trust:read"]);
    for (const c of capabilitiesOf("viewer")) expect(c.endsWith(":read")).toBe(true);
  });
  it("every role is in the table and every capability is known", () => {
    expect(Object.keys(ROLE_CAPABILITIES).sort()).toEqual([...ROLES].sort());
    expect(isCapability("tasks:write")).toBe(true);
    expect(isCapability("tasks:delete")).toBe(false);
    expect(isCapability(undefined)).toBe(false);
  });
});

describe("API tokens", () => {
  let dir: string;
  let store: SqliteStore;
  let audit: MemoryAudit;
  let tokens: ApiTokens;
  const who = { via: "test" };

  beforeEach(() => {
    dir = tempDir("tether-pat-");
    store = new SqliteStore(join(dir, "tether.db"), new KeyEncryptor(Buffer.alloc(32, 7)));
    audit = new MemoryAudit();
    tokens = new ApiTokens(store, audit);
  });
  afterEach(async () => {
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it("mints tet_pat_ + 256 random bits, stores only the SHA-256, and the database files never hold the secret", async () => {
    const a = await tokens.create({ name: "ci", role: "operator", ttlSeconds: 3600 }, "cli:test", who);
    const b = await tokens.create({ name: "ci", role: "operator" }, "cli:test", who);
    expect(a.token).toMatch(/^tet_pat_[A-Za-z0-9_-]{43}$/);
    expect(Buffer.from(a.token.slice(8), "base64url")).toHaveLength(32);
    expect(a.token).not.toBe(b.token);
    expect(a.expires_at).toMatch(/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$/);
    expect(b.expires_at).toBeNull();
    const rec = await store.getApiToken(a.id);
    expect(rec!.tokenHash).toBe(sha256Hex(a.token));
    expect(rec!.createdBy).toBe("cli:test");
    const listed = JSON.stringify(await tokens.list());
    expect(listed).not.toContain(a.token);
    expect(listed).not.toContain(rec!.tokenHash);
    expect(JSON.stringify(audit.events)).not.toContain(a.token);
    for (const f of readdirSync(dir)) {
      const bytes = readFileSync(join(dir, f));
      expect(bytes.includes(a.token), f).toBe(false);
      expect(bytes.includes(a.token.slice(8)), f).toBe(false);
    }
  });

  it("authenticates a good token and records last use", async () => {
    const a = await tokens.create({ name: "ops", role: "viewer" }, "cli:test", who);
    const r = await tokens.authenticate(a.token, "10.0.0.1");
    expect(r).toEqual({ ok: true, principal: { tokenId: a.id, name: "ops", role: "viewer", expiresAt: null } });
    const [view] = await tokens.list();
    expect(view).toMatchObject({ id: a.id, state: "active", last_used_ip: "10.0.0.1" });
    expect(view!.last_used_at).not.toBeNull();
  });

  it("refuses missing, malformed, foreign, unknown, expired and revoked tokens, with the reason", async () => {
    const a = await tokens.create({ name: "short", role: "admin", ttlSeconds: 60 }, "cli:test", who);
    const b = await tokens.create({ name: "gone", role: "admin" }, "cli:test", who);
    expect(await tokens.revoke(b.id, who)).toBe(true);
    expect(await tokens.revoke(b.id, who)).toBe(false);
    expect(await tokens.revoke("tok_nope", who)).toBe(false);
    const unknown = "tet_pat_" + "A".repeat(43);
    const cases: [string | undefined, string, number?][] = [
      [undefined, "missing"],
      ["", "missing"],
      ["garbage", "malformed"],
      [a.token + "x", "malformed"],
      ["tet_enr_" + "A".repeat(43), "enrollment_token"],
      ["eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiJ4In0.c2ln", "executor_jwt"],
      [unknown, "unknown"],
      [b.token, "revoked"],
      [a.token, "expired", Date.now() + 61_000],
    ];
    for (const [presented, reason, now] of cases) {
      const r = await tokens.authenticate(presented, "10.0.0.1", now);
      expect(r.ok, String(presented)).toBe(false);
      if (!r.ok) expect(r.reason, String(presented)).toBe(reason);
    }
    expect(hashApiToken("tet_pat_short")).toBeUndefined();
  });

  it("audits the first use and each use from an address other than the last one", async () => {
    const a = await tokens.create({ name: "laptop", role: "viewer" }, "cli:test", who);
    await tokens.authenticate(a.token, "10.0.0.1");
    await tokens.authenticate(a.token, "10.0.0.1");
    await tokens.authenticate(a.token, "10.0.0.2");
    await tokens.authenticate(a.token, "10.0.0.2");
    const moves = audit.events.filter((e) => e.event === "api_token.new_address");
    expect(moves).toHaveLength(2);
    expect(moves[0]).toMatchObject({ token_id: a.id, source: "10.0.0.1", previous_source: null, first_use: true });
    expect(moves[1]).toMatchObject({ token_id: a.id, source: "10.0.0.2", previous_source: "10.0.0.1", first_use: false });
    expect(moves[1]!.actor).toEqual({ type: "api_token", id: a.id, name: "laptop", role: "viewer" });
  });

  it("bootstrap makes one admin token and refuses while an active admin exists", async () => {
    const first = await tokens.bootstrap({}, "cli:test", who);
    expect(first).toMatchObject({ role: "admin", name: "bootstrap-admin" });
    expect(await tokens.bootstrap({}, "cli:test", who)).toBeUndefined();
    // A non-admin token does not count; a revoked admin does not either.
    expect((await tokens.list()).filter((t) => t.role === "admin")).toHaveLength(1);
    await tokens.revoke(first!.id, who);
    const second = await tokens.bootstrap({ name: "recovery", ttlSeconds: 600 }, "cli:test", who);
    expect(second).toMatchObject({ role: "admin", name: "recovery" });
    expect(audit.events.map((e) => e.event)).toEqual(["api_token.bootstrapped", "api_token.bootstrap_refused", "api_token.revoked", "api_token.bootstrapped"]);
  });

  it("bootstrap is atomic: racing bootstraps on one database make exactly one token", async () => {
    const other = new SqliteStore(join(dir, "tether.db"), new KeyEncryptor(Buffer.alloc(32, 7)));
    const t2 = new ApiTokens(other, new MemoryAudit());
    const results = await Promise.all([tokens.bootstrap({}, "a", who), t2.bootstrap({}, "b", who), tokens.bootstrap({}, "c", who)]);
    await other.close();
    expect(results.filter(Boolean)).toHaveLength(1);
  });

  it("validates name, role and ttl", async () => {
    await expect(tokens.create({ name: "", role: "admin" }, "x", who)).rejects.toMatchObject({ status: 400 });
    await expect(tokens.create({ name: "a\nb", role: "admin" }, "x", who)).rejects.toMatchObject({ status: 400 });
    await expect(tokens.create({ name: "x".repeat(65), role: "admin" }, "x", who)).rejects.toMatchObject({ status: 400 });
    await expect(tokens.create({ name: "n", role: "root" }, "x", who)).rejects.toMatchObject({ status: 400 });
    await expect(tokens.create({ name: "n", role: "viewer", ttlSeconds: 0 }, "x", who)).rejects.toMatchObject({ status: 400 });
    await expect(tokens.create({ name: "n", role: "viewer", ttlSeconds: 1.5 }, "x", who)).rejects.toMatchObject({ status: 400 });
    expect(await tokens.list()).toEqual([]);
  });

  it("the role column refuses anything outside the table", () => {
    expect(() =>
      store.db.prepare(`INSERT INTO api_tokens (id, name, role, token_hash, created_at, created_by) VALUES ('x', 'x', 'root', 'h', 0, 'x')`).run(),
    ).toThrow(/CHECK/);
  });
});

describe("audit reader", () => {
  let dir: string;
  beforeEach(() => {
    dir = tempDir("tether-audit-");
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  const line = (t: number, i: number, extra = "") => JSON.stringify({ time: new Date(t).toISOString(), event: `e${i}`, pad: extra }) + "\n";

  it("returns the newest `limit` events at or after `since`, newest last, across chunk boundaries", async () => {
    const t0 = Date.parse("2026-01-01T00:00:00Z");
    let text = "";
    for (let i = 0; i < 3000; i++) text += line(t0 + i * 1000, i, "é".repeat(i % 50)); // multi-byte chars straddle chunks
    writeFileSync(join(dir, "audit.log"), text);
    const last = await readAuditEvents(dir, { limit: 5 });
    expect(last.map((e) => e.event)).toEqual(["e2995", "e2996", "e2997", "e2998", "e2999"]);
    const since = await readAuditEvents(dir, { since: t0 + 2990 * 1000, limit: 1000 });
    expect(since.map((e) => e.event)).toEqual(Array.from({ length: 10 }, (_, k) => `e${2990 + k}`));
    const all = await readAuditEvents(dir, { limit: 1000 });
    expect(all).toHaveLength(1000);
    expect(all[0]!.event).toBe("e2000");
    const fromStart = await readAuditEvents(dir, { since: t0, limit: 1000 });
    expect(fromStart.at(-1)!.event).toBe("e2999");
  });

  it("skips torn and foreign lines, and a missing log is empty", async () => {
    expect(await readAuditEvents(dir, {})).toEqual([]);
    const t0 = Date.parse("2026-01-01T00:00:00Z");
    writeFileSync(join(dir, "audit.log"), line(t0, 1) + "not json\n" + line(t0 + 1, 2));
    appendFileSync(join(dir, "audit.log"), '{"time": "2026-01-01T00:00:0');
    expect((await readAuditEvents(dir, {})).map((e) => e.event)).toEqual(["e1", "e2"]);
  });
});
