/**
 * Operator API tokens (PROTOCOL §5): `tet_pat_` + 43 base64url characters (256
 * random bits), shown once, stored only as a SHA-256 hash, with a name, a role, an
 * optional expiry and a revocation time. The database is the source of truth:
 * every request reads the token's row, so a revocation or an expiry made by another
 * process applies to the very next request. Knows nothing of HTTP.
 */
import { TetherError, ErrorCode } from "../../shared/errors.ts";
import { randomB64u, sha256Hex } from "../../shared/random.ts";
import { rfc3339 } from "../../shared/time.ts";
import type { ApiTokenRecord, Store } from "../store/types.ts";
import type { Audit, AuditFields } from "./audit.ts";
import { isRole } from "./capabilities.ts";
import { API_TOKEN_NAME_PATTERN, MAX_API_TOKEN_TTL_S, type ApiTokenView, type CreatedApiToken, type Role } from "../../shared/wire/operator.ts";


export const API_TOKEN_PREFIX = "tet_pat_";
const TOKEN_RE = /^tet_pat_[A-Za-z0-9_-]{43}$/;
const JWT_SHAPE = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$/;
const API_TOKEN_NAME_RE = new RegExp(API_TOKEN_NAME_PATTERN);

/** Who is calling on the operator plane, once the token checked out. */
export interface OperatorPrincipal {
  tokenId: string;
  name: string;
  role: Role;
  expiresAt: number | null;
}

/** Why authentication failed. Never sent to the caller (one 401 body for all); audited. */
export type AuthFailure = "missing" | "malformed" | "executor_jwt" | "enrollment_token" | "unknown" | "expired" | "revoked";

export type AuthResult = { ok: true; principal: OperatorPrincipal } | { ok: false; reason: AuthFailure; tokenId?: string };

export interface CreateApiToken {
  name: string;
  role: Role | string;
  ttlSeconds?: number;
}

/** The audit `actor` of a request made with an API token. */
export function operatorActor(p: OperatorPrincipal): AuditFields {
  return { actor: { type: "api_token", id: p.tokenId, name: p.name, role: p.role } };
}

/** The SHA-256 stored for a well-formed API token; undefined for anything else. */
export function hashApiToken(token: string): string | undefined {
  return TOKEN_RE.test(token) ? sha256Hex(token) : undefined;
}

function classify(presented: string): AuthFailure {
  if (presented.startsWith("tet_enr_")) return "enrollment_token";
  if (JWT_SHAPE.test(presented)) return "executor_jwt";
  return "malformed";
}

const invalid = (message: string) => new TetherError(400, ErrorCode.INVALID_REQUEST, message);

export class ApiTokens {
  constructor(
    private readonly store: Store,
    private readonly audit: Audit,
  ) {}

  /** Mints a token; `createdBy` is recorded with it (`api_token:<id>`, `cli:<user>`). */
  async create(req: CreateApiToken, createdBy: string, who: AuditFields): Promise<CreatedApiToken> {
    const created = await this.mint(req, createdBy, false);
    if (!created) throw new Error("unreachable: unconditional insert refused");
    this.audit.event("api_token.created", { token_id: created.id, name: created.name, role: created.role, expires_at: created.expires_at, ...who });
    return created;
  }

  /**
   * The first admin token. Refused (undefined) while an active admin token exists;
   * atomic, so two concurrent bootstraps produce exactly one token.
   */
  async bootstrap(req: { name?: string; ttlSeconds?: number }, createdBy: string, who: AuditFields): Promise<CreatedApiToken | undefined> {
    const created = await this.mint({ name: req.name ?? "bootstrap-admin", role: "admin", ttlSeconds: req.ttlSeconds }, createdBy, true);
    if (!created) {
      this.audit.event("api_token.bootstrap_refused", { reason: "an active admin token exists", ...who });
      return undefined;
    }
    this.audit.event("api_token.bootstrapped", { token_id: created.id, name: created.name, role: created.role, expires_at: created.expires_at, ...who });
    return created;
  }

