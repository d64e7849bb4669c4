/**
 * The operator plane (PROTOCOL §5): request and response shapes and their limits, written
 * once. Response schemas list every field, so a field that is not declared — a secret,
 * say — can never be serialized by accident.
 */
import { Type, type Static } from "typebox";
import { Bool, IdParams, Int, Labels, NoBody, NullableObject, NullableStr, OptionalBody, Str, StringEnum, StringMap, Time } from "./parts.ts";

export const ROLES = ["admin", "operator", "viewer"] as const;
export type Role = (typeof ROLES)[number];

export const CAPABILITIES = [
  /** `GET /api/v1/whoami`: any valid token may see who it is. */
  "self:read",
  "executors:read",
  "executors:drain",
  "executors:revoke",
  "enrollment_tokens:read",
  "enrollment_tokens:write",
  "tasks:read",
  "tasks:write",
  "api_tokens:read",
  "api_tokens:write",
  "audit:read",
  /** The trust bundle, CAs, JWT keys and adoption (PROTOCOL §7): viewers may look. */
  "trust:read",
  /** Rotate and activate CAs, rotate JWT keys: admins only. */
  "trust:write",
  /** Live events (PROTOCOL §10.1): WebSocket tickets and the stream; every role. */
  "events:read",
] as const;
export type Capability = (typeof CAPABILITIES)[number];

// ---- limits (the domain checks the same numbers when called without HTTP)
export const ENROLLMENT_TOKEN_MAX_TTL_S = 365 * 86400;
export const ENROLLMENT_TOKEN_MAX_USES = 1_000_000;
export const MAX_API_TOKEN_TTL_S = 5 * 365 * 86400;
/** 1 to 64 characters, no control characters (C0, DEL, C1). */
export const API_TOKEN_NAME_PATTERN = "^[^\\u0000-\\u001f\\u007f-\\u009f]{1,64}$";
export const AUDIT_DEFAULT_LIMIT = 100;
export const AUDIT_MAX_LIMIT = 1000;
export const TASK_KIND_PATTERN = "^[a-z][a-z0-9_.-]{0,63}$";
export const TASK_MAX_TIMEOUT_S = 7 * 86400;
export const TASK_MAX_ATTEMPTS = 100;
export const TASK_LIST_DEFAULT_LIMIT = 100;
export const TASK_LIST_MAX_LIMIT = 1000;
export const TASK_STATUSES = ["queued", "leased", "succeeded", "failed", "cancelled"] as const;
export type TaskStatus = (typeof TASK_STATUSES)[number];
export const TERMINAL_STATUSES: readonly TaskStatus[] = ["succeeded", "failed", "cancelled"];


export const RoleSchema = StringEnum(ROLES);
export const TaskStatusSchema = StringEnum(TASK_STATUSES);

export const Revoked = Type.Object({ id: Str, revoked: Bool });

export const Whoami = Type.Object({
  id: Str,
  name: Str,
  role: RoleSchema,
  capabilities: Type.Array(StringEnum(CAPABILITIES)),
  expires_at: NullableStr,
});
export type Whoami = Static<typeof Whoami>;

// ---- enrollment tokens

export const CreateEnrollmentToken = Type.Object({
  ttl_s: Type.Optional(Type.Integer({ minimum: 1, maximum: ENROLLMENT_TOKEN_MAX_TTL_S })),
  max_uses: Type.Optional(Type.Integer({ minimum: 1, maximum: ENROLLMENT_TOKEN_MAX_USES })),
  labels: Type.Optional(Labels),
}, { examples: [{ ttl_s: 3600, max_uses: 1, labels: { pool: "linux-amd64" } }] });
export type CreateEnrollmentToken = Static<typeof CreateEnrollmentToken>;

export const CreatedEnrollmentToken = Type.Object({ id: Str, token: Str, expires_at: Time, max_uses: Int });
export type CreatedEnrollmentToken = Static<typeof CreatedEnrollmentToken>;

