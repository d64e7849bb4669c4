/**
 * `POST /v1/executors/register` (PROTOCOL §3.1): the enrollment token (live, used up,
 * expired, revoked, mutated), the CSR (valid; PEM reformatted; DER bit-flipped, truncated,
 * public key swapped; key types the contract refuses) and the rest of the body from the
 * schema. Sent from many loopback addresses, since the rate limit is per address.
 */
import { RegisterRequest } from "../shared/wire/executor.ts";
import type { Case } from "./case.ts";
import { anonymous, firstReason, structured, type FuzzContext } from "./context.ts";
import { csrParts, derToPem, pemToDer, withPublicKey } from "./der.ts";
import { noiseHeaders } from "./headers.ts";
import type { Header } from "./http1.ts";
import { generate, mutateText, mutateValue, serialize, type Schema } from "./json-gen.ts";
import type { CsrWithKey } from "./material.ts";
import type { Rng } from "./rng.ts";
import { CLOCK_MARGIN_MS, thumbprint, type EnrollmentToken } from "./world.ts";
import { createPublicKey } from "node:crypto";

export interface CsrChoice {
  pem: string;
  what?: string;
  /** Why no certificate may be issued for it. */
  breaks?: string;
  /** The key, when the CSR is one of the pool's (so a 201 gives a usable executor). */
  key?: CsrWithKey;
}

/** A CSR for a request body: valid, reformatted, or broken in a way the controller must refuse. */
export function csrChoice(rng: Rng, ctx: FuzzContext): CsrChoice {
  const key = rng.pick(ctx.material.csrs);
  const der = pemToDer(key.csrPem);
  const mode = rng.int(0, 13);
  switch (mode) {
    case 0: {
      const p = csrParts(der);
      // Any flipped bit in the signed part or the signature (not the BIT STRING's unused-bits byte).
      const region = rng.chance(0.5) ? [p.info.start, p.info.end] : [p.signature.content + 1, p.signature.end];
      const i = rng.int(region[0]!, region[1]! - 1);
      const b = Buffer.from(der);
      b[i]! ^= 1 << rng.int(0, 7);
      return { pem: derToPem(b), what: `CSR DER bit flipped at ${i}`, breaks: "a CSR whose signature cannot verify" };
    }
    case 1: {
      const cut = rng.int(1, der.length - 1);
      return { pem: derToPem(der.subarray(0, cut)), what: `CSR DER truncated to ${cut} bytes`, breaks: "a truncated CSR" };
    }
    case 2: {
      const other = rng.pick(ctx.material.csrs.filter((c) => c !== key));
      const spki = createPublicKey(other.keyPem).export({ type: "spki", format: "der" });
      return { pem: derToPem(withPublicKey(der, spki)), what: "CSR public key swapped for another key (signature kept)", breaks: "a CSR not signed by its own key" };
    }
    case 3: {
      const r = rng.pick(ctx.material.refusedCsrs);
      return { pem: r.csrPem, what: `CSR with a ${r.what} key`, breaks: `a ${r.what} key (PROTOCOL §2 accepts Ed25519, P-256, P-384)` };
    }
    case 4: return { pem: key.csrPem.replace(/\n/g, "\r\n"), what: "CSR with CRLF line ends", key };
    case 5: return { pem: derToPem(der, "CERTIFICATE REQUEST", 0), what: "CSR base64 on one line", key };
    case 6: return { pem: derToPem(der, "NEW CERTIFICATE REQUEST"), what: "CSR labelled NEW CERTIFICATE REQUEST", key };
    case 7: return { pem: rng.pick([`junk\n${key.csrPem}`, `${key.csrPem}${key.csrPem}`, key.csrPem.replace("-----END", "--END"), key.csrPem.replace(/[A-Za-z0-9+/]{4}\n/, "!!!!\n"), der.toString("binary"), der.toString("base64"), "", key.csrPem.replace("CERTIFICATE REQUEST", "CERTIFICATE")]), what: "CSR PEM armour broken", breaks: "not one PEM certificate request" };
    case 8: return { pem: derToPem(Buffer.concat([der, Buffer.from([0x00, 0x00])])), what: "CSR DER with trailing bytes" };
    case 9: return { pem: derToPem(Buffer.from("30" + "82ffff", "hex")), what: "CSR DER claiming 64 KiB", breaks: "an unparseable CSR" };
    default: return { pem: key.csrPem, key };
  }
}

type TokenPick = { token: string; what?: string; breaks?: string; model?: EnrollmentToken };

