import { describe, expect, it } from "vitest";
import { existsSync, readFileSync, statSync, unlinkSync } from "node:fs";
import { tempDir } from "../support/temp-dir.ts";
import { join } from "node:path";
import { FileAudit, auditFileName, redact } from "../../controller/domain/audit.ts";
import { OVERFLOW_EVENT, RejectionAggregator } from "../../controller/domain/audit-aggregate.ts";
import { readAuditEvents } from "../../controller/domain/audit-reader.ts";

type Line = Record<string, unknown> & { event: string; count?: number };
const lines = (dir: string, file = "audit.log"): Line[] =>
  readFileSync(join(dir, file), "utf8").trim().split("\n").filter(Boolean).map((l) => JSON.parse(l));
/** How many rejections the lines stand for: a first line is one, an aggregated line `count`. */
const total = (ls: Line[], event: string) => ls.filter((l) => l.event === event).reduce((n, l) => n + (l.aggregated ? (l.count ?? 0) : 1), 0);

describe("audit", () => {
  it("redacts fields whose names look like secrets, keeps ids", () => {
    const r = redact({ token: "tet_enr_x", token_id: "enr_1", hmac_key: "k", nested: { authorization: "Bearer x", ok: 1 }, source: "1.2.3.4" });
    expect(r).toEqual({ token: "[REDACTED]", token_id: "enr_1", hmac_key: "[REDACTED]", nested: { authorization: "[REDACTED]", ok: 1 }, source: "1.2.3.4" });
  });
  it("redacts inside arrays of objects too", () => {
    expect(redact({ items: [{ jwt: "x", id: 1 }, "plain"] })).toEqual({ items: [{ jwt: "[REDACTED]", id: 1 }, "plain"] });
  });
  it("writes one JSON line per event to a 0600 file", () => {
    const dir = tempDir("audit-");
    const a = new FileAudit(dir, "test");
    a.event("x.happened", { executor_id: "ex_1", jwt: "secret.jwt.value" });
    a.event("y.happened");
    a.close();
    const ls = lines(dir);
    expect(ls.map((l) => l.event)).toEqual(["x.happened", "y.happened"]);
    expect(ls[0]!.jwt).toBe("[REDACTED]");
    expect(statSync(join(dir, "audit.log")).mode & 0o777).toBe(0o600);
  });
  it("never throws when the log cannot be written", () => {
    const errors: unknown[] = [];
    const a = new FileAudit("/nonexistent/dir/for/sure", "test", { onError: (e) => errors.push(e) });
    expect(() => a.event("x")).not.toThrow();
    expect(() => a.rejected("y", { source: "1.2.3.4" })).not.toThrow();
    a.close();
    expect(errors.length).toBe(1);
  });
  it("never aggregates security events: each is its own line", () => {
    const dir = tempDir("audit-");
    const a = new FileAudit(dir, "test");
    for (let i = 0; i < 3; i++) a.event("executor.revoked", { executor_id: "ex_1", source: "1.2.3.4" });
    a.close();
    expect(lines(dir).map((l) => l.event)).toEqual(["executor.revoked", "executor.revoked", "executor.revoked"]);
  });
});

describe("rejection aggregation", () => {
  it("writes the first of a kind at once and its repeats as one line with the count when the window closes", async () => {
    const dir = tempDir("audit-");
    const a = new FileAudit(dir, "controller", { aggregation: { windowMs: 200, maxKinds: 8 } });
    for (let i = 0; i < 10_000; i++) a.rejected("guard.rejected", { source: "10.0.0.1", code: "CERT_REQUIRED", reason: "no certificate" }, { path: "/v1/executors/:id/heartbeat" });
    a.rejected("guard.rejected", { source: "10.0.0.1", code: "CERT_REQUIRED", reason: "untrusted issuer" });
    let ls = lines(dir);
    expect(ls.map((l) => l.reason)).toEqual(["no certificate", "untrusted issuer"]);
    expect(ls[0]).toMatchObject({ source: "10.0.0.1", code: "CERT_REQUIRED", path: "/v1/executors/:id/heartbeat" });
    await new Promise((r) => setTimeout(r, 400)); // the window closes on its own
    ls = lines(dir);
    expect(ls).toHaveLength(3);
    expect(ls[2]).toMatchObject({ event: "guard.rejected", source: "10.0.0.1", reason: "no certificate", aggregated: true, count: 9_999 });
    expect(total(ls, "guard.rejected")).toBe(10_001);
    // The next window starts afresh: its first rejection is written at once.
    a.rejected("guard.rejected", { source: "10.0.0.1", code: "CERT_REQUIRED", reason: "no certificate" });
    expect(lines(dir)).toHaveLength(4);
    a.close();
  });

  it("counts an IPv6 /64 as one source, and an IPv4-mapped address as IPv4", () => {
    const out: Line[] = [];
    const agg = new RejectionAggregator((event, f) => out.push({ event, ...f }), { windowMs: 60_000, maxKinds: 8 });
    for (let i = 1; i <= 50; i++) agg.offer("register.rate_limited", { source: `2001:db8:1:2::${i.toString(16)}` });
    agg.offer("register.rate_limited", { source: "2001:db8:1:3::1" });
    agg.offer("register.rate_limited", { source: "192.0.2.7" });
    agg.offer("register.rate_limited", { source: "::ffff:192.0.2.7" });
    agg.flush();
    expect(out.filter((l) => !l.aggregated).map((l) => l.source)).toEqual(["2001:db8:1:2::1", "2001:db8:1:3::1", "192.0.2.7"]);
    expect(out.filter((l) => l.aggregated)).toEqual([
      expect.objectContaining({ source: "2001:db8:1:2::/64", count: 49 }),
      expect.objectContaining({ source: "192.0.2.7", count: 1 }),
    ]);
  });

  it("holds at most maxKinds kinds per window; more go into one catch-all count", () => {
    const out: Line[] = [];
    const agg = new RejectionAggregator((event, f) => out.push({ event, ...f }), { windowMs: 60_000, maxKinds: 4 });
    for (let i = 0; i < 1000; i++) agg.offer("operator.auth_failed", { source: `10.1.${i >> 8}.${i & 255}`, reason: "unknown" });
    expect(out).toHaveLength(4);
    agg.flush();
    expect(out).toHaveLength(5);
    expect(out[4]).toMatchObject({ event: OVERFLOW_EVENT, count: 996, max_kinds: 4 });
  });
});