export const EnrollmentTokenView = Type.Object({
  id: Str,
  state: StringEnum(["active", "expired", "used_up", "revoked"]),
  created_at: Time,
  expires_at: Time,
  max_uses: Int,
  uses: Int,
  revoked: Bool,
  labels: StringMap,
});
export type EnrollmentTokenView = Static<typeof EnrollmentTokenView>;

// ---- executors

export const ExecutorLiveness = StringEnum(["ready", "draining", "suspect", "offline", "revoked"]);
export type ExecutorLiveness = Static<typeof ExecutorLiveness>;

export const ExecutorView = Type.Object({
  id: Str,
  name: Str,
  epoch: Int,
  status: ExecutorLiveness,
  labels: StringMap,
  capacity: Int,
  cert_expires_at: Time,
  last_seen_at: NullableStr,
  revoked: Bool,
  drain: Bool,
  created_at: Time,
});
export type ExecutorView = Static<typeof ExecutorView>;

// ---- API tokens

export const CreateApiToken = Type.Object({
  name: Type.String({ minLength: 1, maxLength: 64, pattern: API_TOKEN_NAME_PATTERN }),
  role: RoleSchema,
  ttl_s: Type.Optional(Type.Integer({ minimum: 1, maximum: MAX_API_TOKEN_TTL_S })),
}, { examples: [{ name: "ci-deploy", role: "operator", ttl_s: 30 * 86400 }] });
export type CreateApiToken = Static<typeof CreateApiToken>;

export const CreatedApiToken = Type.Object({ id: Str, token: Str, name: Str, role: RoleSchema, expires_at: NullableStr });
export type CreatedApiToken = Static<typeof CreatedApiToken>;

export const ApiTokenView = Type.Object({
  id: Str,
  name: Str,
  role: RoleSchema,
  state: StringEnum(["active", "expired", "revoked"]),
  created_at: Time,
  created_by: Str,
  expires_at: NullableStr,
  revoked: Bool,
  last_used_at: NullableStr,
  last_used_ip: NullableStr,
});
export type ApiTokenView = Static<typeof ApiTokenView>;

// ---- tasks

export const SubmitTask = Type.Object({
  kind: Type.String({ pattern: TASK_KIND_PATTERN }),
  payload: Type.Unknown(),
  selector: Type.Optional(Labels),
  timeout_s: Type.Optional(Type.Integer({ minimum: 1, maximum: TASK_MAX_TIMEOUT_S })),
  max_attempts: Type.Optional(Type.Integer({ minimum: 1, maximum: TASK_MAX_ATTEMPTS })),
}, {
  examples: [{ kind: "command", payload: { argv: ["echo", "hello"] }, selector: { pool: "linux-amd64" }, timeout_s: 300, max_attempts: 3 }],
});
export type SubmitTask = Static<typeof SubmitTask>;

export const TaskView = Type.Object({
  id: Str,
  kind: Str,
  payload: Type.Unknown(),
  selector: StringMap,
  status: TaskStatusSchema,
  attempts: Int,
  max_attempts: Int,
  timeout_s: Int,
  created_at: Time,
  updated_at: Time,
  finished_at: NullableStr,
  executor_id: NullableStr,
  lease_expires_at: NullableStr,
  result: NullableObject,
  error: NullableStr,
});
export type TaskView = Static<typeof TaskView>;

export const TaskListQuery = Type.Object({
  status: Type.Optional(StringEnum(TASK_STATUSES, { examples: ["queued"] })),
  // Query values arrive as strings and the server does not coerce types.
  limit: Type.Optional(Type.String({ pattern: "^[0-9]{1,4}$", examples: ["100"] })),
});

// ---- trust (PROTOCOL §7)

export const CaState = StringEnum(["prepared", "active", "retired"]);
export type CaState = Static<typeof CaState>;
export const JwtKeyState = StringEnum(["next", "active", "retired"]);
export type JwtKeyState = Static<typeof JwtKeyState>;

