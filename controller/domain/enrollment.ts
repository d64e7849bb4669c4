/** Enrollment tokens (PROTOCOL §3.1): created, listed, revoked; stored only as hashes. */
import { randomB64u, sha256Hex } from "../../shared/random.ts";
import { rfc3339 } from "../../shared/time.ts";
import { TetherError, ErrorCode } from "../../shared/errors.ts";
import type { Store } from "../store/types.ts";
import type { Audit, AuditFields } from "./audit.ts";
import {
  ENROLLMENT_TOKEN_MAX_TTL_S, ENROLLMENT_TOKEN_MAX_USES, type CreatedEnrollmentToken, type EnrollmentTokenView,
} from "../../shared/wire/operator.ts";


export const ENROLLMENT_TOKEN_PREFIX = "tet_enr_";
const TOKEN_RE = /^tet_enr_[A-Za-z0-9_-]{32,128}$/;

export interface CreateEnrollmentToken {
  ttlSeconds?: number;
  maxUses?: number;
  labels?: Record<string, string>;
}

export function hashEnrollmentToken(token: string): string | undefined {
  return TOKEN_RE.test(token) ? sha256Hex(token) : undefined;
}

export class EnrollmentTokens {
  constructor(
    private readonly store: Store,
    private readonly audit: Audit,
  ) {}

  async create(req: CreateEnrollmentToken, who: AuditFields): Promise<CreatedEnrollmentToken> {
    const ttl = req.ttlSeconds ?? 3600;
    const maxUses = req.maxUses ?? 1;
    if (!Number.isInteger(ttl) || ttl < 1 || ttl > ENROLLMENT_TOKEN_MAX_TTL_S) throw new TetherError(400, ErrorCode.INVALID_REQUEST, "ttl must be between 1 s and 365 d");
    if (!Number.isInteger(maxUses) || maxUses < 1 || maxUses > ENROLLMENT_TOKEN_MAX_USES) {
      throw new TetherError(400, ErrorCode.INVALID_REQUEST, `max uses must be between 1 and ${ENROLLMENT_TOKEN_MAX_USES}`);
    }
    const token = ENROLLMENT_TOKEN_PREFIX + randomB64u(32);
    const id = "enr_" + randomB64u(9);
    const now = Date.now();
    await this.store.insertEnrollmentToken({
      id, tokenHash: sha256Hex(token), createdAt: now, expiresAt: now + ttl * 1000,
      maxUses, uses: 0, revokedAt: null, labels: req.labels ?? {},
    });
    this.audit.event("enrollment_token.created", { token_id: id, ttl_s: ttl, max_uses: maxUses, labels: req.labels ?? {}, ...who });
    return { id, token, expires_at: rfc3339(now + ttl * 1000), max_uses: maxUses };
  }

  async list(now = Date.now()): Promise<EnrollmentTokenView[]> {
    return (await this.store.listEnrollmentTokens()).map((t) => ({
      id: t.id,
      created_at: rfc3339(t.createdAt),
      expires_at: rfc3339(t.expiresAt),
      max_uses: t.maxUses,
      uses: t.uses,
      revoked: t.revokedAt !== null,
      labels: t.labels,
      state: t.revokedAt !== null ? "revoked" : t.expiresAt <= now ? "expired" : t.uses >= t.maxUses ? "used_up" : "active",
    }));
  }

  async revoke(id: string, who: AuditFields): Promise<boolean> {
    const ok = await this.store.revokeEnrollmentToken(id, Date.now());
    if (ok) this.audit.event("enrollment_token.revoked", { token_id: id, ...who });
    return ok;
  }
}
