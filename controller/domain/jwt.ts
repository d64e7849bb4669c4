/**
 * Executor JWTs: EdDSA (Ed25519), bound to the client certificate (RFC 8705
 * `cnf.x5t#S256`), signed by the key ring's active key and verified under whichever
 * ring key its `kid` names. Minting and verification use node:crypto directly (about
 * twice as fast as WebCrypto); a verified token is cached until it expires so
 * heartbeats do not pay a signature check each time.
 */
import { sign as edSign, verify as edVerify } from "node:crypto";
import { randomB64u } from "../../shared/random.ts";
import { JWT_AUDIENCE, controllerIssuer } from "../../shared/protocol.ts";
import type { CertThumbprint } from "../../shared/fingerprint.ts";
import { reject, validateExecutorClaims, type ExecutorClaims, type Rejection } from "./executor-auth.ts";
import type { JwtKeys } from "./trust/jwt-ring.ts";

export type { ExecutorClaims };

export type JwtCheck = { ok: true; claims: ExecutorClaims } | Rejection;

const b64uJson = (v: unknown) => Buffer.from(JSON.stringify(v)).toString("base64url");

export class ExecutorJwt {
  private readonly issuer: string;
  /** token → claims (and the kid that signed it), only for tokens whose signature verified. */
  private readonly verified = new Map<string, { claims: ExecutorClaims; kid: string }>();
  private readonly maxCache: number;

  constructor(
    private readonly keys: JwtKeys,
    trustDomain: string,
    private readonly ttlSeconds: number,
    opts: { maxCache?: number } = {},
  ) {
    this.issuer = controllerIssuer(trustDomain);
    this.maxCache = opts.maxCache ?? 200_000;
  }

  mint(sub: string, epoch: number, thumbprint: CertThumbprint, nowMs = Date.now()): { jwt: string; claims: ExecutorClaims } {
    const iat = Math.floor(nowMs / 1000);
    const claims: ExecutorClaims = {
      iss: this.issuer, aud: JWT_AUDIENCE, sub, epoch, iat, exp: iat + this.ttlSeconds,
      jti: randomB64u(16), cnf: { "x5t#S256": thumbprint },
    };
    const key = this.keys.signing();
    const signingInput = `${b64uJson({ alg: "EdDSA", typ: "JWT", kid: key.kid })}.${b64uJson(claims)}`;
    const sig = edSign(null, Buffer.from(signingInput), key.privateKey).toString("base64url");
    return { jwt: `${signingInput}.${sig}`, claims };
  }

  /**
   * Like jose's jwtVerify: the signature (checked once, then cached until the token
   * expires), then the claims against what this request expects (a pure rule, on every
   * use). The epoch is the caller's to compare: it changes in the store, not in the token.
   */
  verify(token: string, expected: { sub: string; thumbprint: CertThumbprint }, nowMs = Date.now()): JwtCheck {
    const cached = this.verified.get(token);
    let claims: ExecutorClaims;
    // A cached token still needs its key in the ring: a key that left it verifies nothing.
    if (cached && this.keys.verifying(cached.kid)) claims = cached.claims;
    else {
      const parsed = this.verifySignature(token);
      if (!parsed.ok) return parsed;
      claims = parsed.claims;
      if (claims.exp * 1000 > nowMs) this.cache(token, claims, parsed.kid, nowMs);
    }
    const verdict = validateExecutorClaims(claims, { issuer: this.issuer, audience: JWT_AUDIENCE, sub: expected.sub, thumbprint: expected.thumbprint }, nowMs);
    if (verdict.ok) return { ok: true, claims };
    if (verdict.code === "TOKEN_EXPIRED") this.verified.delete(token);
    return verdict;
  }

  private verifySignature(token: string): { ok: true; claims: ExecutorClaims; kid: string } | Rejection {
    const bad = (reason: string): Rejection => reject("TOKEN_INVALID", reason);
    if (token.length > 4096) return bad("too long");
    const [h64, p64, s64, ...extra] = token.split(".");
    if (h64 === undefined || p64 === undefined || s64 === undefined || extra.length > 0) return bad("malformed");
    let header: { alg?: unknown; kid?: unknown; crit?: unknown };
    let claims: ExecutorClaims;
    try {
      header = JSON.parse(Buffer.from(h64, "base64url").toString("utf8"));
      claims = JSON.parse(Buffer.from(p64, "base64url").toString("utf8"));
    } catch {
      return bad("malformed");
    }
    // The reason goes to the audit log: never echo what the client chose.
    if (header?.alg !== "EdDSA") return bad("alg not allowed");
    const publicKey = typeof header.kid === "string" ? this.keys.verifying(header.kid) : undefined;
    if (!publicKey || typeof header.kid !== "string") return bad("unknown kid");
    if (header.crit !== undefined) return bad("crit not supported");
    const sig = Buffer.from(s64, "base64url");
    if (sig.length !== 64) return bad("bad signature");
    if (!edVerify(null, Buffer.from(`${h64}.${p64}`), publicKey, sig)) return bad("bad signature");
    if (
      typeof claims !== "object" || claims === null || typeof claims.sub !== "string" ||
      typeof claims.epoch !== "number" || typeof claims.exp !== "number" || typeof claims.iat !== "number"
    ) {
      return bad("missing claims");
    }
    return { ok: true, claims, kid: header.kid };
  }

  private cache(token: string, claims: ExecutorClaims, kid: string, nowMs: number): void {
    if (this.verified.size >= this.maxCache) this.pruneCache(nowMs);
    if (this.verified.size >= this.maxCache) this.verified.clear();
    this.verified.set(token, { claims, kid });
  }

  pruneCache(nowMs = Date.now()): void {
    for (const [t, c] of this.verified) if (c.claims.exp * 1000 <= nowMs) this.verified.delete(t);
  }

  get cacheSize(): number {
    return this.verified.size;
  }
}
