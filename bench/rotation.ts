/**
 * The rotation phase, orchestrator side: while every executor heartbeats on the latency
 * phase's open-loop timetable (`--rate` over all N, bench/rotation-worker.ts), an admin
 * rotates the JWT signing key (`POST /api/v1/jwt-keys/rotate`, waiting its Retry-After
 * if the next key has not been published for one JWT lifetime yet), prepares a CA
 * (`POST /api/v1/ca/rotate`), waits until every executor has reported the bundle that
 * holds it, activates it (`POST /api/v1/ca/activate`), and waits until every executor
 * holds a certificate from it and has heartbeated with it. Reports the executors'
 * failed requests (target 0), the seconds from activation until the fleet moved, the
 * requests made and the controller's CPU during the phase.
 */
import { request } from "node:https";
import { X509Certificate } from "node:crypto";
import type { ControllerProcess } from "../tools/controller-process.ts";
import type { CaView, TrustStatus } from "../shared/wire/operator.ts";
import { paths } from "../shared/protocol.ts";
import {
  cores, fmtErrors, log, mergeCounts, mergeSorted, percentile, pgCores, round, sleep, startWindow, sumErrors, type AllWorkers,
} from "./harness.ts";
import { options } from "./options.ts";
import { adminToken, type BenchStore } from "./store.ts";
import { mergeTimelines, type RunSeries, type TimelineData } from "./report-series.ts";

interface Answer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
}

/** The operator's side: HTTPS with an admin API token, verifying the controller against the bundle. */
class Admin {
  constructor(
    private readonly port: number,
    private readonly token: string,
    private trust: string,
  ) {}

  call(method: "GET" | "POST", path: string, body?: unknown): Promise<Answer> {
    const payload = body === undefined ? undefined : JSON.stringify(body);
    return new Promise((resolve, reject) => {
      const req = request(
        {
          host: "127.0.0.1", port: this.port, servername: "localhost", ca: this.trust, method, path, agent: false, timeout: 60_000,
          headers: { authorization: `Bearer ${this.token}`, ...(payload !== undefined ? { "content-type": "application/json" } : {}) },
        },
        (res) => {
          let text = "";
          res.setEncoding("utf8");
          res.on("data", (d: string) => (text += d));
          res.on("end", () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: text }));
        },
      );
      req.on("timeout", () => req.destroy(new Error(`${method} ${path}: no answer in 60 s`)));
      req.on("error", reject);
      req.end(payload);
    });
  }

  async json<T>(method: "GET" | "POST", path: string, body: unknown, ok: number): Promise<T> {
    const a = await this.call(method, path, body);
    if (a.status !== ok) throw new Error(`${method} ${path} answered ${a.status}: ${a.body.slice(0, 500)}`);
    return JSON.parse(a.body) as T;
  }

  trustBundle(pem: string): void {
    this.trust = pem;
  }
}

/** The CA certificate of a bundle with this fingerprint (as `tether ca show` prints it). */
function caFromBundle(bundlePem: string, fingerprint: string): string {
  for (const block of bundlePem.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? []) {
    if (new X509Certificate(block).fingerprint256 === fingerprint) return block;
  }
  throw new Error(`the bundle holds no CA with fingerprint ${fingerprint}`);
}

interface Status {
  executors: number;
  adopted: number;
  moved: number;
  confirmed: number;
  lastMovedAt: number;
  failed: number;
}

