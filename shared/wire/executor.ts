/**
 * The executor plane (PROTOCOL §3): request and response shapes, written once. The
 * controller validates and serializes with them; the executor's client is typed by them.
 */
import { Type, type Static } from "typebox";
import { AnyObject, Bool, Empty, ExecutorId, IdParams, Int, Labels, NO_CONTROLS, Str, StringEnum, Time } from "./parts.ts";
import { MAX_LEASE_WAIT_S, MAX_LEASES_PER_POLL } from "../protocol.ts";

/** A CSR in PEM; the certs module checks what is inside. */
const CsrPem = Type.String({ maxLength: 16384 });

/**
 * Examples below are valid instances (they pass the same validation as a request) and end up
 * in the OpenAPI document (GET /openapi.json). This CSR is real: an Ed25519 key (thrown away)
 * made with `openssl req -new -newkey ed25519 -nodes -subj /CN=executor`, so a client that
 * sends the register example with a live enrollment token gets a certificate.
 */
export const EXAMPLE_CSR_PEM = [
  "-----BEGIN CERTIFICATE REQUEST-----",
  "MIGSMEYCAQAwEzERMA8GA1UEAwwIZXhlY3V0b3IwKjAFBgMrZXADIQBWc59guE6U",
  "sxYBd2VGfEI4prUiGfLvAwNX1kq7uksqJ6AAMAUGAytlcANBAAG4lHkfgf2nG8+p",
  "3AvLMMyms8ZZHkx3SjWM8M3LGpFtSCuQdp76KuXhZiYumjpon8dcezHg4HtuggUu",
  "mrRYfwo=",
  "-----END CERTIFICATE REQUEST-----",
  "",
].join("\n");

export const RegisterRequest = Type.Object({
  enrollment_token: Type.String({ maxLength: 256 }),
  csr_pem: CsrPem,
  name: Type.Optional(Type.String({ minLength: 1, maxLength: 64, pattern: NO_CONTROLS })),
  labels: Type.Optional(Labels),
  capacity: Type.Optional(Type.Integer({ minimum: 1, maximum: 1024 })),
}, {
  examples: [{
    enrollment_token: "tet_enr_Yq3vJ0pXcN2mB8sKf5wLz1tRgH4uDe6aWo9iQyTbVkE",
    csr_pem: EXAMPLE_CSR_PEM,
    name: "build-01",
    labels: { pool: "linux-amd64" },
    capacity: 4,
  }],
});
export type RegisterRequest = Static<typeof RegisterRequest>;

export const RegisterResponse = Type.Object({
  executor_id: Str,
  epoch: Int,
  certificate_pem: Str,
  ca_bundle_pem: Str,
  cert_expires_at: Time,
  jwt: Str,
  jwt_expires_at: Time,
  /** base64url of 32 random bytes. */
  hmac_key: Str,
  heartbeat_interval_s: Int,
  /** The version of `ca_bundle_pem` (PROTOCOL §7.1); always sent by this controller, absent from older ones. */
  trust_bundle_version: Type.Optional(Int),
});
export type RegisterResponse = Static<typeof RegisterResponse>;

/** Renew and re-register: a CSR asks for a new certificate (with a fresh key). */
export const RenewRequest = Type.Object({ csr_pem: Type.Optional(CsrPem) }, { examples: [{}] });
export type RenewRequest = Static<typeof RenewRequest>;

export const RenewResponse = Type.Object({
  epoch: Int,
  jwt: Str,
  jwt_expires_at: Time,
  cert_expires_at: Time,
  ca_bundle_pem: Str,
  /** The version of `ca_bundle_pem` (PROTOCOL §7.1). */
  trust_bundle_version: Int,
  /** Only when a CSR was sent. */
  certificate_pem: Type.Optional(Str),
  /** A new HMAC key (base64url of 32 bytes): with a new certificate, and on every re-register (§7.4). */
  hmac_key: Type.Optional(Str),
});
export type RenewResponse = Static<typeof RenewResponse>;

