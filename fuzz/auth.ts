/**
 * The credentials of a request, correct or mutated with intent. Each variant says
 * whether it still carries the credential the guard needs (`breaks` undefined: a
 * neutral change such as the case of the scheme) or why it does not (`breaks`: the
 * reason, and a 2xx is then a guard bypass).
 */
import { createHmac, generateKeyPairSync, randomBytes, sign } from "node:crypto";
import { signatureFor } from "../shared/hmac.ts";
import type { Rng } from "./rng.ts";
import type { ExecutorState, World } from "./world.ts";
import type { Header } from "./http1.ts";

export interface Variant {
  headers: Header[];
  what: string;
  breaks?: string;
  /** A JWT the controller issued, sent unmodified (its cnf is then checked against the connection's certificate). */
  issued?: string;
}

const b64u = (v: unknown) => Buffer.from(JSON.stringify(v)).toString("base64url");
const attacker = generateKeyPairSync("ed25519");

function decodeJwt(jwt: string): { header: Record<string, unknown>; claims: Record<string, unknown>; h: string; p: string; s: string } {
  const [h, p, s] = jwt.split(".") as [string, string, string];
  return { header: JSON.parse(Buffer.from(h, "base64url").toString()), claims: JSON.parse(Buffer.from(p, "base64url").toString()), h, p, s };
}

/** The `cnf` thumbprint an issued JWT is bound to. */
export function jwtCnf(jwt: string): string | undefined {
  try {
    return (decodeJwt(jwt).claims.cnf as Record<string, string> | undefined)?.["x5t#S256"];
  } catch {
    return undefined;
  }
}