/** Where the slow heartbeats (> 50 ms) of the phase were scheduled, in 250 ms buckets, next to the phase's steps. */
function logStalls(slow: [number, number][], t0: number, steps: Record<string, number>): void {
  if (slow.length === 0) return;
  const buckets = new Map<number, { n: number; worst: number }>();
  for (const [at, l] of slow) {
    const b = Math.floor((at - t0) / 250) * 250;
    const st = buckets.get(b) ?? { n: 0, worst: 0 };
    st.n++;
    st.worst = Math.max(st.worst, l);
    buckets.set(b, st);
  }
  const worst = [...buckets.entries()].sort((a, b) => b[1].worst - a[1].worst).slice(0, 8).sort((a, b) => a[0] - b[0]);
  const marks = Object.entries(steps).filter(([, t]) => t > 0).map(([k, t]) => `${k} t+${((t - t0) / 1000).toFixed(2)}s`).join(", ");
  log(`  slowest moments (heartbeats > 50 ms by scheduled time; ${marks}): ${worst.map(([b, st]) => `t+${(b / 1000).toFixed(2)}s ×${st.n} (worst ${st.worst} ms)`).join(", ")}`);
}

export interface RotationDeps {
  ctl: ControllerProcess;
  /** Where `tether admin bootstrap` makes the admin token (the data dir, or the shared store). */
  store: BenchStore;
  caPem: string;
  all: AllWorkers;
  N: number;
}