export const ExecutorRunState = StringEnum(["ready", "draining"]);
export type ExecutorRunState = Static<typeof ExecutorRunState>;

const LeaseId = Type.String({ maxLength: 128 });

export const HeartbeatRequest = Type.Object({
  status: ExecutorRunState,
  running: Type.Integer({ minimum: 0 }),
  capacity: Type.Integer({ minimum: 0 }),
  leases: Type.Array(LeaseId, { maxItems: 1024 }),
  /** The trust bundle version this executor holds (PROTOCOL §7.2). */
  trust_bundle_version: Type.Optional(Type.Integer({ minimum: 0 })),
}, {
  // The body of the HMAC test vector (PROTOCOL §3.2).
  examples: [{ status: "ready", running: 0, capacity: 4, leases: [] }],
});
export type HeartbeatRequest = Static<typeof HeartbeatRequest>;

export const HeartbeatResponse = Type.Object({
  server_time: Time,
  next_heartbeat_s: Int,
  jwt_renew_after: Time,
  cert_renew_after: Time,
  drain: Bool,
  cancel_leases: Type.Array(Str),
  /** The controller's trust bundle version; newer than the executor's: fetch the bundle. */
  trust_bundle_version: Int,
});
export type HeartbeatResponse = Static<typeof HeartbeatResponse>;

// In shared/protocol.ts, which the daemon loads without TypeBox.
export { MAX_LEASES_PER_POLL, MAX_LEASE_WAIT_S };

export const LeasesRequest = Type.Object({
  max: Type.Integer({ minimum: 1, maximum: MAX_LEASES_PER_POLL }),
  wait_s: Type.Integer({ minimum: 0, maximum: MAX_LEASE_WAIT_S }),
}, { examples: [{ max: 4, wait_s: 25 }] });
export type LeasesRequest = Static<typeof LeasesRequest>;

export const Lease = Type.Object({
  lease_id: Str,
  task_id: Str,
  kind: Str,
  payload: Type.Unknown(),
  expires_at: Time,
});
export type Lease = Static<typeof Lease>;

export const LeasesResponse = Type.Object({ leases: Type.Array(Lease) });
export type LeasesResponse = Static<typeof LeasesResponse>;

export const LeaseParams = Type.Object({
  id: ExecutorId,
  lease_id: Type.String({ pattern: "^[A-Za-z0-9_-]{1,128}$", examples: ["lease_Zk3mQ9pW2xTr8vLc"] }),
});

export const LeaseCompleteRequest = Type.Object({ result: AnyObject }, {
  examples: [{ result: { exit_code: 0, signal: null, stdout_tail: "hello\n", stderr_tail: "", stdout_bytes: 6, stderr_bytes: 0, duration_ms: 12 } }],
});
export type LeaseCompleteRequest = Static<typeof LeaseCompleteRequest>;

export const LeaseFailRequest = Type.Object({ error: Type.String({ maxLength: 65536 }), retryable: Bool }, {
  examples: [{ error: "exit code 1", retryable: false }],
});
export type LeaseFailRequest = Static<typeof LeaseFailRequest>;

/** Route schemas of the executor plane: what fastify validates, serializes and types with. */
export const executorRouteSchemas = {
  register: { body: RegisterRequest, response: { 201: RegisterResponse } },
  renew: { params: IdParams, body: RenewRequest, response: { 200: RenewResponse } },
  reregister: { params: IdParams, body: RenewRequest, response: { 200: RenewResponse } },
  heartbeat: { params: IdParams, body: HeartbeatRequest, response: { 200: HeartbeatResponse } },
  leases: { params: IdParams, body: LeasesRequest, response: { 200: LeasesResponse } },
  leaseComplete: { params: LeaseParams, body: LeaseCompleteRequest, response: { 200: Empty } },
  leaseFail: { params: LeaseParams, body: LeaseFailRequest, response: { 200: Empty } },
} as const;
