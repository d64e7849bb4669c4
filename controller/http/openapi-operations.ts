/**
 * What the OpenAPI document (controller/http/openapi.ts) cannot read from a route's schemas
 * or its declaration: the operation's id and summary, and the error codes its handler (the
 * domain behind it) can answer on top of those that follow from the declaration (guards,
 * API-token check, validation, store outage). Keyed by method and route pattern as mounted;
 * a documented route missing here makes the document fail to generate, so a new route
 * cannot ship undescribed (test/integration/openapi.test.ts).
 */

export interface OperationDoc {
  operationId: string;
  summary: string;
  description?: string;
  /** Description of the success response. */
  ok?: string;
  /** Error codes the handler itself can answer, by status. */
  errors?: Partial<Record<number, string[]>>;
  /** Statuses whose answer carries `Retry-After` besides 429 and 503. */
  retryAfter?: number[];
  /** Success responses of routes without a response schema (they answer PEM, not JSON). */
  responses?: Record<number, object>;
}

const pem = (description: string, headers: Record<string, object> = {}) => ({
  description,
  headers,
  content: { "application/x-pem-file": { schema: { type: "string" } } },
});

export const OPERATIONS: Readonly<Record<string, OperationDoc>> = {
  // ---- public (PROTOCOL §4)
  "GET /openapi.json": { operationId: "getOpenapi", summary: "This API description (OpenAPI 3.1)", ok: "The document" },
  "GET /v1/ca/bundle.pem": {
    operationId: "getCaBundle",
    summary: "The trust bundle: every CA certificate a client of this controller must trust",
    responses: {
      200: pem("One or more CA certificates (PEM)", {
        "X-Tether-Bundle-Version": { type: "integer", description: "The bundle's `trust_bundle_version` (PROTOCOL §7.1)" },
      }),
    },
  },
  "GET /v1/ca/crl.pem": {
    operationId: "getCrl",
    summary: "Revocation lists, one per CA of the bundle (PROTOCOL §7.5)",
    responses: { 200: pem("One CRL per CA (PEM)") },
  },
  "GET /.well-known/jwks.json": { operationId: "getJwks", summary: "Public keys of the executor JWTs, the prepublished next key included", ok: "The JWK set" },
  "GET /healthz": { operationId: "getHealth", summary: "Liveness: 200 while the process runs", ok: '`{"status": "ok"}`' },
  "GET /readyz": { operationId: "getReadiness", summary: "Readiness: 200 while the store answers, else 503 UNAVAILABLE", ok: '`{"status": "ready"}`' },

  // ---- executor plane (PROTOCOL §3)
  "POST /v1/executors/register": {
    operationId: "registerExecutor",
    summary: "Register an executor: an enrollment token and a CSR for a certificate, a JWT and an HMAC key",
    description: "No client certificate: the enrollment token is the credential. Any token problem answers one identical `401 ENROLLMENT_DENIED`. Bodies over 17,280 bytes → 413.",
    ok: "Registered: every credential of the executor (the HMAC key is shown once)",
    errors: { 400: ["INVALID_CSR"], 401: ["ENROLLMENT_DENIED"], 429: ["RATE_LIMITED"] },
  },
  "POST /v1/executors/:id/renew": {
    operationId: "renewCredentials",
    summary: "Renew the JWT; with a CSR also the certificate and the HMAC key",
    description: "Works with a lapsed JWT (mTLS and HMAC only).",
    ok: "New credentials (a certificate and an HMAC key only when a CSR was sent)",
    errors: { 400: ["INVALID_CSR"] },
  },
  "POST /v1/executors/:id/reregister": {
    operationId: "reregisterExecutor",
    summary: "Start a new epoch: new JWT and HMAC key; leases of the old epoch go back to the queue",
    description: "Works with a lapsed JWT (mTLS and HMAC only).",
    ok: "New credentials, `epoch` + 1, always with a new `hmac_key`",
    errors: { 400: ["INVALID_CSR"] },
  },
  "POST /v1/executors/:id/heartbeat": { operationId: "heartbeat", summary: "Report status and held leases; learn when to renew and what to cancel", ok: "The controller's answer" },
  "POST /v1/executors/:id/leases": {
    operationId: "pollLeases",
    summary: "Lease up to `max` tasks, waiting up to `wait_s` seconds for work (long poll)",
    ok: "The leases granted (possibly none)",
    errors: { 429: ["RATE_LIMITED"] },
  },
  "POST /v1/executors/:id/leases/:lease_id/complete": {
    operationId: "completeLease",
    summary: "Report a leased task's result",
    ok: "Recorded",
    errors: { 409: ["STALE_LEASE"] },
  },
  "POST /v1/executors/:id/leases/:lease_id/fail": {
    operationId: "failLease",
    summary: "Report a leased task's failure (retryable or not)",
    ok: "Recorded",
    errors: { 409: ["STALE_LEASE"] },
  },

  // ---- operator plane (PROTOCOL §5)
  "GET /api/v1/whoami": { operationId: "whoami", summary: "The API token making the call: name, role, capabilities" },
  "POST /api/v1/enrollment-tokens": { operationId: "createEnrollmentToken", summary: "Create an enrollment token (shown once)", ok: "Created; `token` is never shown again" },
  "GET /api/v1/enrollment-tokens": { operationId: "listEnrollmentTokens", summary: "List enrollment tokens (no secrets)" },
  "DELETE /api/v1/enrollment-tokens/:id": { operationId: "revokeEnrollmentToken", summary: "Revoke an enrollment token", ok: "Revoked", errors: { 404: ["NOT_FOUND"] } },
  "GET /api/v1/executors": { operationId: "listExecutors", summary: "List executors" },
  "GET /api/v1/executors/:id": { operationId: "getExecutor", summary: "Show one executor", errors: { 404: ["NOT_FOUND"] } },
  "POST /api/v1/executors/:id/revoke": {
    operationId: "revokeExecutor",
    summary: "Revoke an executor: refused from its very next request, its leases go back to the queue",
    ok: "The executor as it is now",
    errors: { 404: ["NOT_FOUND"] },
  },
  "POST /api/v1/executors/:id/drain": { operationId: "drainExecutor", summary: "Drain an executor: no new leases", ok: "The executor as it is now", errors: { 404: ["NOT_FOUND"] } },
  "POST /api/v1/tokens": { operationId: "createApiToken", summary: "Create an API token (shown once)", ok: "Created; `token` is never shown again" },
  "GET /api/v1/tokens": { operationId: "listApiTokens", summary: "List API tokens (no secrets)" },
  "DELETE /api/v1/tokens/:id": { operationId: "revokeApiToken", summary: "Revoke an API token", ok: "Revoked", errors: { 404: ["NOT_FOUND"] } },
  "GET /api/v1/audit": { operationId: "readAudit", summary: "Audit events, newest last, at or after `since`" },
  "POST /api/v1/tasks": { operationId: "submitTask", summary: "Submit a task", ok: "Queued" },
  "GET /api/v1/tasks": { operationId: "listTasks", summary: "List tasks, optionally by status" },
  "GET /api/v1/tasks/:id": { operationId: "getTask", summary: "Show one task", errors: { 404: ["NOT_FOUND"] } },
  "POST /api/v1/tasks/:id/cancel": {
    operationId: "cancelTask",
    summary: "Cancel a task that has not finished",
    ok: "The task as it is now",
    errors: { 404: ["NOT_FOUND"], 409: ["CONFLICT"] },
  },
  "GET /api/v1/ca": { operationId: "getTrustStatus", summary: "The CA set with adoption, and the JWT key ring (PROTOCOL §7)" },
  "POST /api/v1/ca/rotate": { operationId: "rotateCa", summary: "Prepare the next CA (published in the bundle, not signing yet)", ok: "The prepared CA", errors: { 409: ["CONFLICT"] } },
  "POST /api/v1/ca/activate": {
    operationId: "activateCa",
    summary: "Activate the prepared CA once every live executor holds it (or with `force`)",
    ok: "The activated CA (the server certificate is already re-issued)",
    errors: { 409: ["ADOPTION_INCOMPLETE", "CONFLICT"] },
  },
  "POST /api/v1/jwt-keys/rotate": {
    operationId: "rotateJwtKey",
    summary: "Promote the prepublished JWT key and prepublish a new next key",
    ok: "The key ring after the rotation",
    errors: { 409: ["CONFLICT"] },
    retryAfter: [409],
  },
  "POST /api/v1/ws-tickets": {
    operationId: "createWsTicket",
    summary: "A ticket for the live events WebSocket (`GET /api/v1/events`, PROTOCOL §10.1)",
    description: "Single use, valid 30 s, bound to the calling API token (dead once it is revoked or expires). Send it in the socket's first frame: `{\"type\": \"auth\", \"ticket\": …}`.",
    ok: "Created; redeem it within `expires_in_s`",
  },
};
