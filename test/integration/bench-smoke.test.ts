/**
 * `npm run bench` in its smoke size finishes and prints one JSON line with every
 * figure, on the embedded SQLite store and on PostgreSQL (`--store`, with the revocation
 * propagation phase across two replicas). The SQLite run also measures an idle daemon
 * for a few seconds (`--daemon-idle`) and writes the report (`--report DIR`: the page,
 * one well-formed SVG per chart, the JSON). No performance assertion: the numbers depend
 * on the machine.
 */
import { describe, expect, it } from "vitest";
import { spawn } from "node:child_process";
import { readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { postgresAdminUrl, postgresAvailable, withAdmin } from "../support/postgres.ts";
import { tempDir } from "../support/temp-dir.ts";
import { xmlProblem } from "../support/well-formed-xml.ts";
import { redactStoreUrl } from "../../controller/store/store-url.ts";

const ROOT = fileURLToPath(new URL("../..", import.meta.url));
const KEYS = [
  "executors", "heartbeat_per_s", "bare_tls_per_s", "heartbeat_ratio_vs_bare_tls", "heartbeat_cpu_ratio_vs_bare_tls",
  "heartbeat_controller_cpu_cores", "heartbeat_generator_cpu_cores", "bare_controller_cpu_cores", "bare_generator_cpu_cores",
  "heartbeat_p50_ms", "heartbeat_p99_ms", "heartbeat_max_ms", "latency_controller_cpu_cores", "latency_generator_cpu_cores",
  "rss_mb", "registrations_per_s", "handshakes_per_s", "registration_ratio_vs_handshake",
  "registration_controller_cpu_cores", "registration_generator_cpu_cores", "handshake_controller_cpu_cores", "handshake_generator_cpu_cores",
  "restart_recovery_s", "reenrollments", "restart_controller_cpu_s", "restart_generator_cpu_s",
  "rotation_failed_requests", "rotation_fleet_moved_s", "rotation_executors_moved", "rotation_cert_renewals",
];

const DAEMON_IDLE_KEYS = ["daemon_idle_rss_mb", "daemon_idle_cpu_pct", "daemon_idle_s"];
/** Every chart of a run with every phase (bench/report-charts.ts). */
const CHARTS = ["latency-cdf", "latency-tail", "latency-histogram", "registrations", "restart-storm", "rotation"];
const REVOCATION_KEYS = ["revocation_propagation_ms_p50", "revocation_propagation_ms_p99", "revocation_propagation_ms_max"];
/** The smallest size that still runs every phase: the rotation phase takes a few seconds with these. */
const SMOKE = ["--executors", "50", "--duration", "2", "--jwt-ttl", "10", "--heartbeat-interval", "2", "--json"];

/** The test server (.ci/run exports it); the bench makes a database of its own there and drops it. */
const POSTGRES_URL = postgresAdminUrl();
const postgres = await postgresAvailable();
if (!postgres) console.log(`PostgreSQL not reachable at ${redactStoreUrl(POSTGRES_URL)}: skipping the bench smoke on PostgreSQL`);

function lastJson(stdout: string): Record<string, unknown> {
  return JSON.parse(stdout.trim().split("\n").at(-1)!) as Record<string, unknown>;
}

function expectFigures(result: Record<string, unknown>, keys: string[]): void {
  for (const k of keys) {
    expect(typeof result[k], k).toBe("number");
    expect(Number.isFinite(result[k]), k).toBe(true);
  }
}

function runBench(args: string[], timeoutMs: number): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ["--import", "tsx", "bench/run.ts", ...args], { cwd: ROOT, stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d) => (stdout += d));
    child.stderr.on("data", (d) => (stderr += d));
    const timer = setTimeout(() => child.kill("SIGINT"), timeoutMs);
    child.on("exit", (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

describe("npm run bench (smoke)", () => {
  it("--executors 50 --duration 2 (short JWT lifetime and heartbeat interval) --json ends with one JSON line holding every figure; --report writes the charts", async () => {
    // A 10 s JWT lifetime and 2 s heartbeat interval keep the rotation phase to a few
    // seconds: the next JWT key is mature by then and executors renew within 2–4 s.
    const report = join(tempDir(), "report");
    // The idle daemon measured 3 s after a 1 s warm-up: it ends with the run's other phases.
    const r = await runBench([...SMOKE, "--daemon-idle", "3", "--daemon-idle-warmup", "1", "--report", report], 55_000);
    expect(r.code, r.stderr.slice(-3000)).toBe(0);
    const result = lastJson(r.stdout);
    expectFigures(result, [...KEYS, ...DAEMON_IDLE_KEYS]);
    // The report: the page, every chart as a non-empty well-formed SVG, the same JSON.
    for (const name of ["index.html", "series.json", ...CHARTS.map((c) => `${c}.svg`)]) expect(statSync(join(report, name)).size, name).toBeGreaterThan(0);
    for (const c of CHARTS) {
      const svg = readFileSync(join(report, `${c}.svg`), "utf8");
      expect(xmlProblem(svg), c).toBeNull();
      expect(svg, c).toMatch(/<svg xmlns="http:\/\/www\.w3\.org\/2000\/svg"/);
      expect(svg, c).toMatch(/<path /);
    }
    expect(xmlProblem(readFileSync(join(report, "index.html"), "utf8"), { doctype: true })).toBeNull();
    expect(JSON.parse(readFileSync(join(report, "bench.json"), "utf8"))).toEqual(result);
    expect(result.store).toBe("sqlite");
    // One controller process: no second replica to propagate to, and the log says so.
    for (const k of REVOCATION_KEYS) expect(result, k).not.toHaveProperty(k);
    expect(r.stderr).toMatch(/revocation propagation: absent/);
    expect(result.reenrollments).toBe(0);
    // The rotation phase ran to its end: every executor moved to the new CA.
    expect(result.rotation_executors_moved).toBe(50);
    expect(result.rotation_failed_requests).toBe(0);
    expect(result.rotation_cert_renewals).toBeGreaterThanOrEqual(50);
  }, 60_000);

  it.skipIf(!postgres)("--store postgres://… runs every phase there, plus revocation propagation across two replicas", async () => {
    const r = await runBench([...SMOKE, "--store", POSTGRES_URL, "--revocations", "5", "--daemon-idle", "0"], 55_000);
    expect(r.code, r.stderr.slice(-3000)).toBe(0);
    const result = lastJson(r.stdout);
    expectFigures(result, [...KEYS, ...REVOCATION_KEYS]);
    for (const k of DAEMON_IDLE_KEYS) expect(result, k).not.toHaveProperty(k);
    expect(result.store).toBe("postgres");
    expect(result.reenrollments).toBe(0);
    expect(result.rotation_executors_moved).toBe(50);
    expect(result.rotation_failed_requests).toBe(0);
    expect(result.revocation_executors).toBe(5);
    expect(result.revocation_not_propagated).toBe(0);
    expect(result.revocation_propagation_ms_p50 as number).toBeLessThanOrEqual(result.revocation_propagation_ms_p99 as number);
    // The run's own database is gone afterwards.
    const db = /database (postgres:\/\/\S+\/(tether_bench_[0-9a-f]+))/.exec(r.stderr)?.[2];
    expect(db).toBeDefined();
    expect((await withAdmin((c) => c.query("SELECT 1 FROM pg_database WHERE datname = $1", [db]))).rowCount).toBe(0);
  }, 60_000);
});