function tokenChoice(rng: Rng, ctx: FuzzContext): TokenPick {
  const tokens = ctx.world.enrollmentTokens;
  const r = rng.int(0, 9);
  if (r <= 5 && tokens.length) {
    const t = rng.pick(tokens);
    return { token: t.token, model: t, what: t.protected ? undefined : `enrollment token ${t.id} (max ${t.maxUses} uses)` };
  }
  const base = tokens.length ? rng.pick(tokens).token : "tet_enr_" + "A".repeat(43);
  const i = rng.int(8, base.length - 1);
  return rng.pick<TokenPick>([
    { token: base.slice(0, i) + (base[i] === "A" ? "B" : "A") + base.slice(i + 1), what: `token character ${i} changed`, breaks: "an enrollment token that was never issued" },
    { token: base.slice(0, -1), what: "token truncated", breaks: "an enrollment token that was never issued" },
    { token: "tet_enr_" + rng.string(43), what: "random token", breaks: "an enrollment token that was never issued" },
    { token: ctx.world.principal("admin").token, what: "an admin API token as enrollment token", breaks: "an API token is not an enrollment token" },
    { token: rng.pick(["", "tet_enr_", base.toUpperCase(), ` ${base}`, `${base}\u0000`, base + "=".repeat(2)]), what: "malformed token", breaks: "not an issued enrollment token" },
  ]);
}

export function registerCase(n: number, rng: Rng, ctx: FuzzContext): Case {
  const { world } = ctx;
  const what: string[] = [];
  const tok = tokenChoice(rng, ctx);
  const csr = csrChoice(rng, ctx);
  if (tok.what) what.push(tok.what);
  if (csr.what) what.push(csr.what);
  const hint = (path: readonly string[]): unknown => {
    const key = path.join(".");
    if (key === "enrollment_token") return tok.token;
    if (key === "csr_pem") return csr.pem;
    return undefined;
  };
  let value = generate(RegisterRequest as Schema, rng, hint);
  let structural = false;
  if (rng.chance(0.3)) {
    const m = mutateValue(value, RegisterRequest as Schema, rng);
    value = m.value;
    what.push(m.what);
    structural = true;
  }
  let body = serialize(value);
  if (rng.chance(0.08)) {
    const m = mutateText(body, rng);
    body = m.body;
    what.push(m.what);
    structural = true;
  }
  const headers: Header[] = [];
  const noise = noiseHeaders(rng, true);
  headers.push(...noise.headers);
  what.push(...noise.what);
  // A structural mutation may have dropped or replaced the token or the CSR: then nothing is claimed about them.
  const sent = (() => {
    try {
      return JSON.parse(body.toString("utf8")) as Record<string, unknown>;
    } catch {
      return undefined;
    }
  })();
  const tokenSent = sent?.enrollment_token === tok.token;
  const csrSent = sent?.csr_pem === csr.pem;
  const mustNotPass = firstReason(tokenSent ? tok.breaks : undefined, csrSent ? csr.breaks : undefined);
  const model = tokenSent ? tok.model : undefined;
  return structured({
    n, label: "POST /v1/executors/register", plane: "register", what, identity: anonymous(rng, true), identityDesc: "no client certificate",
    method: "POST", target: "/v1/executors/register", headers, body, mustNotPass, authenticated: !structural && mustNotPass === undefined && model !== undefined,
    dynamic: (sentAt) => {
      if (!model) return undefined;
      if (model.revokedAt !== undefined && sentAt > model.revokedAt) return "the enrollment token was revoked before the request was sent";
      if (sentAt > model.expiresAt + CLOCK_MARGIN_MS) return "the enrollment token had expired";
      return undefined;
    },
    onSuccess: (res) => {
      if (!model) return undefined;
      model.registered++;
      let reg: Record<string, unknown>;
      try {
        reg = JSON.parse(res.body.toString("utf8"));
      } catch {
        return undefined;
      }
      if (csrSent && csr.key && typeof reg.executor_id === "string" && typeof reg.certificate_pem === "string" && !world.executors.has(reg.executor_id)) {
        const certPem = reg.certificate_pem;
        world.executors.set(reg.executor_id, {
          id: reg.executor_id, epoch: Number(reg.epoch), jwt: String(reg.jwt), hmacKey: Buffer.from(String(reg.hmac_key), "base64url"),
          certPem, keyPem: csr.key.keyPem, identity: { key: `ex:${reg.executor_id}:${thumbprint(certPem)}`, cert: { certPem, keyPem: csr.key.keyPem } },
          staleJwts: [], retiredCerts: [], leases: [], lock: Promise.resolve(), lost: false, spare: true,
        });
      }
      return model.registered > model.maxUses ? `enrollment token ${model.id} registered ${model.registered} executors, its max_uses is ${model.maxUses}` : undefined;
    },
  }, ctx);
}
