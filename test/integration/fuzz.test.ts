/**
 * The short fuzz run of `npm test` (issue 10): `npm run fuzz`'s harness with a fixed
 * seed against a real controller process (production posture), bounded in time and
 * requests. It must find nothing — no crash, no 5xx, no answer outside the error
 * shape, no request without an answer, no RSS blow-up, no request past a guard it
 * should not pass — and it must have reached every plane, past the guards too.
 * There is no allow-list: a known finding fails this test until it is fixed.
 *
 * The oracle's own pieces are checked first, so a broken oracle cannot pass silently.
 */
import { describe, expect, it } from "vitest";
import { ExecutorId, Labels } from "../../shared/wire/parts.ts";
import { RegisterRequest, LeaseParams } from "../../shared/wire/executor.ts";
import { AuditQuery, CreateApiToken, SubmitTask, TaskListQuery } from "../../shared/wire/operator.ts";
import { runFuzz } from "../../fuzz/fuzzer.ts";
import { describeFailure } from "../../fuzz/report.ts";
import { errorShapeProblem } from "../../fuzz/oracle.ts";
import { parseAll, type HttpResponse } from "../../fuzz/http1.ts";
import { generateMatching } from "../../fuzz/regex-gen.ts";
import { Rng } from "../../fuzz/rng.ts";

const response = (status: number, contentType: string | undefined, body: string): HttpResponse => ({
  status, reason: "", headers: contentType ? [["content-type", contentType]] : [], body: Buffer.from(body),
});

function patterns(schema: unknown, out: string[] = []): string[] {
  if (schema && typeof schema === "object") {
    for (const [k, v] of Object.entries(schema)) {
      if (k === "pattern" && typeof v === "string") out.push(v);
      else patterns(v, out);
    }
  }
  return out;
}

describe("the fuzzer's oracle and generators", () => {
  it("accepts only the contract's error shape", () => {
    expect(errorShapeProblem(response(400, "application/json; charset=utf-8", '{"error":{"code":"INVALID_REQUEST","message":"x"}}'))).toBeUndefined();
    expect(errorShapeProblem(response(401, "application/json", '{"error":{"code":"CLOCK_SKEW","message":"x","server_time":"t"}}'))).toBeUndefined();
    expect(errorShapeProblem(response(400, "application/json", '{"error":"Bad Request","message":"Client Error","statusCode":400}'))).toMatch(/top-level keys/);
    expect(errorShapeProblem(response(431, undefined, ""))).toMatch(/content-type/);
    expect(errorShapeProblem(response(400, "application/json", '{"error":{"code":"bad_code","message":"x"}}'))).toMatch(/UPPER_SNAKE/);
    expect(errorShapeProblem(response(400, "text/html", "<html>"))).toMatch(/content-type/);
  });

  it("parses pipelined, chunked and HEAD answers from raw bytes", () => {
    const bytes = Buffer.from("HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}HTTP/1.1 404 Not Found\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n");
    const { responses, rest } = parseAll(bytes, { eof: true, head: false });
    expect(responses.map((r) => [r.status, r.body.toString()])).toEqual([[200, "{}"], [404, "abc"]]);
    expect(rest.length).toBe(0);
    expect(parseAll(Buffer.from("HTTP/1.1 200 OK\r\ncontent-length: 9\r\n\r\n"), { eof: false, head: true }).responses[0]?.body.length).toBe(0);
  });

  it("generates strings that match every pattern of the wire schemas", () => {
    const rng = new Rng("patterns");
    const all = [ExecutorId, Labels, RegisterRequest, LeaseParams, AuditQuery, CreateApiToken, SubmitTask, TaskListQuery].flatMap((s) => patterns(s));
    expect(all.length).toBeGreaterThan(5);
    for (const p of all) for (let i = 0; i < 50; i++) expect(generateMatching(p, rng)).toMatch(new RegExp(p, "u"));
  });
});

describe("fuzzing (short run)", () => {
  it("finds nothing in ~25 s of mutated requests on every route", async () => {
    const log: string[] = [];
    const report = await runFuzz({
      seed: "npm-test-1", seconds: 25, requests: 6_000, concurrency: 8, executors: 4, maxRssGrowthMb: 256, maxFindings: 20,
      dev: false, keep: false, log: (line) => log.push(line),
    });
    const findings = report.findings.map((g) => describeFailure(g, report.seed)).join("\n\n");
    expect(findings, `fuzz findings (reproducers in ${report.outDir}):\n${findings}`).toBe("");
    // It did fuzz: enough requests, every plane, and authenticated requests reached the handlers.
    expect(report.requests).toBeGreaterThan(500);
    for (const plane of ["executor", "operator", "register", "public", "raw"]) expect(report.stats.byPlane[plane] ?? 0).toBeGreaterThan(0);
    expect(report.stats.authenticated2xx).toBeGreaterThan(50);
    expect(report.stats.mustNotPass).toBeGreaterThan(50);
    expect(report.stats.refused).toBe(report.stats.mustNotPass);
  }, 180_000);
});
