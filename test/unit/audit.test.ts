import { describe, expect, it } from "vitest";
import { readFileSync, statSync } from "node:fs";
import { tempDir } from "../support/temp-dir.ts";
import { join } from "node:path";
import { FileAudit, redact } from "../../controller/domain/audit.ts";

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
    const lines = readFileSync(join(dir, "audit.log"), "utf8").trim().split("\n").map((l) => JSON.parse(l));
    expect(lines.map((l) => l.event)).toEqual(["x.happened", "y.happened"]);
    expect(lines[0].jwt).toBe("[REDACTED]");
    expect(statSync(join(dir, "audit.log")).mode & 0o777).toBe(0o600);
  });
  it("never throws when the log cannot be written", () => {
    const errors: unknown[] = [];
    const a = new FileAudit("/nonexistent/dir/for/sure", "test", (e) => errors.push(e));
    expect(() => a.event("x")).not.toThrow();
    expect(errors.length).toBe(1);
  });
});