  async list(now = Date.now()): Promise<ApiTokenView[]> {
    return (await this.store.listApiTokens()).map((t) => this.view(t, now));
  }

  async show(id: string): Promise<ApiTokenView | undefined> {
    const t = await this.store.getApiToken(id);
    return t && this.view(t);
  }

  async revoke(id: string, who: AuditFields): Promise<boolean> {
    const t = await this.store.getApiToken(id);
    if (!t || !(await this.store.revokeApiToken(id, Date.now()))) return false;
    this.audit.event("api_token.revoked", { token_id: id, name: t.name, role: t.role, ...who });
    return true;
  }

  /**
   * Checks a presented bearer token against the database and records the use.
   * The first use from an address other than the previous one is audited.
   */
  async authenticate(presented: string | undefined, ip: string, now = Date.now()): Promise<AuthResult> {
    if (!presented) return { ok: false, reason: "missing" };
    const hash = hashApiToken(presented);
    if (!hash) return { ok: false, reason: classify(presented) };
    const t = await this.store.getApiTokenByHash(hash);
    if (!t) return { ok: false, reason: "unknown" };
    if (t.revokedAt !== null) return { ok: false, reason: "revoked", tokenId: t.id };
    if (t.expiresAt !== null && t.expiresAt <= now) return { ok: false, reason: "expired", tokenId: t.id };
    if (!isRole(t.role)) return { ok: false, reason: "unknown", tokenId: t.id };
    const { previousIp } = await this.store.touchApiToken(t.id, ip, now);
    const principal: OperatorPrincipal = { tokenId: t.id, name: t.name, role: t.role, expiresAt: t.expiresAt };
    if (previousIp !== ip) {
      this.audit.event("api_token.new_address", {
        ...operatorActor(principal), token_id: t.id, source: ip, previous_source: previousIp, first_use: previousIp === null,
      });
    }
    return { ok: true, principal };
  }

  private async mint(req: CreateApiToken, createdBy: string, onlyIfNoActiveAdmin: boolean): Promise<CreatedApiToken | undefined> {
    if (typeof req.name !== "string" || !API_TOKEN_NAME_RE.test(req.name)) throw invalid("name must be 1 to 64 printable characters");
    if (!isRole(req.role)) throw invalid("role must be admin, operator or viewer");
    const ttl = req.ttlSeconds;
    if (ttl !== undefined && (!Number.isInteger(ttl) || ttl < 1 || ttl > MAX_API_TOKEN_TTL_S)) {
      throw invalid(`ttl must be between 1 s and ${MAX_API_TOKEN_TTL_S} s`);
    }
    const token = API_TOKEN_PREFIX + randomB64u(32);
    const id = "tok_" + randomB64u(9);
    const now = Date.now();
    const expiresAt = ttl === undefined ? null : now + ttl * 1000;
    const ok = await this.store.insertApiToken(
      {
        id, name: req.name, role: req.role, tokenHash: sha256Hex(token), createdAt: now, createdBy,
        expiresAt, revokedAt: null, lastUsedAt: null, lastUsedIp: null,
      },
      { onlyIfNoActiveAdmin },
    );
    if (!ok) return undefined;
    return { id, token, name: req.name, role: req.role, expires_at: expiresAt === null ? null : rfc3339(expiresAt) };
  }

  private view(t: ApiTokenRecord, now = Date.now()): ApiTokenView {
    return {
      id: t.id,
      name: t.name,
      role: t.role,
      state: t.revokedAt !== null ? "revoked" : t.expiresAt !== null && t.expiresAt <= now ? "expired" : "active",
      created_at: rfc3339(t.createdAt),
      created_by: t.createdBy,
      expires_at: t.expiresAt === null ? null : rfc3339(t.expiresAt),
      revoked: t.revokedAt !== null,
      last_used_at: t.lastUsedAt === null ? null : rfc3339(t.lastUsedAt),
      last_used_ip: t.lastUsedIp,
    };
  }
}
