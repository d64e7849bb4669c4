/**
 * The daemon's reactions to each answer of PROTOCOL §3.2, against a scripted
 * stand-in controller over real TLS (the e2e tests cover the real controller;
 * this covers answers it gives rarely: CLOCK_SKEW, NONCE_REPLAY, 5xx…).
 */
import { beforeAll, describe, expect, it } from "vitest";
import { randomBytes } from "node:crypto";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { HEADER_TIMESTAMP } from "../../shared/hmac.ts";
import { ExitCode } from "../../executor/exit-codes.ts";
import { certInfo } from "../../executor/certificate.ts";
import { NoWork, type DropReason } from "../../executor/work.ts";
import { createTestCa, type TestCa } from "../support/ca.ts";
import { daemonRuns, events, testDaemonOptions, untilEvent, type DaemonRun } from "../support/daemon.ts";
import { until } from "../support/daemon-wait.ts";
import { startFakeController, wireError, type FakeController, type Recorded, type Reply } from "./fake-controller.ts";

let ca: TestCa;
let server: { certPem: string; keyPem: string };
beforeAll(async () => {
  ca = await createTestCa();
  server = await ca.serverCert();
});

interface MiniController {
  fake: FakeController;
  id: string;
  epoch: number;
  jwt: string;
  jwtN: number;
  /** JWTs the heartbeat accepts (the latest issued, plus any a test scripts). */
  validJwts: Set<string>;
  certFingerprint?: string;
  /** Scripted answers taken before the normal handling of a route. */
  script: Record<string, Reply[]>;
  certTtlMs: number;
  jwtTtlMs: number;
  heartbeatS: number;
  registrations: number;
}

const rfc = (ms: number) => new Date(ms).toISOString().replace(/\.\d{3}Z$/, "Z");

async function startMini(o: Partial<Pick<MiniController, "certTtlMs" | "jwtTtlMs" | "heartbeatS">> = {}): Promise<MiniController> {
  const hmacKey = randomBytes(32);
  const m: MiniController = {
    fake: undefined as never, id: "ex_fake01", epoch: 0, jwt: "", jwtN: 0, validJwts: new Set(), script: {},
    certTtlMs: o.certTtlMs ?? 3600_000, jwtTtlMs: o.jwtTtlMs ?? 600_000, heartbeatS: o.heartbeatS ?? 0.3, registrations: 0,
  };
  const newJwt = () => {
    m.jwt = `jwt-${++m.jwtN}`;
    m.validJwts = new Set([m.jwt]);
    return m.jwt;
  };
  const credentials = async (r: Recorded) => {
    const now = Date.now();
    const out: Record<string, unknown> = { epoch: m.epoch, jwt: newJwt(), jwt_expires_at: rfc(now + m.jwtTtlMs), ca_bundle_pem: ca.certPem };
    if (r.json?.csr_pem) {
      const cert = await ca.issueForCsr(r.json.csr_pem, m.id, { ttlMs: m.certTtlMs });
      m.certFingerprint = certInfo(cert).fingerprint;
      out.certificate_pem = cert;
    }
    out.cert_expires_at = rfc(now + m.certTtlMs);
    return out;
  };
  const handler = async (r: Recorded): Promise<Reply> => {
    const route = r.url.split("/").pop()!.split("?")[0]!;
    const scripted = m.script[route]?.shift();
    if (scripted) return scripted;
    if (route === "register") {
      m.registrations++;
      if (m.registrations > 1) m.id = `ex_fake0${m.registrations}`;
      m.epoch = 1;
      const cert = await ca.issueForCsr(r.json.csr_pem, m.id, { ttlMs: m.certTtlMs });
      m.certFingerprint = certInfo(cert).fingerprint;
      m.fake.executorId = m.id;
      return {
        status: 201,
        body: {
          executor_id: m.id, epoch: 1, certificate_pem: cert, ca_bundle_pem: ca.certPem, cert_expires_at: rfc(Date.now() + m.certTtlMs),
          jwt: newJwt(), jwt_expires_at: rfc(Date.now() + m.jwtTtlMs), hmac_key: hmacKey.toString("base64url"), heartbeat_interval_s: m.heartbeatS,
        },
      };
    }
    if (!r.hmacOk) return wireError(401, "SIGNATURE_INVALID");
    if (route === "renew") return { status: 200, body: await credentials(r) };
    if (route === "reregister") {
      m.epoch++;
      return { status: 200, body: await credentials(r) };
    }
    if (route === "heartbeat") {
      if (!m.validJwts.has(String(r.headers.authorization).replace(/^Bearer /, ""))) return wireError(401, "TOKEN_INVALID");
      return {
        status: 200,
        body: { server_time: rfc(Date.now()), next_heartbeat_s: m.heartbeatS, jwt_renew_after: rfc(Date.now() + 3600_000), cert_renew_after: rfc(Date.now() + 3600_000), drain: false, cancel_leases: [] },
      };
    }
    return wireError(404, "NOT_FOUND");
  };
  m.fake = await startFakeController({ ...server, caPem: ca.certPem }, handler);
  m.fake.hmacKey = hmacKey;
  return m;
}

