/** Wire shapes of the executor plane (PROTOCOL §3) shared by controller and executor. */

export const DEFAULT_TRUST_DOMAIN = "tether.local";
export const JWT_AUDIENCE = "tether-controller";
export const MAX_EXECUTOR_BODY_BYTES = 64 * 1024;
/** Previous certificate stays valid this long after a renewal. */
export const CERT_GRACE_MS = 5 * 60_000;

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
  jwks: "/.well-known/jwks.json",
  healthz: "/healthz",
} as const;

export interface RegisterRequest {
  enrollment_token: string;
  csr_pem: string;
  name?: string;
  labels?: Record<string, string>;
  capacity?: number;
}

export interface RegisterResponse {
  executor_id: string;
  epoch: number;
  certificate_pem: string;
  ca_bundle_pem: string;
  cert_expires_at: string;
  jwt: string;
  jwt_expires_at: string;
  hmac_key: string;
  heartbeat_interval_s: number;
}

export interface RenewRequest {
  csr_pem?: string;
}

export interface RenewResponse {
  epoch: number;
  jwt: string;
  jwt_expires_at: string;
  cert_expires_at: string;
  ca_bundle_pem: string;
  certificate_pem?: string;
}

export type ExecutorRunState = "ready" | "draining";

export interface HeartbeatRequest {
  status: ExecutorRunState;
  running: number;
  capacity: number;
  leases: string[];
}

export interface HeartbeatResponse {
  server_time: string;
  next_heartbeat_s: number;
  jwt_renew_after: string;
  cert_renew_after: string;
  drain: boolean;
  cancel_leases: string[];
}

export interface LeasesRequest {
  max: number;
  wait_s: number;
}

export interface Lease {
  lease_id: string;
  task_id: string;
  kind: string;
  payload: unknown;
  expires_at: string;
}

export interface LeasesResponse {
  leases: Lease[];
}

export interface LeaseCompleteRequest {
  result: Record<string, unknown>;
}

export interface LeaseFailRequest {
  error: string;
  retryable: boolean;
}

export interface ErrorBody {
  error: { code: string; message: string; server_time?: string };
}

/** When to renew something that lives from `issuedAt` to `expiresAt`: at ~2/3 of its life. */
export function renewAt(issuedAtMs: number, expiresAtMs: number, fraction = 2 / 3): number {
  return issuedAtMs + Math.floor((expiresAtMs - issuedAtMs) * fraction);
}
