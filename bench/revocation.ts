/**
 * The revocation propagation phase (PostgreSQL only, PROTOCOL §8: "a revocation made
 * through any replica is enforced by every replica within 1 s"). A second replica B is
 * started on the same store and KEK; K spare executors, registered for this phase only
 * (the fleet of the other phases is not touched), each hold a keep-alive mTLS connection
 * to replica A. One at a time, each is revoked through B's operator API, and A is polled
 * every ~5 ms with a fully authenticated heartbeat (mTLS + JWT + HMAC, a fresh nonce each)
 * until it answers 401 CERT_REVOKED. The figure is the time from sending the revocation
 * to B until A's refusal arrives: an upper bound (it includes B's own work and up to one
 * polling interval). The phase runs after every other one, so it disturbs none of them.
 * Runs on the orchestrator thread: the load generators are idle by then.
 */
import { createSecureContext, type SecureContext } from "node:tls";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import type { ControllerProcess } from "../tools/controller-process.ts";
import { newKeyAndCsr } from "../executor/csr.ts";
import { signRequestHeaders } from "../shared/hmac.ts";
import { newNonce } from "../shared/random.ts";
import { paths } from "../shared/protocol.ts";
import type { RegisterResponse } from "../shared/wire/executor.ts";
import { buildRequest, errorCode, openConnection, type Conn, type Res } from "./http1.ts";
import { fmtErrors, log, percentile, round, sleep } from "./harness.ts";
import { adminToken, tetherCli, type BenchStore } from "./store.ts";

const POLL_MS = 5;
/** Give up on one executor after this long (the target is 1 s). */
const GIVE_UP_MS = 10_000;
const TIMEOUT_MS = 10_000;
const HEARTBEAT_BODY = JSON.stringify({ status: "ready", running: 0, capacity: 1, leases: [] });

export interface RevocationDeps {
  store: BenchStore;
  /** Replica A: the controller every other phase measured. */
  ctl: ControllerProcess;
  dataDir: string;
  root: string;
  K: number;
  startReplica(dataDir: string): Promise<ControllerProcess>;
}

/** A keep-alive connection to one replica, reopened when the controller closed it. */
interface Link {
  conn: Conn | null;
  ctx: SecureContext;
  port: number;
}

interface Spare extends Link {
  id: string;
  jwt: string;
  hmacKey: Buffer;
}

async function request(c: Link, raw: string): Promise<Res> {
  if (!c.conn?.isOpen) c.conn = await openConnection({ port: c.port, secureContext: c.ctx, timeoutMs: TIMEOUT_MS });
  const conn = c.conn;
  const timer = setInterval(() => conn.checkTimeout(performance.now()), 250);
  try {
    return await conn.request(raw, TIMEOUT_MS);
  } finally {
    clearInterval(timer);
  }
}

/** A heartbeat with the full guard chain: mTLS (the connection), JWT, and HMAC with a fresh nonce. */
function heartbeat(ex: Spare): Promise<Res> {
  const target = paths.heartbeat(ex.id);
  const sig = signRequestHeaders(ex.hmacKey, { method: "POST", target, executorId: ex.id, body: HEARTBEAT_BODY }, newNonce);
  return request(ex, buildRequest("POST", target, `127.0.0.1:${ex.port}`, { authorization: `Bearer ${ex.jwt}`, ...sig }, HEARTBEAT_BODY));
}

/** POST renew without a CSR: a new JWT (for a spare whose JWT lapsed while it waited its turn). */
async function renewJwt(ex: Spare): Promise<void> {
  const target = paths.renew(ex.id);
  const sig = signRequestHeaders(ex.hmacKey, { method: "POST", target, executorId: ex.id, body: "{}" }, newNonce);
  const res = await request(ex, buildRequest("POST", target, `127.0.0.1:${ex.port}`, sig, "{}"));
  if (res.status !== 200) throw new Error(`renew of spare ${ex.id} answered ${res.status} ${errorCode(res)}`);
  ex.jwt = (JSON.parse(res.body) as { jwt: string }).jwt;
}

