/** The executor's logger redacts secrets that slip into a logged object. */
import { describe, expect, it } from "vitest";
import { Writable } from "node:stream";
import { createLogger } from "../../executor/logger.ts";

function capture() {
  const lines: any[] = [];
  const dest = new Writable({
    write(chunk, _e, cb) {
      lines.push(JSON.parse(String(chunk)));
      cb();
    },
  });
  return { log: createLogger({ level: "info", destination: dest as never }), lines };
}

describe("executor logger", () => {
  it("redacts jwt, hmac_key, key, token, authorization — at the top level and one level down", () => {
    const { log, lines } = capture();
    log.info({ jwt: "s1", hmac_key: "s2", key: "s3", token: "s4", authorization: "Bearer s5", enrollment_token: "s6", keyPem: "s7" }, "top");
    log.info({ res: { jwt: "s1", hmac_key: "s2" }, req: { token: "s4", authorization: "s5" }, headers: { authorization: "s5" } }, "nested");
    const text = JSON.stringify(lines);
    for (const s of ["s1", "s2", "s3", "s4", "s5", "s6", "s7"]) expect(text).not.toContain(`"${s}"`);
    expect(lines[0]).toMatchObject({ jwt: "[REDACTED]", hmac_key: "[REDACTED]", key: "[REDACTED]", token: "[REDACTED]", authorization: "[REDACTED]" });
    expect(lines[1].res.jwt).toBe("[REDACTED]");
  });

  it("writes JSON lines with a level label, time and component", () => {
    const { log, lines } = capture();
    log.warn({ event: "retrying", delay_ms: 5 }, "hello");
    expect(lines[0]).toMatchObject({ level: "warn", component: "executor", event: "retrying", delay_ms: 5, msg: "hello" });
    expect(Date.parse(lines[0].time)).toBeGreaterThan(0);
  });
});