/** The Authorization header of an executor request: the executor's JWT, or a mutation of it. */
export function jwtVariant(rng: Rng, e: ExecutorState, world: World, others: ExecutorState[], jwksX: string): Variant {
  const bearer = (v: string, what: string, breaks?: string): Variant => ({ headers: [["authorization", v]], what, breaks });
  // Tokens that were once valid are the interesting ones: used often when there are any.
  const stateful = e.staleJwts.length > 0 || e.retiredCerts.length > 0;
  const mode = stateful && rng.chance(0.3) ? 13 : rng.int(0, 22);
  const { header, claims, h, p, s } = decodeJwt(e.jwt);
  const other = others.length ? rng.pick(others) : undefined;
  switch (mode) {
    case 0: return { headers: [], what: "no Authorization header", breaks: "no JWT" };
    case 1: return bearer(rng.pick(["Bearer", "Bearer ", "Basic Zm9vOmJhcg==", "garbage", "Bearer null", `Token ${e.jwt}`, `Bearer ${e.jwt}.`, `Bearer ${e.jwt}x`]), "malformed Authorization", "no usable JWT");
    case 2: return bearer(`Bearer ${b64u({ ...header, alg: "none" })}.${p}.`, "alg none, no signature", "unsigned JWT");
    case 3: {
      // Algorithm confusion: HS256 keyed with the published Ed25519 public key.
      const hh = b64u({ ...header, alg: "HS256" });
      const mac = createHmac("sha256", Buffer.from(jwksX, "base64url")).update(`${hh}.${p}`).digest("base64url");
      return bearer(`Bearer ${hh}.${p}.${mac}`, "alg HS256 keyed with the JWKS public key", "HS256 JWT");
    }
    case 4: return bearer(`Bearer ${b64u({ ...header, kid: rng.pick(["", "x", "../../jwt.key", `${String(header.kid)}x`]) })}.${p}.${s}`, "kid changed, signature kept", "header edited without re-signing");
    case 5: {
      const jwk = attacker.publicKey.export({ format: "jwk" });
      const hh = b64u({ ...header, jwk });
      const sig = sign(null, Buffer.from(`${hh}.${p}`), attacker.privateKey).toString("base64url");
      return bearer(`Bearer ${hh}.${p}.${sig}`, "embedded jwk header, signed with the attacker's key", "JWT signed by another key");
    }
    case 6: case 7: {
      const edits: [string, unknown][] = [
        ["sub", other?.id ?? "ex_someone"], ["epoch", Number(claims.epoch) + 1], ["epoch", Number(claims.epoch) - 1],
        ["exp", Number(claims.exp) + 365 * 86400], ["cnf", { "x5t#S256": "AAAA" }], ["iss", "spiffe://evil/controller"], ["aud", "other"], ["jti", "x"],
      ];
      const [k, v] = rng.pick(edits);
      return bearer(`Bearer ${h}.${b64u({ ...claims, [k]: v })}.${s}`, `claim ${k} edited without re-signing`, "claims edited without re-signing");
    }
    case 8: {
      const pp = b64u({ ...claims, exp: Number(claims.exp) + 86400 });
      const sig = sign(null, Buffer.from(`${h}.${pp}`), attacker.privateKey).toString("base64url");
      return bearer(`Bearer ${h}.${pp}.${sig}`, "claims re-signed with the attacker's Ed25519 key, same kid", "JWT signed by another key");
    }
    case 9: case 10: {
      const sig = Buffer.from(s, "base64url");
      const i = rng.int(0, sig.length - 1);
      sig[i]! ^= 1 << rng.int(0, 7);
      return bearer(`Bearer ${h}.${p}.${sig.toString("base64url")}`, `signature bit flipped in byte ${i}`, "JWT signature altered");
    }
    case 11: return bearer(`Bearer ${h}.${p}.${rng.pick(["", s.slice(0, -4), s + "AAAA", "A".repeat(86)])}`, "signature truncated/extended/zeroed", "JWT signature altered");
    case 12: if (other) return bearer(`Bearer ${other.jwt}`, `JWT of executor ${other.id}`, "another executor's JWT");
      return bearer(`Bearer ${h}.${p}`, "two segments", "malformed JWT");
    case 13: {
      const stale = e.staleJwts.length ? rng.pick(e.staleJwts) : undefined;
      const oldCert = e.retiredCerts.length ? rng.pick(e.retiredCerts) : undefined;
      if (oldCert && (!stale || rng.chance(0.5))) return { ...bearer(`Bearer ${oldCert.jwt}`, "the JWT that was current before a certificate rotation"), issued: oldCert.jwt };
      if (stale) return { ...bearer(`Bearer ${stale.jwt}`, `JWT of epoch ${stale.epoch} (stale since ${stale.since})`, "JWT of a previous epoch"), issued: stale.jwt };
      return bearer(`Bearer ${e.jwt}.${s}`, "four segments", "malformed JWT");
    }
    case 14: return bearer(`Bearer ${world.principal("admin").token}`, "an operator API token", "operator token on an executor route");
    case 15: {
      const enr = world.enrollmentTokens[0];
      return bearer(`Bearer ${enr?.token ?? "tet_enr_" + "A".repeat(43)}`, "an enrollment token", "enrollment token on an executor route");
    }
    case 16: return bearer(`Bearer ${h}.${p}.${s}`.replace(/\./, rng.pick([". ", ".."])), "JWT with a broken separator", "malformed JWT");
    case 17: return { ...bearer(`Bearer ${e.jwt}`.replace("Bearer ", rng.pick(["Bearer  ", "Bearer\t"])), "extra whitespace after the scheme"), issued: e.jwt };
    case 18: return { ...bearer(`Bearer ${e.jwt} `, "trailing space"), issued: e.jwt };
    case 19: return { ...bearer(`${rng.pick(["bearer", "BEARER"])} ${e.jwt}`, "scheme in another case"), issued: e.jwt };
    default: return { ...bearer(`Bearer ${e.jwt}`, "valid JWT"), issued: e.jwt };
  }
}

export interface SignInput {
  method: string;
  target: string;
  executorId: string;
  body: Buffer;
}