export async function revocationPhase(d: RevocationDeps): Promise<Record<string, number>> {
  const t0 = Date.now();
  const bDir = join(d.root, "replica-b");
  const b = await d.startReplica(bDir);
  const replicaStartS = (Date.now() - t0) / 1000;
  log(`revocation phase: replica B pid ${b.pid} listening on ${b.url} (${replicaStartS.toFixed(2)}s to start), same store as A (${d.ctl.url})`);
  try {
    // Each replica writes the current bundle to its data dir's ca.pem; the rotation phase may have changed it since the start.
    const aTrust = readFileSync(join(d.dataDir, "ca.pem"), "utf8");
    const bTrust = readFileSync(join(bDir, "ca.pem"), "utf8");
    const admin = adminToken(d.store);
    const token = tetherCli(d.store, ["token", "create", "--uses", String(d.K), "--ttl", "1h"]);

    // ── K spare executors, registered through A and connected to it ────────────────────
    const aAnon = createSecureContext({ ca: aTrust });
    const spares: Spare[] = [];
    const tReg = Date.now();
    for (let i = 0; i < d.K; i++) {
      const key = await newKeyAndCsr("ed25519", `bench-spare-${i}`);
      const body = JSON.stringify({ enrollment_token: token, csr_pem: key.csrPem, name: `bench-spare-${i}`, capacity: 1 });
      const holder: Link = { conn: null, ctx: aAnon, port: d.ctl.port };
      const res = await request(holder, buildRequest("POST", paths.register, `127.0.0.1:${d.ctl.port}`, { connection: "close" }, body));
      holder.conn?.close();
      if (res.status !== 201) throw new Error(`registering spare ${i} answered ${res.status} ${errorCode(res)}`);
      const reg = JSON.parse(res.body) as RegisterResponse;
      const ex: Spare = {
        id: reg.executor_id, jwt: reg.jwt, hmacKey: Buffer.from(reg.hmac_key, "base64url"),
        ctx: createSecureContext({ key: key.keyPem, cert: reg.certificate_pem, ca: reg.ca_bundle_pem }), conn: null, port: d.ctl.port,
      };
      const first = await heartbeat(ex);
      if (first.status !== 200) throw new Error(`spare ${ex.id}: first heartbeat on A answered ${first.status} ${errorCode(first)}`);
      spares.push(ex);
    }
    log(`  ${d.K} spare executors registered through A and heartbeating on it (${((Date.now() - tReg) / 1000).toFixed(1)}s); revoking each through B`);

    // ── revoke through B, poll A ───────────────────────────────────────────────────────
    const bAdmin: Link = { conn: null, ctx: createSecureContext({ ca: bTrust }), port: b.port };
    // Opens the keep-alive connection to B (no handshake inside the first measurement) and checks the token works there.
    const warm = await request(bAdmin, buildRequest("GET", "/api/v1/ca", `127.0.0.1:${b.port}`, { authorization: `Bearer ${admin}` }));
    if (warm.status !== 200) throw new Error(`GET /api/v1/ca on B answered ${warm.status} ${errorCode(warm)}`);
    const propagation: number[] = [];
    const apiMs: number[] = [];
    let polls = 0;
    let missed = 0;
    const codes: Record<string, number> = {};
    for (const ex of spares) {
      // Right before: A still accepts it (and the JWT is fresh enough for the next seconds).
      let before = await heartbeat(ex);
      if (before.status === 401 && errorCode(before) === "TOKEN_EXPIRED") {
        await renewJwt(ex);
        before = await heartbeat(ex);
      }
      if (before.status !== 200) throw new Error(`spare ${ex.id}: heartbeat on A before its revocation answered ${before.status} ${errorCode(before)}`);

      const sent = performance.now();
      const revoke = request(bAdmin, buildRequest("POST", `/api/v1/executors/${ex.id}/revoke`, `127.0.0.1:${b.port}`, { authorization: `Bearer ${admin}` }))
        // Settled either way, so a failure waits for the poll loop instead of being unhandled meanwhile.
        .then((r) => ({ r, at: performance.now() }), (e: unknown) => ({ r: undefined, at: performance.now(), e }));
      let refusedAt = NaN;
      for (let next = sent; performance.now() - sent < GIVE_UP_MS; ) {
        let code = "";
        try {
          const r = await heartbeat(ex);
          if (r.status === 401 && errorCode(r) === "CERT_REVOKED") {
            refusedAt = performance.now();
            polls++;
            break;
          }
          if (r.status !== 200) code = errorCode(r);
        } catch (e) {
          // A transport failure is not a refusal: counted, and the next poll reconnects.
          code = (e as { code?: string }).code ?? "ERROR";
          ex.conn?.close();
        }
        polls++;
        if (code) codes[code] = (codes[code] ?? 0) + 1;
        next += POLL_MS;
        await sleep(Math.max(0, next - performance.now()));
      }
      const answered = await revoke;
      if (answered.r?.status !== 200) {
        const why = answered.r ? `answered ${answered.r.status}: ${answered.r.body.slice(0, 300)}` : `failed: ${String((answered as { e?: unknown }).e)}`;
        throw new Error(`POST /api/v1/executors/${ex.id}/revoke on B ${why}`);
      }
      apiMs.push(answered.at - sent);
      // Never refused: Infinity, so the percentiles it reaches (and the max) say so (null in the JSON).
      if (Number.isFinite(refusedAt)) propagation.push(refusedAt - sent);
      else {
        missed++;
        propagation.push(Infinity);
      }
      ex.conn?.close();
    }
    bAdmin.conn?.close();

    const sorted = Float64Array.from(propagation).sort();
    const api = Float64Array.from(apiMs).sort();
    const out = {
      p50: percentile(sorted, 50), p99: percentile(sorted, 99), max: sorted.length ? sorted[sorted.length - 1]! : NaN,
      apiP50: percentile(api, 50), apiP99: percentile(api, 99),
    };
    log(
      `revocation propagation (revoke sent to B → A answers 401 CERT_REVOKED, polled every ${POLL_MS} ms) over ${d.K} executors: ` +
        `p50 ${out.p50.toFixed(1)} ms, p99 ${out.p99.toFixed(1)} ms, max ${out.max.toFixed(1)} ms` +
        `${missed ? `; ${missed} NOT refused within ${GIVE_UP_MS / 1000}s` : ""}; B answered the revocation in p50 ${out.apiP50.toFixed(1)} ms, ` +
        `p99 ${out.apiP99.toFixed(1)} ms; ${polls} polls of A${fmtErrors(codes)}`,
    );
    return {
      revocation_executors: d.K,
      revocation_propagation_ms_p50: round(out.p50, 1),
      revocation_propagation_ms_p99: round(out.p99, 1),
      revocation_propagation_ms_max: round(out.max, 1),
      revocation_not_propagated: missed,
      revocation_api_ms_p50: round(out.apiP50, 1),
      revocation_api_ms_p99: round(out.apiP99, 1),
      revocation_polls: polls,
      replica_b_start_s: round(replicaStartS, 2),
      replica_b_errors_logged: b.errorsLogged,
    };
  } catch (e) {
    log(`replica B stderr (tail):\n${b.tail()}`);
    throw e;
  } finally {
    const stopped = await b.stop(20_000);
    log(`  replica B stopped (exit ${stopped.code}${stopped.killed ? ", SIGKILLed" : ""})`);
  }
}
