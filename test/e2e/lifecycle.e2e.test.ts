/**
 * Enrollment, then JWT renewals and certificate rotations with short lifetimes,
 * the executor never dropping out of `ready`; file modes of the state dir.
 * Real processes, real mTLS on loopback.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { readdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { X509Certificate } from "node:crypto";
import { createToken, executorStatus, killAll, showExecutor, sleep, startController, startExecutor, tempDir, tether, type Controller, type Proc } from "./harness.ts";

let ctl: Controller;
afterAll(async () => {
  await killAll();
});

describe("executor lifecycle (e2e)", () => {
  let ex: Proc;
  let stateDir: string;
  let id: string;

  beforeAll(async () => {
    ctl = await startController({ certTtl: "12s", jwtTtl: "5s", heartbeat: "1s" });
    stateDir = join(tempDir(), "state");
    const tokenFile = join(tempDir(), "token");
    writeFileSync(tokenFile, createToken(ctl.dataDir) + "\n", { mode: 0o600 });
    ex = startExecutor(ctl, stateDir, ["--token-file", tokenFile, "--name", "e2e-life", "--label", "zone=a", "--capacity", "2", "--allow-command", "echo"]);
    const enrolled = await ex.waitForEvent("enrolled", 20_000);
    id = enrolled.executor_id;
    await ex.waitForEvent("ready", 10_000);
  }, 60_000);

  it("enrolls with the token and shows up ready with its name and labels", () => {
    const v = showExecutor(ctl.dataDir, id);
    expect(v).toMatchObject({ id, name: "e2e-life", epoch: 1, status: "ready", labels: { zone: "a" }, revoked: false });
  });

  it("renews the JWT several times and the certificate (fresh key) at least once, never dropping out of ready", async () => {
    const firstCert = readFileSync(join(stateDir, "cert.pem"), "utf8");
    const firstKey = readFileSync(join(stateDir, "key.pem"), "utf8");
    const statuses: string[] = [];
    const deadline = Date.now() + 25_000;
    while (Date.now() < deadline && !(ex.count("jwt.renewed") >= 3 && ex.count("cert.renewed") >= 1 && statuses.length >= 8)) {
      statuses.push(showExecutor(ctl.dataDir, id).status);
      await sleep(300);
    }
    expect(ex.count("jwt.renewed")).toBeGreaterThanOrEqual(3);
    expect(ex.count("cert.renewed")).toBeGreaterThanOrEqual(1);
    expect(new Set(statuses)).toEqual(new Set(["ready"]));
    // Renewals happened on schedule: never a retry, a token or epoch problem, or a re-registration.
    for (const bad of ["retrying", "token_expired", "token_invalid", "epoch_mismatch", "reregistered", "error"]) expect(ex.count(bad), bad).toBe(0);
    expect(ex.child.exitCode).toBeNull();

    // The rotation used a fresh key, and the new pair replaced the old one on disk once confirmed.
    await ex.waitFor(() => !readdirSync(stateDir).some((f) => f.includes(".next")), "the rotation to be promoted", 5_000);
    const cert = readFileSync(join(stateDir, "cert.pem"), "utf8");
    expect(cert).not.toBe(firstCert);
    expect(readFileSync(join(stateDir, "key.pem"), "utf8")).not.toBe(firstKey);
    expect(new X509Certificate(cert).checkPrivateKey((await import("node:crypto")).createPrivateKey(readFileSync(join(stateDir, "key.pem"))))).toBe(true);
    expect(new X509Certificate(cert).verify(new X509Certificate(readFileSync(ctl.caFile)).publicKey)).toBe(true);

    // The controller's view agrees with the executor's (short TTLs: another rotation may be
    // between issue and promotion at the moment we look, so compare until they agree).
    const agree = () => {
      const v = showExecutor(ctl.dataDir, id);
      const onDisk = new X509Certificate(readFileSync(join(stateDir, "cert.pem"), "utf8"));
      return v.status === "ready" && Date.parse(v.cert_expires_at) === Math.floor(Date.parse(onDisk.validTo) / 1000) * 1000 &&
        Date.now() - Date.parse(v.last_seen_at!) < 5_000;
    };
    await ex.waitFor(agree, "the controller's view to agree with the state dir", 10_000);
  }, 40_000);

  it("`executor status` reports the identity, epoch, expiries and last contact, exit 0", () => {
    const s = executorStatus(stateDir);
    expect(s.code).toBe(0);
    expect(s.json).toMatchObject({ executor_id: id, epoch: 1, health: "ok", name: "e2e-life", daemon_pid: ex.child.pid });
    expect(Date.parse(s.json.cert_expires_at)).toBeGreaterThan(Date.now());
    expect(Date.parse(s.json.jwt_expires_at)).toBeGreaterThan(Date.now() - 5_000);
    expect(Date.now() - Date.parse(s.json.last_contact_at)).toBeLessThan(5_000);
    expect(s.json.problems).toEqual([]);
  });

  it("keeps the state dir 0700 and every file in it 0600", () => {
    expect(statSync(stateDir).mode & 0o777).toBe(0o700);
    const files = readdirSync(stateDir);
    expect(files).toEqual(expect.arrayContaining(["identity.json", "key.pem", "cert.pem", "ca.pem", "session.json"]));
    for (const f of files) expect(statSync(join(stateDir, f)).mode & 0o777, f).toBe(0o600);
  });

  it("never logs a secret (JWT, HMAC key, private key, token)", () => {
    const text = ex.stderr();
    const identity = JSON.parse(readFileSync(join(stateDir, "identity.json"), "utf8"));
    const session = JSON.parse(readFileSync(join(stateDir, "session.json"), "utf8"));
    expect(text).not.toContain(identity.hmac_key);
    expect(text).not.toContain(session.jwt);
    expect(text).not.toContain("PRIVATE KEY");
    expect(text).not.toContain("tet_enr_");
    expect(text).not.toMatch(/eyJ[A-Za-z0-9_-]{10,}\./);
  });

  it("an operator drain reaches the executor: it reports draining and keeps running", async () => {
    const r = tether(["executors", "drain", id, "--data-dir", ctl.dataDir]);
    expect(r.status).toBe(0);
    await ex.waitForEvent("drain.requested", 10_000);
    await ex.waitFor(() => showExecutor(ctl.dataDir, id).status === "draining", "the controller to see draining", 10_000);
    expect(ex.child.exitCode).toBeNull();
  }, 30_000);

  it("SIGTERM: heartbeats draining, then exits 0", async () => {
    const r = await ex.kill("SIGTERM");
    expect(r.code).toBe(0);
    expect(ex.count("shutdown.started")).toBe(1);
    expect(ex.count("stopped")).toBe(1);
    expect(showExecutor(ctl.dataDir, id).status).toBe("draining");
  }, 20_000);
});
