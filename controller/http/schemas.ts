/** JSON schemas of the executor plane: validation of requests, fast serialization of responses. */
import { idParams, int, labels, str } from "./schema-parts.ts";

export const registerSchema = {
  body: {
    type: "object",
    required: ["enrollment_token", "csr_pem"],
    properties: {
      enrollment_token: { type: "string", maxLength: 256 },
      csr_pem: { type: "string", maxLength: 16384 },
      name: { type: "string", minLength: 1, maxLength: 64 },
      labels,
      capacity: { type: "integer", minimum: 1, maximum: 1024 },
    },
  },
  response: {
    201: {
      type: "object",
      properties: {
        executor_id: str, epoch: int, certificate_pem: str, ca_bundle_pem: str, cert_expires_at: str,
        jwt: str, jwt_expires_at: str, hmac_key: str, heartbeat_interval_s: int,
      },
    },
  },
} as const;

const credentialsResponse = {
  type: "object",
  properties: {
    epoch: int, jwt: str, jwt_expires_at: str, cert_expires_at: str, ca_bundle_pem: str, certificate_pem: str,
  },
} as const;


export const renewSchema = {
  params: idParams,
  body: { type: "object", properties: { csr_pem: { type: "string", maxLength: 16384 } } },
  response: { 200: credentialsResponse },
} as const;

export const reregisterSchema = renewSchema;

export const heartbeatSchema = {
  params: idParams,
  body: {
    type: "object",
    required: ["status", "running", "capacity", "leases"],
    properties: {
      status: { type: "string", enum: ["ready", "draining"] },
      running: { type: "integer", minimum: 0 },
      capacity: { type: "integer", minimum: 0 },
      leases: { type: "array", maxItems: 1024, items: { type: "string", maxLength: 128 } },
    },
  },
  response: {
    200: {
      type: "object",
      properties: {
        server_time: str, next_heartbeat_s: int, jwt_renew_after: str, cert_renew_after: str,
        drain: { type: "boolean" }, cancel_leases: { type: "array", items: str },
      },
    },
  },
} as const;

const leaseParams = {
  type: "object",
  required: ["id", "lease_id"],
  properties: { id: idParams.properties.id, lease_id: { type: "string", pattern: "^[A-Za-z0-9_-]{1,128}$" } },
} as const;

export const leasesSchema = {
  params: idParams,
  body: {
    type: "object",
    required: ["max", "wait_s"],
    properties: { max: { type: "integer", minimum: 1, maximum: 64 }, wait_s: { type: "integer", minimum: 0, maximum: 30 } },
  },
  response: {
    200: {
      type: "object",
      properties: {
        leases: {
          type: "array",
          items: {
            type: "object",
            properties: { lease_id: str, task_id: str, kind: str, payload: {}, expires_at: str },
          },
        },
      },
    },
  },
} as const;

export const leaseCompleteSchema = {
  params: leaseParams,
  body: { type: "object", required: ["result"], properties: { result: { type: "object" } } },
  response: { 200: { type: "object", properties: {} } },
} as const;

export const leaseFailSchema = {
  params: leaseParams,
  body: {
    type: "object",
    required: ["error", "retryable"],
    properties: { error: { type: "string", maxLength: 65536 }, retryable: { type: "boolean" } },
  },
  response: { 200: { type: "object", properties: {} } },
} as const;
