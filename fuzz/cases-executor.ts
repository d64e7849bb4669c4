/**
 * The executor plane (PROTOCOL §3.2–3.3): requests of a registered executor, signed by
 * hand. A case is either fully valid, valid with a mutated body (signed as sent, so it
 * reaches validation and the handler), or mutated in exactly one auth-relevant part —
 * the certificate, the JWT, the signature headers, the path, a replayed nonce, a lease
 * of someone else — and then a 2xx is a guard bypass.
 */
import { X509Certificate, createPublicKey } from "node:crypto";
import { HeartbeatRequest, LeaseCompleteRequest, LeaseFailRequest, LeasesRequest, RenewRequest } from "../shared/wire/executor.ts";
import { hmacVariant, jwtCnf, jwtVariant, signedHeaders } from "./auth.ts";
import type { Case } from "./case.ts";
import { asExecutor, connectionOf, firstReason, structured, type FuzzContext } from "./context.ts";
import { noiseHeaders, percentDecode, percentEncode } from "./headers.ts";
import type { Header, HttpResponse } from "./http1.ts";
import { generate, mutateText, mutateValue, serialize, type Schema } from "./json-gen.ts";
import { FORGED_KINDS } from "./material.ts";
import { csrChoice, type CsrChoice } from "./cases-register.ts";
import type { Rng } from "./rng.ts";
import type { Identity } from "./transport.ts";
import { GRACE_MS, SURELY_IN_GRACE_MS, thumbprint, type ExecutorState, type World } from "./world.ts";

interface ExecutorRoute {
  name: "heartbeat" | "leases" | "complete" | "fail" | "renew" | "reregister";
  weight: number;
  schema: Schema;
  jwt: boolean;
}

const ROUTES: readonly ExecutorRoute[] = [
  { name: "heartbeat", weight: 6, schema: HeartbeatRequest, jwt: true },
  { name: "leases", weight: 4, schema: LeasesRequest, jwt: true },
  { name: "complete", weight: 3, schema: LeaseCompleteRequest, jwt: true },
  { name: "fail", weight: 2, schema: LeaseFailRequest, jwt: true },
  { name: "renew", weight: 1.2, schema: RenewRequest, jwt: false },
  { name: "reregister", weight: 0.5, schema: RenewRequest, jwt: false },
];

const isLeaseRoute = (r: ExecutorRoute) => r.name === "complete" || r.name === "fail";
const pathOf = (r: ExecutorRoute, id: string, leaseId: string) =>
  isLeaseRoute(r) ? `/v1/executors/${id}/leases/${leaseId}/${r.name}` : `/v1/executors/${id}/${r.name}`;
const labelOf = (r: ExecutorRoute) => `POST /v1/executors/:id/${isLeaseRoute(r) ? `leases/:lease_id/${r.name}` : r.name}`;

function heldLeases(e: ExecutorState): string[] {
  return e.leases.filter((l) => l.epoch === e.epoch && l.doneAt === undefined && l.releasedAt === undefined).map((l) => l.id);
}

/** Schema hints: what a schema cannot know (the executor's leases, a CSR, a short long-poll). */
function hintFor(e: ExecutorState, csr: CsrChoice) {
  return (path: readonly string[], _schema: Schema, rng: Rng): unknown => {
    const key = path.join(".");
    if (key === "leases") return heldLeases(e).slice(0, rng.int(0, 3));
    if (key === "wait_s") return rng.chance(0.9) ? 0 : 1;
    if (key === "max") return rng.int(1, 4);
    if (key === "csr_pem") return csr.pem;
    if (key === "result") return { exit_code: 0, stdout_tail: "ok" };
    return undefined;
  };
}

