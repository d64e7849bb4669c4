/**
 * A scripted stand-in for the controller's executor plane with a task queue and
 * leases (PROTOCOL §3.3), on top of fake-controller.ts: register, renew,
 * reregister, heartbeat (with `cancel_leases` and `drain`), the long poll, and
 * complete/fail answering 409 STALE_LEASE for a lease the executor no longer holds.
 */
import { randomBytes } from "node:crypto";
import type { TestCa } from "../support/ca.ts";
import { startFakeController, wireError, type FakeController, type Recorded, type Reply } from "./fake-controller.ts";

export interface FakeTask {
  task_id: string;
  kind: string;
  payload: unknown;
}

export interface FakeLease {
  lease_id: string;
  task: FakeTask;
  epoch: number;
  state: "leased" | "completed" | "failed" | "cancelled" | "reclaimed";
}

export interface LeaseController {
  fake: FakeController;
  id: string;
  epoch: number;
  jwt: string;
  queue: FakeTask[];
  leases: Map<string, FakeLease>;
  completes: { lease_id: string; result: any }[];
  fails: { lease_id: string; error: string; retryable: boolean }[];
  stale: string[];
  polls: { max: number; wait_s: number; at: number }[];
  heartbeats: { running: number; leases: string[]; status: string }[];
  /** Scripted answers taken before the normal handling of a route (last path segment). */
  script: Record<string, Reply[]>;
  drain: boolean;
  /** Extra lease ids to put in the next heartbeat answer's cancel_leases. */
  cancelNext: string[];
  /** When false the long poll answers at once (a controller ignoring wait_s). */
  honorWait: boolean;
  submit(kind: string, payload: unknown, n?: number): FakeTask[];
  /** Lease ids currently leased, in grant order. */
  held(): string[];
  close(): Promise<void>;
}

