/**
 * The controller's metrics in Prometheus form (PROTOCOL §9.1), made only when
 * `--metrics-listen` is given. Counters are incremented by the domain and the HTTP hook
 * through the ControllerMetrics interface (./metrics.ts); gauges are read from the store
 * and the CA set when scraped (./gauges.ts). Label values are bounded: the known codes,
 * results and profiles are there from the start (at 0, so a rate() never starts from an
 * absent series), routes are declared patterns.
 */
import { Counter, Histogram, type Registry } from "prom-client";
import { newRegistry } from "../../shared/prom-registry.ts";
import { serveMetrics, type ListenAddress, type MetricsListener } from "../../shared/metrics-http.ts";
import type { ControllerContext } from "../context.ts";
import { controllerGauges, gaugeSources } from "./gauges.ts";
import type { CertificateProfile, ControllerMetrics, RegistrationResult } from "./metrics.ts";

/** Request durations: heartbeats take milliseconds, lease long polls up to 30 s. */
export const HTTP_DURATION_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];

/** Every code a guard answers with (PROTOCOL §3.2, §5). */
export const GUARD_REJECTION_CODES = [
  "CERT_REQUIRED", "IDENTITY_MISMATCH", "CERT_REVOKED", "TOKEN_INVALID", "TOKEN_EXPIRED", "EPOCH_MISMATCH", "CLOCK_SKEW",
  "SIGNATURE_INVALID", "NONCE_REPLAY", "UNAUTHENTICATED", "FORBIDDEN",
] as const;
const REGISTRATION_RESULTS: RegistrationResult[] = ["success", "denied", "invalid_csr", "unavailable", "error"];
const CERTIFICATE_PROFILES: CertificateProfile[] = ["executor", "server"];

export class PrometheusControllerMetrics implements ControllerMetrics {
  readonly enabled = true;
  readonly registry: Registry = newRegistry();
  private readonly requests = new Counter({
    name: "tether_http_requests_total", help: "HTTP requests answered, by route pattern (\"unmatched\" for no route) and status code.",
    labelNames: ["route", "code"] as const, registers: [this.registry],
  });
  private readonly durations = new Histogram({
    name: "tether_http_request_duration_seconds", help: "Time from receiving a request to answering it, by route pattern.",
    labelNames: ["route"] as const, buckets: HTTP_DURATION_BUCKETS, registers: [this.registry],
  });
  private readonly rejections = new Counter({
    name: "tether_guard_rejections_total", help: "Requests refused by a guard (executor chain or operator token), by error code.",
    labelNames: ["code"] as const, registers: [this.registry],
  });
  private readonly registrations = new Counter({
    name: "tether_registrations_total", help: "Executor registrations (POST /v1/executors/register) by result.",
    labelNames: ["result"] as const, registers: [this.registry],
  });
  private readonly certificates = new Counter({
    name: "tether_certificates_issued_total", help: "Certificates issued by the active CA, by profile (executor, server).",
    labelNames: ["profile"] as const, registers: [this.registry],
  });
  private readonly reclaims = new Counter({
    name: "tether_lease_reclaims_total", help: "Leases taken back by the reclaim duty (expired, or their executor went offline).",
    registers: [this.registry],
  });
  private readonly storeErrors = new Counter({
    name: "tether_store_errors_total", help: "Store operations that failed because the store was unavailable.",
    registers: [this.registry],
  });
  /** One child per route and status: the hook runs on every request, a label lookup per call would cost. */
  private readonly requestChildren = new Map<string, Counter.Internal>();
  private readonly durationChildren = new Map<string, Histogram.Internal<"route">>();

  constructor() {
    for (const code of GUARD_REJECTION_CODES) this.rejections.labels(code).inc(0);
    for (const result of REGISTRATION_RESULTS) this.registrations.labels(result).inc(0);
    for (const profile of CERTIFICATE_PROFILES) this.certificates.labels(profile).inc(0);
  }

  registration(result: RegistrationResult): void {
    this.registrations.labels(result).inc();
  }
  certificateIssued(profile: CertificateProfile): void {
    this.certificates.labels(profile).inc();
  }
  leasesReclaimed(count: number): void {
    if (count > 0) this.reclaims.inc(count);
  }
  storeError(): void {
    this.storeErrors.inc();
  }
  guardRejection(code: string): void {
    this.rejections.labels(code).inc();
  }
  httpRequest(route: string, status: number, seconds: number): void {
    const key = `${status} ${route}`;
    let counter = this.requestChildren.get(key);
    if (!counter) this.requestChildren.set(key, (counter = this.requests.labels(route, String(status))));
    counter.inc();
    let histogram = this.durationChildren.get(route);
    if (!histogram) this.durationChildren.set(route, (histogram = this.durations.labels(route)));
    histogram.observe(seconds);
  }

  /** Adds the scrape-time gauges of this controller's state and serves /metrics at `at`. */
  async serve(ctx: ControllerContext, at: ListenAddress, log: { error(fields: object, message: string): void }): Promise<MetricsListener> {
    controllerGauges(this.registry, gaugeSources(ctx), (family, err) => log.error({ err, family }, "a metrics gauge could not be read"));
    return serveMetrics(this.registry, at, (err) => log.error({ err }, "metrics listener error"));
  }
}
