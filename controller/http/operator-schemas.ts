/**
 * JSON schemas of the operator plane (PROTOCOL §5): request validation and fast
 * response serialization. Response schemas list fields explicitly, so a field
 * that is not declared — a secret, say — can never be serialized by accident.
 */
import { AUDIT_MAX_LIMIT } from "../domain/audit-reader.ts";
import { MAX_API_TOKEN_TTL_S } from "../domain/api-tokens.ts";
import { CAPABILITIES, ROLES } from "../domain/capabilities.ts";
import { bool, idParams, int, labels, noBody, str } from "./schema-parts.ts";

const nullableStr = { type: ["string", "null"] } as const;
const stringMap = { type: "object", additionalProperties: { type: "string" } } as const;



const revokedResponse = {
  type: "object",
  properties: { id: str, revoked: bool },
} as const;

export const whoamiSchema = {
  response: {
    200: {
      type: "object",
      properties: {
        id: str, name: str, role: { type: "string", enum: [...ROLES] },
        capabilities: { type: "array", items: { type: "string", enum: [...CAPABILITIES] } },
        expires_at: nullableStr,
      },
    },
  },
} as const;

// ---- enrollment tokens

const enrollmentTokenView = {
  type: "object",
  properties: {
    id: str, state: str, created_at: str, expires_at: str, max_uses: int, uses: int, revoked: bool, labels: stringMap,
  },
} as const;

export const createEnrollmentTokenSchema = {
  body: {
    anyOf: [
      { type: "null" },
      {
        type: "object",
        properties: {
          ttl_s: { type: "integer", minimum: 1, maximum: 365 * 86400 },
          max_uses: { type: "integer", minimum: 1, maximum: 1_000_000 },
          labels,
        },
      },
    ],
  },
  response: {
    201: { type: "object", properties: { id: str, token: str, expires_at: str, max_uses: int } },
  },
} as const;

export const listEnrollmentTokensSchema = {
  response: { 200: { type: "object", properties: { enrollment_tokens: { type: "array", items: enrollmentTokenView } } } },
} as const;

export const revokeEnrollmentTokenSchema = { params: idParams, response: { 200: revokedResponse } } as const;

// ---- executors

const executorView = {
  type: "object",
  properties: {
    id: str, name: str, epoch: int, status: str, labels: stringMap, capacity: int, cert_expires_at: str,
    last_seen_at: nullableStr, revoked: bool, drain: bool, created_at: str,
  },
} as const;

export const listExecutorsSchema = {
  response: { 200: { type: "object", properties: { executors: { type: "array", items: executorView } } } },
} as const;

export const showExecutorSchema = { params: idParams, response: { 200: executorView } } as const;
export const executorActionSchema = { params: idParams, body: noBody, response: { 200: executorView } } as const;

// ---- API tokens

const apiTokenView = {
  type: "object",
  properties: {
    id: str, name: str, role: str, state: str, created_at: str, created_by: str, expires_at: nullableStr,
    revoked: bool, last_used_at: nullableStr, last_used_ip: nullableStr,
  },
} as const;

export const createApiTokenSchema = {
  body: {
    type: "object",
    required: ["name", "role"],
    properties: {
      name: { type: "string", minLength: 1, maxLength: 64, pattern: "^[^\\u0000-\\u001f\\u007f]+$" },
      role: { type: "string", enum: [...ROLES] },
      ttl_s: { type: "integer", minimum: 1, maximum: MAX_API_TOKEN_TTL_S },
    },
  },
  response: {
    201: { type: "object", properties: { id: str, token: str, name: str, role: str, expires_at: nullableStr } },
  },
} as const;

export const listApiTokensSchema = {
  response: { 200: { type: "object", properties: { tokens: { type: "array", items: apiTokenView } } } },
} as const;

export const revokeApiTokenSchema = { params: idParams, response: { 200: revokedResponse } } as const;

// ---- audit

export const auditSchema = {
  querystring: {
    type: "object",
    properties: {
      // Query values arrive as strings and the server does not coerce types.
      since: { type: "string", maxLength: 64, pattern: "^\\d{4}-\\d{2}-\\d{2}[Tt]\\d{2}:\\d{2}:\\d{2}(\\.\\d+)?([Zz]|[+-]\\d{2}:\\d{2})$" },
      limit: { type: "string", pattern: `^[0-9]{1,${String(AUDIT_MAX_LIMIT).length}}$` },
    },
  },
  response: {
    200: {
      type: "object",
      properties: { events: { type: "array", items: { type: "object", additionalProperties: true } } },
    },
  },
} as const;
