/**
 * Executor JWTs: EdDSA (Ed25519), bound to the client certificate (RFC 8705
 * `cnf.x5t#S256`). Minting and verification use node:crypto directly (about
 * twice as fast as WebCrypto); a verified token is cached until it expires so
 * heartbeats do not pay a signature check each time.
 */
import { sign as edSign, verify as edVerify, type KeyObject } from "node:crypto";
import { randomB64u } from "../../shared/random.ts";
import { JWT_AUDIENCE, controllerIssuer } from "../../shared/protocol.ts";

export interface ExecutorClaims {
  iss: string;
  aud: string;
  sub: string;
  epoch: number;
  iat: number;
  exp: number;
  jti: string;
  cnf: { "x5t#S256": string };
}

export interface JwtKeys {
  kid: string;
  privateKey: KeyObject;
  publicKey: KeyObject;
}

export type JwtCheck =
  | { ok: true; claims: ExecutorClaims }
  | { ok: false; code: "TOKEN_INVALID" | "TOKEN_EXPIRED"; reason: string };

const b64uJson = (v: unknown) => Buffer.from(JSON.stringify(v)).toString("base64url");

export class ExecutorJwt {
  private readonly issuer: string;
  /** token → claims, only for tokens whose signature verified. */
  private readonly verified = new Map<string, ExecutorClaims>();
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

  mint(sub: string, epoch: number, certFingerprint: string, nowMs = Date.now()): { jwt: string; claims: ExecutorClaims } {
    const iat = Math.floor(nowMs / 1000);
    const claims: ExecutorClaims = {
      iss: this.issuer, aud: JWT_AUDIENCE, sub, epoch, iat, exp: iat + this.ttlSeconds,
      jti: randomB64u(16), cnf: { "x5t#S256": certFingerprint },
    };
    const signingInput = `${b64uJson({ alg: "EdDSA", typ: "JWT", kid: this.keys.kid })}.${b64uJson(claims)}`;
    const sig = edSign(null, Buffer.from(signingInput), this.keys.privateKey).toString("base64url");
    return { jwt: `${signingInput}.${sig}`, claims };
  }

  /**
   * Checks signature, issuer, audience, subject, certificate binding and expiry.
   * The epoch is the caller's to compare: it changes in the store, not in the token.
   */
  verify(token: string, expected: { sub: string; certFingerprint: string }, nowMs = Date.now()): JwtCheck {
    let claims = this.verified.get(token);
    if (!claims) {
      const parsed = this.verifySignature(token);
      if (!parsed.ok) return parsed;
      claims = parsed.claims;
      if (claims.exp * 1000 > nowMs) this.cache(token, claims, nowMs);
    }
    if (claims.iss !== this.issuer) return { ok: false, code: "TOKEN_INVALID", reason: "wrong iss" };
    if (claims.aud !== JWT_AUDIENCE) return { ok: false, code: "TOKEN_INVALID", reason: "wrong aud" };
    if (claims.sub !== expected.sub) return { ok: false, code: "TOKEN_INVALID", reason: "wrong sub" };
    if (claims.cnf?.["x5t#S256"] !== expected.certFingerprint) return { ok: false, code: "TOKEN_INVALID", reason: "cnf does not match the client certificate" };
    if (claims.exp * 1000 <= nowMs) {
      this.verified.delete(token);
      return { ok: false, code: "TOKEN_EXPIRED", reason: "expired" };
    }
    return { ok: true, claims };
  }

  private verifySignature(token: string): JwtCheck {
    const bad = (reason: string): JwtCheck => ({ ok: false, code: "TOKEN_INVALID", reason });
    if (token.length > 4096) return bad("too long");
    const parts = token.split(".");
    if (parts.length !== 3) return bad("malformed");
    let header: { alg?: unknown; kid?: unknown; crit?: unknown };
    let claims: ExecutorClaims;
    try {
      header = JSON.parse(Buffer.from(parts[0]!, "base64url").toString("utf8"));
      claims = JSON.parse(Buffer.from(parts[1]!, "base64url").toString("utf8"));
    } catch {
      return bad("malformed");
    }
    if (header?.alg !== "EdDSA") return bad(`alg ${String(header?.alg)} not allowed`);
    if (header.kid !== this.keys.kid) return bad("unknown kid");
    if (header.crit !== undefined) return bad("crit not supported");
    const sig = Buffer.from(parts[2]!, "base64url");
    if (sig.length !== 64) return bad("bad signature");
    if (!edVerify(null, Buffer.from(`${parts[0]}.${parts[1]}`), this.keys.publicKey, sig)) return bad("bad signature");
    if (
      typeof claims !== "object" || claims === null || typeof claims.sub !== "string" ||
      typeof claims.epoch !== "number" || typeof claims.exp !== "number" || typeof claims.iat !== "number"
    ) {
      return bad("missing claims");
    }
    return { ok: true, claims };
  }

  private cache(token: string, claims: ExecutorClaims, nowMs: number): void {
    if (this.verified.size >= this.maxCache) this.pruneCache(nowMs);
    if (this.verified.size >= this.maxCache) this.verified.clear();
    this.verified.set(token, claims);
  }

  pruneCache(nowMs = Date.now()): void {
    for (const [t, c] of this.verified) if (c.exp * 1000 <= nowMs) this.verified.delete(t);
  }

  get cacheSize(): number {
    return this.verified.size;
  }
}