class RecordingWork extends NoWork {
  drops: DropReason[] = [];
  accepting = true;
  override drop(reason: DropReason): void {
    this.drops.push(reason);
  }
  override setAccepting(a: boolean): void {
    this.accepting = a;
  }
}

type Run = DaemonRun<RecordingWork>;
const daemons = daemonRuns();

/** A daemon on a fresh state dir (or `dir`), enrolling with "tet_enr_test" unless `token` says otherwise. */
function startDaemon(m: MiniController, o: { dir?: string; token?: string | undefined } = {}): Run {
  const token = "token" in o ? o.token : "tet_enr_test";
  const opts = testDaemonOptions({ controllerUrl: m.fake.url, caFilePem: ca.certPem, token: () => token, ...(o.dir ? { stateDir: o.dir } : {}) });
  return daemons.start(opts, new RecordingWork());
}

const routes = (m: MiniController) => m.fake.requests.map((r) => r.url.split("/").pop());

async function mini(o?: Parameters<typeof startMini>[0]) {
  const m = await startMini(o);
  daemons.closeAfterEach(m.fake);
  return m;
}

describe("daemon reactions", () => {
  it("enrolls, heartbeats ready, and on SIGTERM heartbeats draining and exits 0", async () => {
    const m = await mini();
    const run = startDaemon(m);
    await untilEvent(run, "ready");
    expect(routes(m).slice(0, 2)).toEqual(["register", "heartbeat"]);
    // trust_bundle_version 0: the bundle from the registration answer carries no version (fetched once the controller names one).
    expect(m.fake.requests[1]!.json).toEqual({ status: "ready", running: 0, capacity: 2, leases: [], trust_bundle_version: 0 });
    run.daemon.shutdown("SIGTERM");
    expect(await run.done).toBe(ExitCode.OK);
    expect(run.work.accepting).toBe(false);
    expect(m.fake.requests.at(-1)!.json.status).toBe("draining");
    expect(events(run)).toContain("stopped");
  });

  it("TOKEN_EXPIRED → renews the JWT (renew without a CSR, no Authorization) and retries", async () => {
    const m = await mini();
    m.script.heartbeat = [wireError(401, "TOKEN_EXPIRED")];
    const run = startDaemon(m);
    await untilEvent(run, "ready");
    expect(routes(m).slice(0, 4)).toEqual(["register", "heartbeat", "renew", "heartbeat"]);
    const renew = m.fake.requests[2]!;
    expect(renew.json).toEqual({});
    expect(renew.headers.authorization).toBeUndefined();
    expect(m.fake.requests[3]!.headers.authorization).toBe("Bearer jwt-2");
    expect(events(run)).toContain("jwt.renewed");
  });

  it("EPOCH_MISMATCH → drops the work, re-registers (epoch + 1) and retries", async () => {
    const m = await mini();
    m.script.heartbeat = [wireError(401, "EPOCH_MISMATCH")];
    const run = startDaemon(m);
    await untilEvent(run, "ready");
    expect(routes(m).slice(0, 4)).toEqual(["register", "heartbeat", "reregister", "heartbeat"]);
    expect(run.work.drops).toContain("epoch-changed");
    expect(run.daemon.epoch).toBe(2);
    expect(events(run)).toEqual(expect.arrayContaining(["epoch_mismatch", "reregistered"]));
  });

  it("NONCE_REPLAY → retries at once with a new nonce", async () => {
    const m = await mini();
    m.script.heartbeat = [wireError(409, "NONCE_REPLAY")];
    const run = startDaemon(m);
    await untilEvent(run, "ready");
    const [a, b] = m.fake.requests.filter((r) => r.url.endsWith("/heartbeat"));
    expect(a!.headers["x-tether-nonce"]).not.toBe(b!.headers["x-tether-nonce"]);
    expect(b!.hmacOk).toBe(true);
  });

  it("CLOCK_SKEW → warns with the measured offset and signs with the controller's time", async () => {
    const m = await mini();
    const serverTime = rfc(Date.now() + 10 * 60_000);
    m.script.heartbeat = [wireError(401, "CLOCK_SKEW", { server_time: serverTime })];
    const run = startDaemon(m);
    await untilEvent(run, "ready");
    const warn = run.logs.find((l) => l.event === "clock_skew")!;
    expect(warn.level).toBe("warn");
    expect(warn.offset_ms).toBeGreaterThan(590_000);
    expect(warn.msg).toMatch(/behind the controller/);
    const [, retried] = m.fake.requests.filter((r) => r.url.endsWith("/heartbeat"));
    expect(Number(retried!.headers[HEADER_TIMESTAMP]) - Date.now()).toBeGreaterThan(580_000);
  });

  it("network-ish failures (503, 500) → capped exponential backoff, then carries on", async () => {
    const m = await mini();
    m.script.heartbeat = [wireError(503, "INTERNAL"), wireError(500, "INTERNAL"), wireError(503, "INTERNAL")];
    const run = startDaemon(m);
    await untilEvent(run, "ready");
    const retries = run.logs.filter((l) => l.event === "retrying");
    expect(retries.map((r) => r.attempt)).toEqual([1, 2, 3]);
    for (const r of retries) expect(r.delay_ms).toBeGreaterThanOrEqual(25);
    expect(events(run)).toContain("contact.restored");
  });

  it("CERT_REVOKED → exits 3 naming the revocation, without retrying, and remembers it", async () => {
    const m = await mini();
    const run = startDaemon(m);
    await untilEvent(run, "ready");
    m.script.heartbeat = [wireError(401, "CERT_REVOKED")];
    const before = m.fake.requests.length;
    expect(await run.done).toBe(ExitCode.REVOKED);
    expect(m.fake.requests.length).toBeLessThanOrEqual(before + 2);
    expect(run.daemon.lastExit?.message).toMatch(/revoked.*CERT_REVOKED/);
    expect(JSON.parse(readFileSync(join(run.stateDir, "session.json"), "utf8")).revoked_at).toBeTruthy();
    // A restart does not even try: the state says revoked.
    const again = startDaemon(m, { dir: run.stateDir });
    const n = m.fake.requests.length;
    expect(await again.done).toBe(ExitCode.REVOKED);
    expect(m.fake.requests.length).toBe(n);
  });

  it("CERT_REQUIRED without a token → exits 4 telling the operator to re-enroll", async () => {
    const m = await mini();
    const run = startDaemon(m, { token: "tet_enr_once" });
    await untilEvent(run, "ready");
    expect(await daemons.stop(run, "SIGTERM")).toBe(0);
    m.script.reregister = [wireError(401, "CERT_REQUIRED")];
    const second = startDaemon(m, { dir: run.stateDir, token: undefined });
    expect(await second.done).toBe(ExitCode.REENROLL_REQUIRED);
    expect(second.daemon.lastExit?.message).toMatch(/re-enroll/);
  });

  it("CERT_REQUIRED with a token → re-enrolls as a new executor by itself", async () => {
    const m = await mini();
    const run = startDaemon(m);
    await untilEvent(run, "ready");
    m.script.heartbeat = [wireError(401, "CERT_REQUIRED")];
    await until(() => m.registrations === 2 && run.daemon.executorId === "ex_fake02", "re-enrollment");
    await until(() => m.fake.requests.at(-1)!.url.includes("ex_fake02/heartbeat"), "heartbeat as the new executor");
    expect(run.work.drops).toContain("identity-lost");
    expect(events(run)).toContain("reenrolling");
  });

  it("rotates the certificate with a fresh key at ~2/3 of its life, and the new one is used and promoted", async () => {
    const m = await mini({ certTtlMs: 3000 });
    const run = startDaemon(m);
    await untilEvent(run, "ready");
    const first = m.fake.requests.find((r) => r.url.endsWith("/heartbeat"))!.certFingerprint;
    await until(() => events(run).includes("cert.renewed"), "cert renewal", 6000);
    const renew = m.fake.requests.find((r) => r.url.endsWith("/renew") && r.json?.csr_pem)!;
    expect(renew.json.csr_pem).toMatch(/BEGIN CERTIFICATE REQUEST/);
    await until(() => m.fake.requests.at(-1)!.certFingerprint === m.certFingerprint && !existsSync(join(run.stateDir, "cert.next.pem")), "new cert in use");
    expect(m.certFingerprint).not.toBe(first);
    expect(readdirSync(run.stateDir).filter((f) => f.includes(".next"))).toEqual([]);
    expect(certInfo(readFileSync(join(run.stateDir, "cert.pem"), "utf8")).fingerprint).toBe(m.certFingerprint);
  });

  it("applies a new trust bundle from a renew answer: saved to ca.pem and used for the next connections", async () => {
    const m = await mini({ jwtTtlMs: 1500 });
    const extra = await createTestCa();
    const run = startDaemon(m);
    await untilEvent(run, "ready");
    const bundle = ca.certPem + extra.certPem;
    m.validJwts.add("jwt-rotated-bundle");
    m.script.renew = [
      {
        status: 200,
        body: { epoch: 1, jwt: "jwt-rotated-bundle", jwt_expires_at: rfc(Date.now() + 600_000), cert_expires_at: rfc(Date.now() + 3600_000), ca_bundle_pem: bundle },
      },
    ];
    await until(() => events(run).includes("trust_bundle.updated"), "bundle update", 6000);
    expect(readFileSync(join(run.stateDir, "ca.pem"), "utf8")).toBe(bundle);
    const n = m.fake.requests.length;
    await until(() => m.fake.requests.slice(n).some((r) => r.url.endsWith("/heartbeat") && r.headers.authorization === "Bearer jwt-rotated-bundle"), "a heartbeat over the new agent");
    expect(events(run)).not.toContain("retrying");
  });

  it("a rotation interrupted before the certificate arrived is redone right after the restart", async () => {
    const m = await mini();
    const run = startDaemon(m);
    await untilEvent(run, "ready");
    await daemons.stop(run, "SIGTERM");
    // What a crash after staging the key (and maybe after the controller issued) leaves behind.
    const { newKeyAndCsr } = await import("../../executor/csr.ts");
    const { writeFileSync } = await import("node:fs");
    writeFileSync(join(run.stateDir, "key.next.pem"), (await newKeyAndCsr()).keyPem, { mode: 0o600 });
    const second = startDaemon(m, { dir: run.stateDir, token: undefined });
    await until(() => events(second).includes("cert.renewed") && !existsSync(join(run.stateDir, "key.next.pem")), "the rotation to be redone");
    expect(events(second)).toContain("cert.rotation_resumed");
    expect(routes(m).slice(-3)).toContain("renew");
  });

  it("restart on the same state dir: re-registers (epoch + 1) with no token", async () => {
    const m = await mini();
    const run = startDaemon(m);
    await untilEvent(run, "ready");
    await daemons.stop(run, "SIGTERM");
    const second = startDaemon(m, { dir: run.stateDir, token: undefined });
    await until(() => events(second).includes("ready"), "ready again");
    expect(m.registrations).toBe(1);
    expect(second.daemon.epoch).toBe(2);
    expect(second.daemon.executorId).toBe("ex_fake01");
  });

  it("no identity and no token → exits 5 with the way out", async () => {
    const m = await mini();
    const run = startDaemon(m, { token: undefined });
    expect(await run.done).toBe(ExitCode.ENROLLMENT_FAILED);
    expect(run.daemon.lastExit?.message).toMatch(/tether token create/);
  });

  it("ENROLLMENT_DENIED → exits 5 without retrying", async () => {
    const m = await mini();
    m.script.register = [wireError(401, "ENROLLMENT_DENIED")];
    const run = startDaemon(m);
    expect(await run.done).toBe(ExitCode.ENROLLMENT_FAILED);
    expect(m.fake.requests).toHaveLength(1);
    expect(run.daemon.lastExit?.message).toMatch(/denied/);
  });

  it("never logs a secret", async () => {
    const m = await mini();
    const run = startDaemon(m);
    await untilEvent(run, "ready");
    m.script.heartbeat = [wireError(401, "TOKEN_EXPIRED")];
    await until(() => events(run).includes("jwt.renewed"), "renewal");
    const text = JSON.stringify(run.logs);
    expect(text).not.toMatch(/jwt-\d/);
    expect(text).not.toContain("tet_enr_test");
    expect(text).not.toContain(m.fake.hmacKey!.toString("base64url"));
    expect(text).not.toContain("PRIVATE KEY");
  });
});
