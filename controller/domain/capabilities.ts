/**
 * The one table of who may do what on the operator plane (PROTOCOL §5). Every
 * `/api/v1` route declares the capability it needs; the server refuses to start
 * when a route declares none, or one that is not listed here.
 */
import { CAPABILITIES, ROLES, type Capability, type Role } from "../../shared/wire/operator.ts";

const READS: Capability[] = ["self:read", "executors:read", "enrollment_tokens:read", "tasks:read", "trust:read", "events:read"];

/**
 * admin: everything. operator: tasks, drain, enrollment tokens, and every read.
 * viewer: read only. API tokens and the audit log are admin business: listing
 * tokens or reading the audit trail is not a "read" a viewer gets.
 */
export const ROLE_CAPABILITIES: Readonly<Record<Role, ReadonlySet<Capability>>> = {
  admin: new Set(CAPABILITIES),
  operator: new Set<Capability>([...READS, "tasks:write", "executors:drain", "enrollment_tokens:write"]),
  viewer: new Set<Capability>(READS),
};

export function isRole(v: unknown): v is Role {
  return typeof v === "string" && (ROLES as readonly string[]).includes(v);
}

export function isCapability(v: unknown): v is Capability {
  return typeof v === "string" && (CAPABILITIES as readonly string[]).includes(v);
}

export function roleHas(role: Role, capability: Capability): boolean {
  return ROLE_CAPABILITIES[role]?.has(capability) ?? false;
}

export function capabilitiesOf(role: Role): Capability[] {
  return CAPABILITIES.filter((c) => roleHas(role, c));
}
