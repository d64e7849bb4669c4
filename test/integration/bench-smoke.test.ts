/**
 * `npm run bench` in its smoke size finishes and prints one JSON line with every
 * figure. No performance assertion: the numbers depend on the machine.
 */
import { describe, expect, it } from "vitest";
import { spawn } from "node:child_process";
import { fileURLToPath } from "node:url";

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
  it("--executors 50 --duration 2 (short JWT lifetime and heartbeat interval) --json ends with one JSON line holding every figure", async () => {
    // A 10 s JWT lifetime and 2 s heartbeat interval keep the rotation phase to a few
    // seconds: the next JWT key is mature by then and executors renew within 2–4 s.
    const r = await runBench(["--executors", "50", "--duration", "2", "--jwt-ttl", "10", "--heartbeat-interval", "2", "--json"], 55_000);
    expect(r.code, r.stderr.slice(-3000)).toBe(0);
    const last = r.stdout.trim().split("\n").at(-1)!;
    const result = JSON.parse(last) as Record<string, unknown>;
    for (const k of KEYS) {
      expect(typeof result[k], k).toBe("number");
      expect(Number.isFinite(result[k]), k).toBe(true);
    }
    expect(result.reenrollments).toBe(0);
    // The rotation phase ran to its end: every executor moved to the new CA.
    expect(result.rotation_executors_moved).toBe(50);
    expect(result.rotation_failed_requests).toBe(0);
    expect(result.rotation_cert_renewals).toBeGreaterThanOrEqual(50);
  }, 60_000);
});
