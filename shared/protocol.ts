/** What both sides of the executor plane (PROTOCOL §3) agree on: names, limits, paths. */

export const DEFAULT_TRUST_DOMAIN = "tether.local";
export const JWT_AUDIENCE = "tether-controller";
export const MAX_EXECUTOR_BODY_BYTES = 64 * 1024;
/** Previous certificate stays valid this long after a renewal. */
export const CERT_GRACE_MS = 5 * 60_000;
/** Most leases one `POST …/leases` may ask for (`max`), and the longest it may wait for one (`wait_s`). */
export const MAX_LEASES_PER_POLL = 64;
export const MAX_LEASE_WAIT_S = 30;

export function controllerIssuer(trustDomain: string): string {
  return `spiffe://${trustDomain}/controller`;
}
export function executorSpiffeId(trustDomain: string, executorId: string): string {
  return `spiffe://${trustDomain}/executor/${executorId}`;
}

export const paths = {
  register: "/v1/executors/register",
  heartbeat: (id: string) => `/v1/executors/${id}/heartbeat`,
  renew: (id: string) => `/v1/executors/${id}/renew`,
  reregister: (id: string) => `/v1/executors/${id}/reregister`,
  leases: (id: string) => `/v1/executors/${id}/leases`,
  leaseComplete: (id: string, leaseId: string) => `/v1/executors/${id}/leases/${leaseId}/complete`,
  leaseFail: (id: string, leaseId: string) => `/v1/executors/${id}/leases/${leaseId}/fail`,
  caBundle: "/v1/ca/bundle.pem",
  caCrl: "/v1/ca/crl.pem",
  jwks: "/.well-known/jwks.json",
  healthz: "/healthz",
} as const;

/** The header of `GET /v1/ca/bundle.pem` that carries the bundle's `trust_bundle_version` (PROTOCOL §4). */
export const BUNDLE_VERSION_HEADER = "x-tether-bundle-version";

/** When to renew something that lives from `issuedAt` to `expiresAt`: at ~2/3 of its life. */
export function renewAt(issuedAtMs: number, expiresAtMs: number, fraction = 2 / 3): number {
  return issuedAtMs + Math.floor((expiresAtMs - issuedAtMs) * fraction);
}