export async function executorCase(n: number, rng: Rng, ctx: FuzzContext): Promise<Case | undefined> {
  const { world } = ctx;
  const live = world.liveExecutors();
  if (live.length === 0) return undefined;
  const revoked = [...world.executors.values()].filter((x) => x.revokedAt !== undefined && !x.lost);
  const e = revoked.length && rng.chance(0.05) ? rng.pick(revoked) : rng.pick(live);
  const others = [...world.executors.values()].filter((x) => x !== e && !x.lost);
  // A targeted scenario now and then: the previous certificate (in its grace window) asking to rotate credentials.
  const lastRetired = e.retiredCerts[e.retiredCerts.length - 1];
  const previousInGrace = lastRetired && Date.now() < lastRetired.rotatedAt + SURELY_IN_GRACE_MS ? lastRetired : undefined;
  const rotateWithPrevious = previousInGrace !== undefined && rng.chance(0.06);
  const route = rotateWithPrevious ? rng.pick(ROUTES.filter((r) => !r.jwt)) : rng.weighted(ROUTES.map((r) => [r.weight, r] as const));
  const mode = rotateWithPrevious ? "auth" : rng.weighted([[25, "valid"], [35, "body"], [40, "auth"]] as const);
  const authPart = mode !== "auth" ? undefined : rotateWithPrevious ? "cert"
    : rng.weighted([[22, "cert"], [route.jwt ? 22 : 4, "jwt"], [30, "hmac"], [10, "path"], [8, "replay"], [isLeaseRoute(route) ? 10 : 0, "lease"]] as const);
  const what: string[] = [];
  const breaks: (string | undefined)[] = [];

  if (authPart === "replay") {
    const mine = world.accepted.filter((a) => a.executorId === e.id);
    const prior = mine.length ? rng.pick(mine) : undefined;
    if (prior) return replayCase(n, prior, e, ctx);
  }

  // ---- body: generated from the route's schema, maybe mutated (always signed as sent)
  // Renewals carry a CSR from the pool, reformatted, or broken (then no certificate may be issued).
  const csr = rng.chance(0.7) ? { pem: rng.pick(ctx.material.csrs).csrPem } : csrChoice(rng, ctx);
  let value = generate(route.schema, rng, hintFor(e, csr));
  if (mode === "body" && rng.chance(0.75)) {
    const m = mutateValue(value, route.schema, rng);
    value = m.value;
    what.push(m.what);
  }
  let body = serialize(value);
  if (mode === "body" && (rng.chance(0.3) || what.length === 0)) {
    const m = mutateText(body, rng);
    body = m.body;
    what.push(m.what);
  }
  if (route.schema === RenewRequest && csrSent(body, csr.pem)) {
    if (csr.what) what.push(csr.what);
    breaks.push(csr.breaks);
  }

  // ---- path: the executor's own, or another's, or encoded differently from what is signed
  let leaseId = "";
  if (isLeaseRoute(route)) {
    const held = heldLeases(e);
    const otherLeases = others.flatMap((o) => o.leases.map((l) => l.id));
    const done = e.leases.filter((l) => l.doneAt !== undefined || l.releasedAt !== undefined);
    if (authPart === "lease" && otherLeases.length && rng.chance(0.5)) {
      leaseId = rng.pick(otherLeases);
      what.push("a lease of another executor");
      breaks.push("another executor's lease");
    } else if (authPart === "lease" && done.length && rng.chance(0.6)) {
      const l = rng.pick(done);
      leaseId = l.id;
      what.push(`a lease already ${l.doneAt !== undefined ? "finished" : "released"}`);
    } else if (authPart === "lease" || held.length === 0) {
      leaseId = rng.string(rng.int(1, 24));
      what.push("an unknown lease id");
      breaks.push("a lease that was never issued");
    } else leaseId = rng.pick(held);
  }
  const own = pathOf(route, e.id, leaseId);
  let target = own;
  let signedTarget = own;
  /** Only the path differs from a valid request: PROTOCOL §3.2 says 403 IDENTITY_MISMATCH. */
  let identityMismatch = false;
  let signedId = e.id;
  if (authPart === "path") {
    const choice = rng.int(0, 5);
    const other = others.length ? rng.pick(others) : undefined;
    if (choice === 0 && other) {
      target = signedTarget = pathOf(route, other.id, leaseId);
      signedId = other.id;
      what.push(`path names executor ${other.id}, signed for it`);
      identityMismatch = true;
    } else if (choice === 1) {
      target = `${own}?${rng.pick(["x=1", "id=ex_other", "a=%00", "", "&&"])}`;
      what.push("query added after signing");
    } else if (choice === 2) {
      target = own.replace(e.id, percentEncode(e.id, rng));
      what.push("executor id percent-encoded, signature over the decoded target");
    } else if (choice === 3) {
      target = signedTarget = own.replace(e.id, percentEncode(e.id, rng));
      what.push("executor id percent-encoded, signed as sent");
    } else if (choice === 4) {
      target = signedTarget = `${own}?${rng.pick(["x=1", "wait=30", "id=" + e.id])}`;
      what.push("query added and signed");
    } else {
      const mangled = rng.pick([`${e.id}x`, e.id.toUpperCase(), e.id.slice(0, -1), "x".repeat(65), "x".repeat(5_000), "..", `${e.id}%2F..`, `${e.id}%00`, "%", "ex_ü"]);
      target = signedTarget = own.replace(e.id, mangled);
      signedId = percentDecode(mangled) ?? mangled;
      what.push(`executor id replaced by ${JSON.stringify(mangled.slice(0, 30))}${mangled.length > 30 ? "…" : ""}, signed as sent`);
    }
  }
  const sentId = percentDecode(target.split("/")[3] ?? "") ?? "";
  if (sentId !== e.id) breaks.push("the path names another executor");
  if (target !== signedTarget) breaks.push("the request target differs from the signed one");
  if (signedId !== sentId) breaks.push("signed for another executor id");

  // ---- credentials
  let identity: Identity = asExecutor(e, rng);
  /** A rotation (CSR renew, reregister) asked for with the previous certificate. */
  let previousRotates: ExecutorState["retiredCerts"][number] | undefined;
  let identityDesc = `executor ${e.id} (current certificate)`;
  if (authPart === "cert") {
    // The server keeps one previous certificate: the last one replaced, for its grace window.
    const retired = e.retiredCerts.filter((r) => r !== lastRetired || Date.now() > r.graceUntil);
    const inGrace = previousInGrace ? [previousInGrace] : [];
    const pick = rotateWithPrevious ? 3 : rng.int(0, 7);
    if (pick === 0) {
      identity = connectionOf(rng, { key: "anon" });
      identityDesc = "no client certificate";
      breaks.push("no client certificate");
    } else if (pick === 1 && others.length) {
      const o = rng.pick(others);
      identity = asExecutor(o, rng);
      identityDesc = `executor ${o.id}'s certificate`;
      breaks.push("another executor's certificate");
    } else if (pick === 3 && inGrace.length) {
      identity = connectionOf(rng, rng.pick(inGrace).identity);
      identityDesc = `executor ${e.id}'s previous certificate, inside its grace window`;
      if (!route.jwt && (route.name === "reregister" || /"csr_pem"/.test(body.toString("latin1")))) previousRotates = previousInGrace;
    } else if (pick === 2 && retired.length) {
      const r = rng.pick(retired);
      identity = connectionOf(rng, r.identity);
      identityDesc = `executor ${e.id}'s replaced certificate, neither current nor in its grace window`;
      breaks.push("a replaced certificate outside its grace window");
    } else {
      const kind = rng.pick(FORGED_KINDS);
      const cert = await ctx.material.forgedCert(kind, e.id);
      identity = connectionOf(rng, { key: `forged-${kind}-${e.id}`, cert });
      identityDesc = `forged certificate for ${e.id} (${kind})`;
      breaks.push(`a certificate that is not the executor's current one (${kind})`);
    }
  }
  const headers: Header[] = [];
  if (route.jwt || rng.chance(0.5)) {
    const v = authPart === "jwt" ? jwtVariant(rng, e, world, others, ctx.jwksX) : { headers: [["authorization", `Bearer ${e.jwt}`]] as Header[], what: "", breaks: undefined, issued: e.jwt };
    headers.push(...v.headers);
    if (v.what) what.push(`JWT: ${v.what}`);
    if (route.jwt) breaks.push(v.breaks);
    // RFC 8705: an issued token works only over a connection holding the certificate its cnf names.
    if (route.jwt && v.issued && identity.cert && jwtCnf(v.issued) !== thumbprint(identity.cert.certPem)) breaks.push("the JWT is bound to another certificate (cnf)");
  }
  const burned = mode === "valid" && rng.chance(0.3) ? takeBurnedNonce(world, e.id) : undefined;
  const signIn = { method: "POST", target: signedTarget, executorId: signedId, body };
  const sig = authPart === "hmac" ? hmacVariant(rng, e, signIn, others) : { ...signedHeaders(e, signIn, burned), what: "", breaks: undefined };
  headers.push(...sig.headers);
  if (sig.what) what.push(`signature: ${sig.what}`);
  breaks.push(sig.breaks);
  if (burned) what.push("reuses the nonce of a request refused for its signature");
  const noise = noiseHeaders(rng, body.length > 0);
  headers.push(...noise.headers);
  what.push(...noise.what);

  const mustNotPass = firstReason(...breaks);
  const epochAtSend = e.epoch;
  const waitS = typeof (value as { wait_s?: unknown })?.wait_s === "number" ? Math.min(Math.max(Number((value as { wait_s: number }).wait_s), 0), 31) : 0;
  const rotates = route.name === "renew" || route.name === "reregister";
  return structured({
    n, label: labelOf(route), plane: "executor", what, identity, identityDesc, method: "POST", target, headers, body,
    mustNotPass, timeoutMs: 30_000 + waitS * 1000, status: identityMismatch && authPart === "path" ? 403 : undefined, authenticated: mode !== "auth" || mustNotPass === undefined,
    lock: rotates && mustNotPass === undefined ? e : undefined,
    dynamic: (sentAt) => {
      if (e.revokedAt !== undefined && sentAt > e.revokedAt) return "the executor was revoked before this request was sent";
      if (previousRotates && e.retiredCerts[e.retiredCerts.length - 1] === previousRotates && e.certConfirmedAt !== undefined && sentAt > e.certConfirmedAt) {
        return "the previous certificate may not rotate credentials once the new one is in use (issue 10, finding 7)";
      }
      if (route.jwt && e.epoch > epochAtSend && e.staleJwts.some((s) => s.epoch === epochAtSend && sentAt > s.since)) return "its JWT's epoch was superseded before it was sent";
      const l = e.leases.find((x) => x.id === leaseId);
      if (isLeaseRoute(route) && l && ((l.doneAt ?? Infinity) < sentAt || (l.releasedAt ?? Infinity) < sentAt)) return "the lease was already finished or released";
      return undefined;
    },
    onAnswer: (res) => {
      if (res.status === 401 && res.body.includes("SIGNATURE_INVALID") && mustNotPass !== undefined && authPart === "hmac") {
        world.remember(world.burnedNonceCandidates, { executorId: e.id, nonce: sig.nonce }, 200);
      }
      if (burned && res.status === 409 && res.body.includes("NONCE_REPLAY")) return "a nonce refused for its signature was consumed (PROTOCOL §3.2: it must not be)";
      return undefined;
    },
    onSuccess: (res) => applySuccess(route, e, res, leaseId, epochAtSend, ctx),
    executorId: e.id,
  }, ctx);
}