export const CaView = Type.Object({
  fingerprint_sha256: Str,
  state: CaState,
  not_before: Time,
  not_after: Time,
  /** Executors (not revoked) that have reported a bundle version holding this CA. */
  adopted_by: Int,
  /** Executors that are neither offline nor revoked and have not adopted it yet. */
  pending: Type.Array(Str),
});
export type CaView = Static<typeof CaView>;

export const JwtKeyView = Type.Object({ kid: Str, state: JwtKeyState, created_at: Time });
export type JwtKeyView = Static<typeof JwtKeyView>;

export const TrustStatus = Type.Object({
  trust_bundle_version: Int,
  cas: Type.Array(CaView),
  jwt_keys: Type.Array(JwtKeyView),
});
export type TrustStatus = Static<typeof TrustStatus>;

// The example waits for adoption; `force: true` activates past executors still pending (docs/trust-lifecycle.md).
export const ActivateCa = Type.Object({ force: Type.Optional(Bool) }, { examples: [{ force: false }] });

// ---- audit

export const AuditQuery = Type.Object({
  since: Type.Optional(Type.String({
    maxLength: 64, pattern: "^\\d{4}-\\d{2}-\\d{2}[Tt]\\d{2}:\\d{2}:\\d{2}(\\.\\d+)?([Zz]|[+-]\\d{2}:\\d{2})$", examples: ["2026-01-01T00:00:00Z"],
  })),
  limit: Type.Optional(Type.String({ pattern: `^[0-9]{1,${String(AUDIT_MAX_LIMIT).length}}$`, examples: ["100"] })),
});

export const AuditEvent = Type.Unsafe<{ time: string; event: string } & Record<string, unknown>>({ type: "object", additionalProperties: true });
export type AuditEvent = Static<typeof AuditEvent>;

/** Route schemas of the operator plane. */
/** `POST /api/v1/ws-tickets` (PROTOCOL §5, §10.1): single use, valid `expires_in_s`. */
export const WsTicket = Type.Object({ ticket: Str, expires_in_s: Int }, { additionalProperties: false });
export type WsTicket = Static<typeof WsTicket>;

export const operatorRouteSchemas = {
  whoami: { response: { 200: Whoami } },
  createEnrollmentToken: { body: OptionalBody(CreateEnrollmentToken), response: { 201: CreatedEnrollmentToken } },
  listEnrollmentTokens: { response: { 200: Type.Object({ enrollment_tokens: Type.Array(EnrollmentTokenView) }) } },
  revokeEnrollmentToken: { params: IdParams, response: { 200: Revoked } },
  listExecutors: { response: { 200: Type.Object({ executors: Type.Array(ExecutorView) }) } },
  showExecutor: { params: IdParams, response: { 200: ExecutorView } },
  executorAction: { params: IdParams, body: NoBody, response: { 200: ExecutorView } },
  createApiToken: { body: CreateApiToken, response: { 201: CreatedApiToken } },
  listApiTokens: { response: { 200: Type.Object({ tokens: Type.Array(ApiTokenView) }) } },
  revokeApiToken: { params: IdParams, response: { 200: Revoked } },
  submitTask: { body: SubmitTask, response: { 201: TaskView } },
  listTasks: { querystring: TaskListQuery, response: { 200: Type.Object({ tasks: Type.Array(TaskView) }) } },
  showTask: { params: IdParams, response: { 200: TaskView } },
  cancelTask: { params: IdParams, body: NoBody, response: { 200: TaskView } },
  audit: { querystring: AuditQuery, response: { 200: Type.Object({ events: Type.Array(AuditEvent) }) } },
  trustStatus: { response: { 200: TrustStatus } },
  rotateCa: { body: NoBody, response: { 201: CaView } },
  activateCa: { body: OptionalBody(ActivateCa), response: { 200: CaView } },
  rotateJwtKey: { body: NoBody, response: { 201: Type.Object({ jwt_keys: Type.Array(JwtKeyView) }) } },
  createWsTicket: { body: NoBody, response: { 201: WsTicket } },
} as const;