/** The three signature headers of a correctly signed request. */
export function signedHeaders(e: Pick<ExecutorState, "hmacKey">, req: SignInput, nonce = randomBytes(16).toString("base64url")): { headers: Header[]; nonce: string } {
  const timestamp = String(Date.now());
  const sig = signatureFor(e.hmacKey, { ...req, timestamp, nonce });
  return { headers: [["x-tether-timestamp", timestamp], ["x-tether-nonce", nonce], ["x-tether-signature", sig]], nonce };
}

/** The three signature headers: correct, or mutated with intent. */
export function hmacVariant(rng: Rng, e: ExecutorState, req: SignInput, others: ExecutorState[]): Variant & { nonce: string } {
  const now = Date.now();
  const nonce = randomBytes(16).toString("base64url");
  const ts = String(now);
  const signWith = (key: Buffer, over: Partial<SignInput & { timestamp: string; nonce: string }> = {}) =>
    signatureFor(key, {
      method: over.method ?? req.method, target: over.target ?? req.target, executorId: over.executorId ?? req.executorId,
      timestamp: over.timestamp ?? ts, nonce: over.nonce ?? nonce, body: over.body ?? req.body,
    });
  const h = (timestamp: string, n: string, sig: string): Header[] => [["x-tether-timestamp", timestamp], ["x-tether-nonce", n], ["x-tether-signature", sig]];
  const out = (headers: Header[], what: string, breaks?: string) => ({ headers, what, breaks, nonce });
  const good = signWith(e.hmacKey);
  const mode = rng.int(0, 24);
  switch (mode) {
    case 0: {
      const drop = rng.int(0, 2);
      return out(h(ts, nonce, good).filter((_, i) => i !== drop), `without ${["timestamp", "nonce", "signature"][drop]}`, "signature header missing");
    }
    case 1: {
      const i = rng.int(3, good.length - 1);
      const c = good[i] === "0" ? "1" : "0";
      return out(h(ts, nonce, good.slice(0, i) + c + good.slice(i + 1)), `signature hex digit ${i} changed`, "wrong signature");
    }
    case 2: return out(h(ts, nonce, signWith(randomBytes(32))), "signed with a random key", "wrong key");
    case 3: {
      const o = others.length ? rng.pick(others) : undefined;
      return out(h(ts, nonce, signWith(o?.hmacKey ?? randomBytes(32))), `signed with ${o?.id ?? "a random"}'s key`, "wrong key");
    }
    case 4: return out(h(ts, nonce, signWith(e.hmacKey, { method: req.method === "POST" ? "PUT" : "POST" })), "signed for another method", "signature over another method");
    case 5: return out(h(ts, nonce, signWith(e.hmacKey, { target: req.target + (req.target.includes("?") ? "&x=1" : "?x=1") })), "signed for another target", "signature over another target");
    case 6: return out(h(ts, nonce, signWith(e.hmacKey, { body: Buffer.concat([req.body, Buffer.from(" ")]) })), "signed over another body", "signature over another body");
    case 7: return out(h(ts, nonce, signWith(e.hmacKey, { executorId: others[0]?.id ?? "ex_other" })), "signed for another executor id", "signature over another executor id");
    case 8: {
      const t2 = String(now + rng.pick([-1, 1]) * rng.pick([305_000, 3600_000, 86400_000 * 365]));
      return out(h(t2, nonce, signWith(e.hmacKey, { timestamp: t2 })), `timestamp skewed to ${t2}`, "timestamp outside the skew window");
    }
    case 9: {
      const t2 = rng.pick(["", "-1", "1e12", `${ts}.0`, ` ${ts}`, "0x1", "9".repeat(17), "١٢٣"]);
      return out(h(t2, nonce, signWith(e.hmacKey, { timestamp: t2 })), `timestamp ${JSON.stringify(t2)}, signed`, t2.trim() === ts ? undefined : "malformed timestamp");
    }
    case 10: {
      const n2 = rng.pick(["a".repeat(15), "a".repeat(65), `${nonce.slice(0, 20)}.x`, `${nonce.slice(0, 20)}=`, "ñ".repeat(20), `${nonce} x`]);
      return out(h(ts, n2, signWith(e.hmacKey, { nonce: n2 })), `nonce ${JSON.stringify(n2)}, signed`, "malformed nonce");
    }
    case 11: return out(h(ts, nonce, good.slice(3)), "signature without v1=", "signature without its version prefix");
    case 12: return out(h(ts, nonce, `v1=${createHmac("sha256", e.hmacKey).update("").digest("hex")}`), "HMAC of the empty string", "wrong signature");
    case 13: return out(h(ts, nonce, good.toUpperCase()), "signature in upper case");
    case 14: return out([["X-Tether-Timestamp", ts], ["X-TETHER-NONCE", nonce], ["x-Tether-Signature", good]], "header names in mixed case");
    case 15: return out([...h(ts, nonce, good), ["x-tether-signature", good]], "signature header twice (same value)");
    case 16: {
      const t2 = String(now - rng.int(1_000, 250_000));
      return out(h(t2, nonce, signWith(e.hmacKey, { timestamp: t2 })), "timestamp in the past, inside the window");
    }
    default: return out(h(ts, nonce, good), "signed");
  }
}