export async function rotationPhase(d: RotationDeps): Promise<{ figures: Record<string, number>; series: NonNullable<RunSeries["rotation"]> }> {
  const admin = new Admin(d.ctl.port, adminToken(d.store), d.caPem);
  const status = async (): Promise<Status> => {
    const s = await d.all<Status>("rotationStatus");
    const sum = (k: keyof Status) => s.reduce((a, x) => a + x[k], 0);
    return {
      executors: sum("executors"), adopted: sum("adopted"), moved: sum("moved"), confirmed: sum("confirmed"),
      lastMovedAt: Math.max(...s.map((x) => x.lastMovedAt)), failed: sum("failed"),
    };
  };
  /** Polls until `done` holds or the phase's timeout; false on timeout. */
  const waitFor = async (what: string, done: (s: Status) => boolean): Promise<Status & { ok: boolean }> => {
    const until = Date.now() + options.ROTATION_TIMEOUT_S * 1000;
    let lastLog = Date.now();
    for (;;) {
      const s = await status();
      if (done(s)) return { ...s, ok: true };
      if (Date.now() >= until) {
        log(`  rotation: gave up waiting for ${what} after ${options.ROTATION_TIMEOUT_S}s (--rotation-timeout)`);
        return { ...s, ok: false };
      }
      if (Date.now() - lastLog >= 5000) {
        log(`  rotation: waiting for ${what}: adopted ${s.adopted}, moved ${s.moved}, confirmed ${s.confirmed} of ${s.executors}; failed requests so far ${s.failed}`);
        lastLog = Date.now();
      }
      await sleep(100);
    }
  };

  const win = startWindow(d.ctl.pid);
  const t0 = Date.now();
  const started = await d.all<{ executors: number }>("rotationStart", (w) => ({ rate: (options.RATE * w.init.count) / d.N, startAt: t0 + 200 }));
  const fleet = started.reduce((a, s) => a + s.executors, 0);
  const rel = (t: number) => ((t - t0) / 1000).toFixed(1);
  log(`rotation phase: ${fleet} executors heartbeating at ${options.RATE}/s (each every ${(d.N / options.RATE).toFixed(1)} s)`);

  // ── the JWT signing key: next → active ──────────────────────────────────────────────
  let jwtWaitS = 0;
  for (let attempt = 0; ; attempt++) {
    const a = await admin.call("POST", "/api/v1/jwt-keys/rotate", {});
    if (a.status === 201) break;
    const retry = Number(a.headers["retry-after"]);
    if (a.status !== 409 || !Number.isFinite(retry) || attempt >= 3 || jwtWaitS + retry > options.ROTATION_TIMEOUT_S) {
      throw new Error(`POST /api/v1/jwt-keys/rotate answered ${a.status}: ${a.body.slice(0, 500)}`);
    }
    log(`  JWT key rotation refused until the next key has been published for one JWT lifetime: waiting ${retry}s (Retry-After), heartbeats flowing`);
    jwtWaitS += retry;
    await sleep(retry * 1000);
  }
  const tJwt = Date.now();
  log(`  t+${rel(tJwt)}s JWT key rotated (new tokens from now on are signed by the former next key)`);

  // ── prepare a CA; every executor adopts the bundle that holds it ────────────────────
  const prepared = await admin.json<CaView>("POST", "/api/v1/ca/rotate", {}, 201);
  const tRotate = Date.now();
  const trust = await admin.json<TrustStatus>("GET", "/api/v1/ca", undefined, 200);
  const bundle = await admin.call("GET", paths.caBundle);
  const newCaPem = caFromBundle(bundle.body, prepared.fingerprint_sha256);
  admin.trustBundle(bundle.body);
  await d.all("rotationExpect", () => ({ version: trust.trust_bundle_version, caPem: newCaPem }));
  log(`  t+${rel(tRotate)}s CA prepared: SHA256:${prepared.fingerprint_sha256.slice(0, 23)}…, trust bundle version ${trust.trust_bundle_version}`);
  const adopted = await waitFor("adoption of the new bundle", (s) => s.adopted >= s.executors);
  const tAdopted = Date.now();
  log(`  t+${rel(tAdopted)}s ${adopted.adopted}/${adopted.executors} executors have reported the new bundle (${((tAdopted - tRotate) / 1000).toFixed(1)}s after the rotation)`);

  // ── activate (gated on adoption) ─────────────────────────────────────────────────────
  let refusals = 0;
  let tActivated = 0;
  while (adopted.ok && !tActivated) {
    const a = await admin.call("POST", "/api/v1/ca/activate", {});
    if (a.status === 200) {
      tActivated = Date.now();
      break;
    }
    const pending = (JSON.parse(a.body) as { error?: { code?: string; pending?: string[] } }).error;
    if (a.status !== 409 || pending?.code !== "ADOPTION_INCOMPLETE" || refusals >= 50) {
      throw new Error(`POST /api/v1/ca/activate answered ${a.status}: ${a.body.slice(0, 500)}`);
    }
    refusals++;
    log(`  activation refused (ADOPTION_INCOMPLETE): ${pending.pending?.length ?? "?"} pending, e.g. ${(pending.pending ?? []).slice(0, 3).join(", ")}; retrying in 0.5 s`);
    await sleep(500);
  }

  // ── the fleet moves to the new CA, then heartbeats on its new credentials ────────────
  let moved: Status & { ok: boolean } = { ...adopted, ok: false };
  let confirmed = moved;
  if (tActivated) {
    log(`  t+${rel(tActivated)}s CA activated${refusals ? ` after ${refusals} refusal(s)` : ""}; executors renew within one to two heartbeat intervals (${options.HEARTBEAT_INTERVAL_S}s)`);
    moved = await waitFor("every executor on a certificate from the new CA", (s) => s.moved >= s.executors);
    log(`  t+${rel(Date.now())}s ${moved.moved}/${moved.executors} executors hold a certificate from the new CA${moved.ok ? ` (the last ${((moved.lastMovedAt - tActivated) / 1000).toFixed(1)}s after the activation)` : ""}`);
    confirmed = await waitFor("a heartbeat of every executor on its new credentials", (s) => s.confirmed >= s.executors);
  }
  const tConfirmed = confirmed.ok ? Date.now() : 0;
  const movedS = moved.ok ? (moved.lastMovedAt - tActivated) / 1000 : NaN;

  const res = await d.all<{
    heartbeats: number; bundles: number; certRenewals: number; jwtRenewals: number; failures: Record<string, number>;
    unanswered: number; queued: number; latencies: Float64Array; slow: [number, number][]; timeline: TimelineData;
  }>("rotationStop", () => ({ drainMs: 20_000 }));
  const wnd = win();
  const failures = mergeCounts(res.map((r) => r.failures));
  const unanswered = res.reduce((a, r) => a + r.unanswered, 0);
  if (unanswered) failures.UNANSWERED = (failures.UNANSWERED ?? 0) + unanswered;
  const sum = (k: "heartbeats" | "bundles" | "certRenewals" | "jwtRenewals") => res.reduce((a, r) => a + r[k], 0);
  const requests = sum("heartbeats") + sum("bundles") + sum("certRenewals") + sum("jwtRenewals");
  const failed = sumErrors(failures);
  const lat = mergeSorted(res.map((r) => r.latencies));
  log(
    `rotation phase: ${wnd.wallS.toFixed(1)}s, ${requests} executor requests (${sum("heartbeats")} heartbeats, ${sum("bundles")} bundle fetches, ` +
      `${sum("certRenewals")} certificate renewals, ${sum("jwtRenewals")} JWT renewals), failed ${failed}${fmtErrors(failures)}; ` +
      `fleet moved ${Number.isFinite(movedS) ? `${movedS.toFixed(1)}s` : "NOT"} after the activation; heartbeat p50 ${percentile(lat, 50).toFixed(2)} ms, ` +
      `p99 ${percentile(lat, 99).toFixed(2)} ms, max ${percentile(lat, 100).toFixed(2)} ms; controller ${cores(wnd.ctlCpuS, wnd.wallS)} cores, generator ${cores(wnd.genCpuS, wnd.wallS)} cores` +
      pgCores(wnd.storeCpuS, wnd.wallS),
  );
  logStalls(res.flatMap((r) => r.slow), t0, { rotated: tRotate, activated: tActivated });
  const series: NonNullable<RunSeries["rotation"]> = {
    startMs: t0,
    outcomes: mergeTimelines(res.map((r) => r.timeline)),
    steps: [
      { label: "JWT key rotated", atMs: tJwt },
      { label: "CA prepared", atMs: tRotate },
      { label: "every executor has the new bundle", atMs: adopted.ok ? tAdopted : 0 },
      { label: "CA activated", atMs: tActivated },
      { label: "every executor on the new CA", atMs: moved.ok ? moved.lastMovedAt : 0 },
      { label: "every executor heartbeated on it", atMs: tConfirmed },
    ],
    unanswered,
  };
  const figures = {
    rotation_failed_requests: failed,
    // NaN (null in the JSON) when the fleet did not move within --rotation-timeout.
    rotation_fleet_moved_s: round(movedS, 2),
    rotation_executors_moved: moved.moved,
    rotation_executors_confirmed: confirmed.confirmed,
    rotation_adoption_s: adopted.ok ? round((tAdopted - tRotate) / 1000, 2) : NaN,
    rotation_activation_refusals: refusals,
    rotation_jwt_wait_s: jwtWaitS,
    rotation_duration_s: round(wnd.wallS, 2),
    rotation_requests: requests,
    rotation_heartbeats: sum("heartbeats"),
    rotation_bundle_fetches: sum("bundles"),
    rotation_cert_renewals: sum("certRenewals"),
    rotation_jwt_renewals: sum("jwtRenewals"),
    rotation_heartbeat_p50_ms: round(percentile(lat, 50), 2),
    rotation_heartbeat_p99_ms: round(percentile(lat, 99), 2),
    rotation_heartbeat_max_ms: round(percentile(lat, 100), 2),
    rotation_controller_cpu_cores: cores(wnd.ctlCpuS, wnd.wallS),
    rotation_generator_cpu_cores: cores(wnd.genCpuS, wnd.wallS),
    rotation_controller_cpu_us_per_request: round((wnd.ctlCpuS / Math.max(1, requests)) * 1e6, 0),
    ...(Number.isFinite(wnd.storeCpuS) ? { rotation_store_cpu_cores: cores(wnd.storeCpuS, wnd.wallS) } : {}),
  };
  return { figures, series };
}
