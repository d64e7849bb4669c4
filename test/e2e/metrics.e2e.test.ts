/**
 * Both metrics listeners as an operator runs them (PROTOCOL §9.1): `tether controller
 * start --metrics-listen` and `tether executor run --metrics-listen`, real processes on
 * loopback. After enrollment, a JWT renewal and a task, the daemon's /metrics says it is
 * ready, its expiries are the ones `tether executor status --json` reports, and its
 * counters follow; the controller's counts the executor. Both expositions pass
 * `promtool check metrics` and the strict parser.
 */
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { request } from "undici";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createToken, executorStatus, killAll, startController, startExecutor, tempDir, tether, type Controller, type Proc } from "./harness.ts";
import { havePromtool, parseExposition, promtoolCheck, sampleValue, type Family } from "../support/prom-text.ts";

let ctl: Controller;
let ex: Proc;
let stateDir: string;
let executorId: string;
let controllerMetrics: string;
let daemonMetrics: string;

async function scrapeText(url: string): Promise<string> {
  const res = await request(url);
  expect(res.statusCode).toBe(200);
  return res.body.text();
}
const scrape = async (url: string): Promise<Map<string, Family>> => parseExposition(await scrapeText(url));

async function eventually<T>(what: string, read: () => Promise<T>, ok: (v: T) => boolean, timeoutMs = 15_000): Promise<T> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = await read();
    if (ok(v)) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}: last ${JSON.stringify(v)}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

beforeAll(async () => {
  ctl = await startController({ jwtTtl: "6s", heartbeat: "1s", args: ["--metrics-listen", "127.0.0.1:0"] });
  await ctl.proc.waitFor(/metrics on http:\/\/127\.0\.0\.1:\d+\/metrics/, "the controller's metrics listener");
  controllerMetrics = /metrics on (http:\/\/127\.0\.0\.1:\d+\/metrics)/.exec(ctl.proc.stderr())![1]!;
  stateDir = join(tempDir(), "state");
  const tokenFile = join(tempDir(), "token");
  writeFileSync(tokenFile, createToken(ctl.dataDir) + "\n", { mode: 0o600 });
  ex = startExecutor(ctl, stateDir, ["--token-file", tokenFile, "--metrics-listen", "127.0.0.1:0", "--allow-command", "echo"]);
  daemonMetrics = (await ex.waitForEvent("metrics.listening", 20_000)).url;
  executorId = (await ex.waitForEvent("enrolled", 20_000)).executor_id;
  await ex.waitForEvent("ready", 10_000);
}, 60_000);
afterAll(async () => {
  await killAll();
});

describe("metrics listeners (e2e)", () => {
  it("the daemon's /metrics: ready 1, and the expiries `tether executor status --json` reports", async () => {
    expect(daemonMetrics).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/metrics$/);
    const m = await eventually("tether_executor_ready 1", () => scrape(daemonMetrics), (m) => sampleValue(m, "tether_executor_ready") === 1);
    expect(m.get("tether_executor_ready")!.type).toBe("gauge");
    // The JWT renews every few seconds: compare once both sides read the same one.
    const agree = await eventually("the metrics and `executor status` to agree", async () => {
      const status = executorStatus(stateDir);
      const metrics = await scrape(daemonMetrics);
      return {
        code: status.code,
        status: [Math.floor(Date.parse(status.json.cert_expires_at) / 1000), Math.floor(Date.parse(status.json.jwt_expires_at) / 1000)],
        metrics: [sampleValue(metrics, "tether_executor_cert_expiry_timestamp_seconds"), sampleValue(metrics, "tether_executor_jwt_expiry_timestamp_seconds")],
      };
    }, (r) => JSON.stringify(r.status) === JSON.stringify(r.metrics));
    expect(agree.code).toBe(0);
    expect(agree.metrics[0]).toBeGreaterThan(Date.now() / 1000 + 3600);
    expect(agree.metrics[1]).toBeGreaterThan(Date.now() / 1000 - 10);
  });

  it("counts JWT renewals and the tasks it ran; heartbeats have not failed", async () => {
    await ex.waitForEvent("jwt.renewed", 15_000);
    const submitted = tether(["task", "submit", "--data-dir", ctl.dataDir, "--", "echo", "metrics"]);
    expect(submitted.status, submitted.stderr).toBe(0);
    const taskId = submitted.stdout.trim();
    await ex.waitFor(() => ex.logs().some((l) => l.event === "lease.completed" && l.task_id === taskId), "the task to complete", 15_000);
    const m = await eventually("the task to be counted", () => scrape(daemonMetrics), (m) => sampleValue(m, "tether_executor_tasks_total", { result: "succeeded" }) === 1);
    expect(sampleValue(m, "tether_executor_renewals_total", { kind: "jwt", result: "success" })).toBeGreaterThanOrEqual(1);
    expect(sampleValue(m, "tether_executor_renewals_total", { kind: "jwt", result: "failure" })).toBe(0);
    expect(sampleValue(m, "tether_executor_tasks_total", { result: "failed" })).toBe(0);
    expect(m.get("tether_executor_heartbeat_failures_total")!.type).toBe("counter");
    expect(m.get("tether_executor_heartbeat_failures_total")!.samples).toEqual([]);
    // No identity, key or token in the daemon's exposition.
    const text = await scrapeText(daemonMetrics);
    expect(text).not.toContain(executorId);
    expect(text).not.toMatch(/tet_enr_|eyJ/);
  });

  it("the controller's /metrics counts the registration, the executor as ready, its heartbeats by route pattern", async () => {
    const m = await scrape(controllerMetrics);
    expect(sampleValue(m, "tether_registrations_total", { result: "success" })).toBe(1);
    expect(sampleValue(m, "tether_executors", { status: "ready" })).toBe(1);
    expect(sampleValue(m, "tether_tasks", { status: "succeeded" })).toBe(1);
    expect(sampleValue(m, "tether_http_requests_total", { route: "/v1/executors/:id/heartbeat", code: "200" })).toBeGreaterThan(0);
    expect(sampleValue(m, "tether_http_requests_total", { route: "/v1/executors/:id/renew", code: "200" })).toBeGreaterThan(0);
    const text = await scrapeText(controllerMetrics);
    expect(text).not.toContain(executorId);
  });

  it.skipIf(!havePromtool())("promtool check metrics accepts both expositions", async () => {
    for (const url of [daemonMetrics, controllerMetrics]) {
      const r = promtoolCheck(await scrapeText(url));
      expect(r, `${url}: ${r.output}`).toEqual({ status: 0, output: "" });
    }
  });

  it("the daemon's listener closes with the daemon", async () => {
    expect((await ex.kill("SIGTERM")).code).toBe(0);
    await expect(request(daemonMetrics)).rejects.toThrow();
  });
});
