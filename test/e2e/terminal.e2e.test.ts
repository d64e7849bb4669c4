/**
 * The terminal cases: revocation (exit 3, naming it, no retry loop) and an
 * identity that expired while the daemon was stopped (exit 4 with a clear
 * re-enroll message, or re-enrollment by itself with a valid --token-file).
 * Real processes, real mTLS on loopback.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { createToken, executorStatus, killAll, showExecutor, sleep, startController, startExecutor, tempDir, tether, type Controller } from "./harness.ts";

let ctl: Controller;

beforeAll(async () => {
  ctl = await startController({ certTtl: "6s", jwtTtl: "20s", heartbeat: "1s" });
}, 30_000);
afterAll(async () => {
  await killAll();
});

describe("terminal conditions (e2e)", () => {
  it("revocation → the daemon exits 3 naming the revocation, without a retry loop", async () => {
    const stateDir = join(tempDir(), "state");
    const ex = startExecutor(ctl, stateDir, ["--token", createToken(ctl.dataDir)]);
    const id = (await ex.waitForEvent("enrolled", 20_000)).executor_id;
    await ex.waitForEvent("ready", 10_000);
    const revoked = tether(["executors", "revoke", id, "--data-dir", ctl.dataDir]);
    expect(revoked.status).toBe(0);
    const t0 = Date.now();
    const r = await ex.exited;
    expect(r.code).toBe(3);
    expect(Date.now() - t0).toBeLessThan(5_000); // its very next request
    const fatal = ex.logs().find((l) => l.level === "fatal")!;
    expect(fatal).toMatchObject({ event: "revoked", executor_id: id, exit_code: 3 });
    expect(fatal.msg).toMatch(/revoked/);
    expect(fatal.msg).toMatch(/CERT_REVOKED/);
    expect(ex.stderr()).toMatch(new RegExp(`tether executor run: executor ${id} has been revoked`));
    expect(ex.count("retrying")).toBe(0);
    expect(showExecutor(ctl.dataDir, id)).toMatchObject({ revoked: true, status: "revoked" });

    // status says so too (exit 3), and a restart does not loop either.
    const s = executorStatus(stateDir);
    expect(s.code).toBe(3);
    expect(s.json.health).toBe("revoked");
    const again = startExecutor(ctl, stateDir);
    expect((await again.exited).code).toBe(3);
    expect(again.stderr()).toMatch(/revoked/);
  }, 40_000);

  it("identity expired while stopped → a clear re-enroll message and exit 4; with a new --token-file it re-enrolls by itself", async () => {
    const stateDir = join(tempDir(), "state");
    const ex = startExecutor(ctl, stateDir, ["--token", createToken(ctl.dataDir)]);
    const oldId = (await ex.waitForEvent("enrolled", 20_000)).executor_id;
    await ex.waitForEvent("ready", 10_000);
    expect((await ex.kill("SIGTERM")).code).toBe(0);
    expect(showExecutor(ctl.dataDir, oldId).status).toBe("draining"); // the SIGTERM heartbeat
    const expiresAt = Date.parse(executorStatus(stateDir).json.cert_expires_at);
    await sleep(Math.max(0, expiresAt - Date.now()) + 1_200);

    const s = executorStatus(stateDir);
    expect(s.code).toBe(4);
    expect(s.json.health).toBe("expired");
    expect(s.stderr).toMatch(/re-enroll/);

    const stale = startExecutor(ctl, stateDir);
    const r = await stale.exited;
    expect(r.code).toBe(4);
    expect(stale.stderr()).toMatch(new RegExp(`tether executor run: the identity of executor ${oldId} expired at .* re-enroll: create a token with "tether token create" and start again with --token-file`));
    expect(stale.logs().find((l) => l.level === "fatal")).toMatchObject({ event: "identity.expired", exit_code: 4 });

    // With a valid token file it re-enrolls by itself into the same state dir.
    const tokenFile = join(tempDir(), "token");
    writeFileSync(tokenFile, createToken(ctl.dataDir), { mode: 0o600 });
    const fresh = startExecutor(ctl, stateDir, ["--token-file", tokenFile]);
    const enrolled = await fresh.waitForEvent("enrolled", 20_000);
    expect(enrolled.executor_id).not.toBe(oldId);
    expect(enrolled.reason).toBe("identity expired");
    await fresh.waitForEvent("ready", 10_000);
    expect(showExecutor(ctl.dataDir, enrolled.executor_id).status).toBe("ready");
    expect(executorStatus(stateDir).json).toMatchObject({ executor_id: enrolled.executor_id, health: "ok", epoch: 1 });
    expect((await fresh.kill("SIGTERM")).code).toBe(0);
  }, 60_000);

  it("no identity and no token → exit 5 with the way out; a used token → exit 5 naming ENROLLMENT_DENIED", async () => {
    const none = startExecutor(ctl, join(tempDir(), "state"));
    expect((await none.exited).code).toBe(5);
    expect(none.stderr()).toMatch(/no enrollment token: create one with "tether token create"/);

    const token = createToken(ctl.dataDir);
    const first = startExecutor(ctl, join(tempDir(), "state"), ["--token", token]);
    await first.waitForEvent("ready", 20_000);
    const second = startExecutor(ctl, join(tempDir(), "state"), ["--token", token]);
    expect((await second.exited).code).toBe(5);
    expect(second.stderr()).toMatch(/ENROLLMENT_DENIED/);
    await first.kill("SIGTERM");
  }, 40_000);
});