/** A resent request that was answered 2xx before: the same bytes (so the same nonce). */
function replayCase(n: number, prior: World["accepted"][number], e: ExecutorState, ctx: FuzzContext): Case {
  return {
    n, label: `${prior.label} (replay)`, plane: "executor", what: ["the exact bytes of a request answered 2xx before (same nonce)"],
    identity: prior.identity, identityDesc: `executor ${e.id} (the certificate of the original request)`, bytes: prior.bytes, raw: false, head: false,
    timeoutMs: 30_000, expect: [{ mustNotPass: "replay of an accepted request (its nonce was used)" }], authenticated: false, executorId: e.id,
  };
}

/** Whether the body, as the server will parse it, carries exactly this CSR. */
function csrSent(body: Buffer, pem: string): boolean {
  try {
    return (JSON.parse(body.toString("utf8")) as { csr_pem?: unknown }).csr_pem === pem;
  } catch {
    return false;
  }
}

function takeBurnedNonce(world: World, id: string): string | undefined {
  const i = world.burnedNonceCandidates.findIndex((b) => b.executorId === id);
  if (i < 0) return undefined;
  return world.burnedNonceCandidates.splice(i, 1)[0]!.nonce;
}

function applySuccess(route: ExecutorRoute, e: ExecutorState, res: HttpResponse, leaseId: string, epoch: number, ctx: FuzzContext): string | undefined {
  let json: Record<string, unknown>;
  try {
    json = JSON.parse(res.body.toString("utf8"));
  } catch {
    return undefined;
  }
  if (route.name === "leases" && Array.isArray(json.leases)) {
    for (const l of json.leases as { lease_id?: string }[]) if (typeof l.lease_id === "string") e.leases.push({ id: l.lease_id, epoch });
    if (e.leases.length > 200) e.leases.splice(0, e.leases.length - 200);
  }
  if (isLeaseRoute(route)) {
    const l = e.leases.find((x) => x.id === leaseId);
    if (l) l.doneAt = Date.now();
  }
  if (route.name === "renew" || route.name === "reregister") applyCredentials(e, json, ctx);
  return undefined;
}