/** The Authorization header of an operator request. `token`: the principal's token. */
export function operatorAuthVariant(rng: Rng, token: string, world: World): Variant & { tokenUsed?: string } {
  const mode = rng.int(0, 20);
  const bearer = (v: string, what: string, breaks?: string, tokenUsed?: string) => ({ headers: [["authorization", v]] as Header[], what, breaks, tokenUsed });
  switch (mode) {
    case 0: return { headers: [], what: "no Authorization", breaks: "no API token" };
    case 1: return bearer(rng.pick(["Bearer", "Bearer ", "", "tet_pat_", `Basic ${Buffer.from(`x:${token}`).toString("base64")}`, `Token ${token}`, `Bearer ${token} ${token}`]), "malformed Authorization", "no usable API token");
    case 2: {
      const i = rng.int(8, token.length - 1);
      const c = token[i] === "A" ? "B" : "A";
      return bearer(`Bearer ${token.slice(0, i)}${c}${token.slice(i + 1)}`, `token character ${i} changed`, "not an issued token");
    }
    case 3: return bearer(`Bearer ${rng.pick([token.slice(0, -1), token + "A", "tet_pat_" + randomBytes(32).toString("base64url")])}`, "truncated/extended/random token", "not an issued token");
    case 4: {
      const gone = world.operatorTokens.filter((t) => t.revokedAt !== undefined || t.expiresAt !== undefined);
      if (gone.length) {
        const t = rng.pick(gone);
        return bearer(`Bearer ${t.token}`, `token ${t.id} (${t.revokedAt !== undefined ? "revoked" : "expiring"})`, undefined, t.token);
      }
      return bearer(`Bearer ${token}`, "valid token", undefined, token);
    }
    case 5: {
      const ex = [...world.executors.values()];
      return bearer(`Bearer ${ex.length ? rng.pick(ex).jwt : "a.b.c"}`, "an executor JWT", "executor JWT on the operator plane");
    }
    case 6: return bearer(`Bearer ${world.enrollmentTokens[0]?.token ?? "tet_enr_x"}`, "an enrollment token", "enrollment token on the operator plane");
    case 7: return bearer(`${rng.pick(["bearer", "BEARER", "Bearer  "])} ${token}`, "scheme case/spacing", undefined, token);
    case 8: return bearer(`Bearer ${token} `, "trailing space", undefined, token);
    case 9: return { headers: [["x-api-token", token], ["cookie", `token=${token}`]], what: "token in other headers, none in Authorization", breaks: "no API token in Authorization" };
    case 10: {
      const other = world.operatorTokens.filter((t) => !t.protected && t.revokedAt === undefined);
      if (other.length) {
        const t = rng.pick(other);
        return bearer(`Bearer ${t.token}`, `token ${t.id} (${t.role})`, undefined, t.token);
      }
      return bearer(`Bearer ${token}`, "valid token", undefined, token);
    }
    default: return bearer(`Bearer ${token}`, "valid token", undefined, token);
  }
}