const rfc = (ms: number) => new Date(ms).toISOString().replace(/\.\d{3}Z$/, "Z");
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export async function startLeaseController(ca: TestCa, server: { certPem: string; keyPem: string }, o: { heartbeatS?: number } = {}): Promise<LeaseController> {
  const hmacKey = randomBytes(32);
  const heartbeatS = o.heartbeatS ?? 0.3;
  let jwtN = 0;
  let taskN = 0;
  let leaseN = 0;
  let closed = false;
  const m: LeaseController = {
    fake: undefined as never, id: "ex_lease01", epoch: 0, jwt: "", queue: [], leases: new Map(), completes: [], fails: [], stale: [],
    polls: [], heartbeats: [], script: {}, drain: false, cancelNext: [], honorWait: true,
    submit(kind, payload, n = 1) {
      const out: FakeTask[] = [];
      for (let i = 0; i < n; i++) {
        const t = { task_id: `task_${++taskN}`, kind, payload };
        m.queue.push(t);
        out.push(t);
      }
      return out;
    },
    held: () => [...m.leases.values()].filter((l) => l.state === "leased").map((l) => l.lease_id),
    close: async () => {
      closed = true;
      await m.fake.close();
    },
  };
  const newJwt = () => (m.jwt = `jwt-${++jwtN}`);
  const credentials = async (r: Recorded) => {
    const out: Record<string, unknown> = { epoch: m.epoch, jwt: newJwt(), jwt_expires_at: rfc(Date.now() + 600_000), ca_bundle_pem: ca.certPem, cert_expires_at: rfc(Date.now() + 3600_000) };
    if (r.json?.csr_pem) out.certificate_pem = await ca.issueForCsr(r.json.csr_pem, m.id);
    return out;
  };
  const requeueEpoch = (epoch: number) => {
    for (const l of m.leases.values()) {
      if (l.state === "leased" && l.epoch === epoch) {
        l.state = "reclaimed";
        m.queue.push(l.task);
      }
    }
  };
  const handler = async (r: Recorded): Promise<Reply> => {
    const segs = r.url.split("?")[0]!.split("/");
    const route = segs.at(-1)!;
    const scripted = m.script[route]?.shift();
    if (scripted) return scripted;
    if (route === "register") {
      m.epoch = 1;
      const cert = await ca.issueForCsr(r.json.csr_pem, m.id);
      m.fake.executorId = m.id;
      return {
        status: 201,
        body: {
          executor_id: m.id, epoch: 1, certificate_pem: cert, ca_bundle_pem: ca.certPem, cert_expires_at: rfc(Date.now() + 3600_000),
          jwt: newJwt(), jwt_expires_at: rfc(Date.now() + 600_000), hmac_key: hmacKey.toString("base64url"), heartbeat_interval_s: heartbeatS,
        },
      };
    }
    if (!r.hmacOk) return wireError(401, "SIGNATURE_INVALID");
    if (route === "renew") return { status: 200, body: await credentials(r) };
    if (route === "reregister") {
      requeueEpoch(m.epoch);
      m.epoch++;
      return { status: 200, body: await credentials(r) };
    }
    if (String(r.headers.authorization) !== `Bearer ${m.jwt}`) return wireError(401, "EPOCH_MISMATCH");
    if (route === "heartbeat") {
      m.heartbeats.push({ running: r.json.running, leases: r.json.leases, status: r.json.status });
      const cancel = (r.json.leases as string[]).filter((id) => m.leases.get(id)?.state !== "leased" || m.leases.get(id)?.epoch !== m.epoch);
      cancel.push(...m.cancelNext.splice(0));
      return {
        status: 200,
        body: {
          server_time: rfc(Date.now()), next_heartbeat_s: heartbeatS, jwt_renew_after: rfc(Date.now() + 3600_000), cert_renew_after: rfc(Date.now() + 3600_000),
          drain: m.drain, cancel_leases: [...new Set(cancel)],
        },
      };
    }
    if (route === "leases") {
      const { max, wait_s } = r.json as { max: number; wait_s: number };
      m.polls.push({ max, wait_s, at: Date.now() });
      if (!(Number.isInteger(max) && max >= 1 && max <= 64 && Number.isInteger(wait_s) && wait_s >= 0 && wait_s <= 30)) return wireError(400, "INVALID_REQUEST");
      const epoch = m.epoch;
      const end = Date.now() + (m.honorWait ? wait_s * 1000 : 0);
      for (;;) {
        // A poll of an epoch that has ended gets nothing (its grants would be requeued anyway).
        if (closed || m.epoch !== epoch) return { status: 200, body: { leases: [] } };
        // Nothing for a drained or draining executor (its heartbeat said so).
        if (m.queue.length && !m.drain && m.heartbeats.at(-1)?.status !== "draining") {
          const granted = m.queue.splice(0, max).map((task) => {
            const l: FakeLease = { lease_id: `lease_${++leaseN}`, task, epoch, state: "leased" };
            m.leases.set(l.lease_id, l);
            return l;
          });
          return {
            status: 200,
            body: { leases: granted.map((l) => ({ lease_id: l.lease_id, task_id: l.task.task_id, kind: l.task.kind, payload: l.task.payload, expires_at: rfc(Date.now() + 60_000) })) },
          };
        }
        if (Date.now() >= end) return { status: 200, body: { leases: [] } };
        await sleep(10);
      }
    }
    if (route === "complete" || route === "fail") {
      const l = m.leases.get(decodeURIComponent(segs.at(-2)!));
      if (!l || l.state !== "leased" || l.epoch !== m.epoch) {
        m.stale.push(segs.at(-2)!);
        return wireError(409, "STALE_LEASE");
      }
      if (route === "complete") {
        l.state = "completed";
        m.completes.push({ lease_id: l.lease_id, result: r.json.result });
      } else {
        l.state = "failed";
        m.fails.push({ lease_id: l.lease_id, error: r.json.error, retryable: r.json.retryable });
        if (r.json.retryable) m.queue.push(l.task);
      }
      return { status: 200, body: {} };
    }
    return wireError(404, "NOT_FOUND");
  };
  m.fake = await startFakeController({ ...server, caPem: ca.certPem }, handler);
  m.fake.hmacKey = hmacKey;
  return m;
}