describe("audit rotation", () => {
  it("rotates before a line would pass the cap and keeps maxFiles files, each under the cap", () => {
    const dir = tempDir("audit-");
    const a = new FileAudit(dir, "controller", { rotation: { maxBytes: 4096, maxFiles: 3 } });
    for (let i = 0; i < 500; i++) a.event("task.submitted", { task_id: `t_${i}`, pad: "x".repeat(i % 40) });
    a.close();
    for (let i = 0; i < 3; i++) {
      const st = statSync(join(dir, auditFileName(i)));
      expect(st.size).toBeLessThanOrEqual(4096);
      expect(st.size).toBeGreaterThan(3000);
      expect(st.mode & 0o777).toBe(0o600);
    }
    expect(existsSync(join(dir, auditFileName(3)))).toBe(false);
    expect(lines(dir).at(-1)!.task_id).toBe("t_499");
    // Newest first: the current file continues where .1 ended.
    const prev = lines(dir, auditFileName(1)).at(-1)!.task_id as string;
    expect(lines(dir)[0]!.task_id).toBe(`t_${Number(prev.slice(2)) + 1}`);
  });

  it("a second writer (a CLI command) follows a rotation instead of writing into the renamed file", () => {
    const dir = tempDir("audit-");
    const controller = new FileAudit(dir, "controller", { rotation: { maxBytes: 2048, maxFiles: 4 } });
    const cli = new FileAudit(dir, "cli:test");
    cli.event("before.rotation");
    for (let i = 0; i < 40; i++) controller.event("filler", { i, pad: "y".repeat(40) });
    expect(existsSync(join(dir, auditFileName(1)))).toBe(true);
    cli.event("after.rotation");
    controller.event("controller.after");
    cli.close();
    controller.close();
    const current = lines(dir).map((l) => l.event);
    expect(current).toContain("after.rotation");
    expect(current.at(-1)).toBe("controller.after");
    const all = [3, 2, 1, 0].flatMap((i) => (existsSync(join(dir, auditFileName(i))) ? lines(dir, auditFileName(i)) : []));
    expect(all.filter((l) => l.event === "after.rotation")).toHaveLength(1);
    expect(all[0]!.event).toBe("before.rotation");
  });

  it("reopens a file deleted under it", () => {
    const dir = tempDir("audit-");
    const a = new FileAudit(dir, "controller", { rotation: { maxBytes: 1 << 20, maxFiles: 2 } });
    a.event("one");
    unlinkSync(join(dir, "audit.log"));
    a.event("two");
    a.close();
    expect(lines(dir).map((l) => l.event)).toEqual(["two"]);
  });

  it("GET /api/v1/audit reads on into the rotated files, newest last", async () => {
    const dir = tempDir("audit-");
    const a = new FileAudit(dir, "controller", { rotation: { maxBytes: 2048, maxFiles: 5 } });
    for (let i = 0; i < 60; i++) a.event(`e${i}`, { pad: "z".repeat(30) });
    a.close();
    expect(existsSync(join(dir, auditFileName(2)))).toBe(true);
    const last = await readAuditEvents(dir, { limit: 40 });
    expect(last.map((e) => e.event)).toEqual(Array.from({ length: 40 }, (_, k) => `e${20 + k}`));
  });
});
