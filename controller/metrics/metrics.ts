/**
 * What the controller's domain and HTTP layer report to the metrics (PROTOCOL §9.1), as
 * a plain interface: the domain never imports a metrics library, and tests and CLI
 * commands that open a data dir get `noMetrics` and need no registry. The Prometheus
 * implementation is ./prometheus.ts, made only when `--metrics-listen` is given.
 *
 * Label values passed here must be bounded: a route pattern (never a raw path), an
 * HTTP status, an error code, or one of the small enums below — never an executor id,
 * a token or anything a client chose freely.
 */

/** `tether_registrations_total{result}`: how a `POST /v1/executors/register` ended in the domain. */
export type RegistrationResult = "success" | "denied" | "invalid_csr" | "unavailable" | "error";

/** `tether_certificates_issued_total{profile}`: which certificate profile was issued. */
export type CertificateProfile = "executor" | "server";

export interface ControllerMetrics {
  /** false for `noMetrics`: the HTTP hook is not even registered then (no cost per request). */
  readonly enabled: boolean;
  registration(result: RegistrationResult): void;
  certificateIssued(profile: CertificateProfile): void;
  /** Leases the reclaim duty took back (requeued, or failed with no attempts left). */
  leasesReclaimed(count: number): void;
  /** A store operation failed because the store was unavailable (answered 503 UNAVAILABLE, or failed a duty or a scrape). */
  storeError(): void;
  /** A request refused by a guard, with its wire code (CERT_REQUIRED, NONCE_REPLAY, UNAUTHENTICATED, …). */
  guardRejection(code: string): void;
  /** One answered request: the route pattern as declared (or "unmatched"), its status, how long it took. */
  httpRequest(route: string, status: number, seconds: number): void;
}

/** Metrics off: every call is a no-op. */
export const noMetrics: ControllerMetrics = Object.freeze({
  enabled: false,
  registration() {},
  certificateIssued() {},
  leasesReclaimed() {},
  storeError() {},
  guardRejection() {},
  httpRequest() {},
});