/** A renew/reregister answer: the new JWT (and epoch), certificate and HMAC key when given. */
export function applyCredentials(e: ExecutorState, json: Record<string, unknown>, ctx: FuzzContext): void {
  const at = Date.now();
  if (typeof json.epoch === "number" && json.epoch > e.epoch) {
    e.staleJwts.push({ jwt: e.jwt, epoch: e.epoch, since: at });
    for (const l of e.leases) if (l.epoch < json.epoch && l.releasedAt === undefined && l.doneAt === undefined) l.releasedAt = at;
    e.epoch = json.epoch;
  }
  if (typeof json.hmac_key === "string") e.hmacKey = Buffer.from(json.hmac_key, "base64url");
  if (typeof json.certificate_pem === "string") {
    const spki = new X509Certificate(json.certificate_pem).publicKey.export({ type: "spki", format: "der" });
    const key = ctx.material.csrs.find((c) => createPublicKey(c.keyPem).export({ type: "spki", format: "der" }).equals(spki));
    e.retiredCerts.push({ identity: e.identity, jwt: e.jwt, rotatedAt: at, graceUntil: at + GRACE_MS });
    e.certConfirmedAt = undefined;
    if (typeof json.jwt === "string") e.jwt = json.jwt;
    if (!key) {
      e.lost = true;
      return;
    }
    e.certPem = json.certificate_pem;
    e.keyPem = key.keyPem;
    e.identity = { key: `ex:${e.id}:${thumbprint(e.certPem)}`, cert: { certPem: e.certPem, keyPem: e.keyPem } };
  } else if (typeof json.jwt === "string") e.jwt = json.jwt;
}
