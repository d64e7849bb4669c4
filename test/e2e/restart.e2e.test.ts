/**
 * Restarts: `kill -9` of the executor and a restart on the same state dir
 * (re-register, epoch + 1, no token), and a controller restart the executor
 * rides out without re-enrolling. Real processes, real mTLS on loopback.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { join } from "node:path";
import { createToken, executorStatus, killAll, listExecutors, showExecutor, sleep, startController, startExecutor, tempDir, type Controller, type Proc } from "./harness.ts";

let ctl: Controller;
let stateDir: string;
let id: string;
let ex: Proc;

beforeAll(async () => {
  ctl = await startController({ certTtl: "1h", jwtTtl: "20s", heartbeat: "1s" });
  stateDir = join(tempDir(), "state");
  ex = startExecutor(ctl, stateDir, ["--token", createToken(ctl.dataDir), "--name", "e2e-restart"]);
  id = (await ex.waitForEvent("enrolled", 20_000)).executor_id;
  await ex.waitForEvent("ready", 10_000);
}, 60_000);
afterAll(async () => {
  await killAll();
});

describe("restarts (e2e)", () => {
  it("kill -9, then a restart on the same state dir re-registers at epoch + 1 without a token", async () => {
    expect(showExecutor(ctl.dataDir, id).epoch).toBe(1);
    const r = await ex.kill("SIGKILL");
    expect(r.signal).toBe("SIGKILL");
    ex = startExecutor(ctl, stateDir); // no --token, no --token-file
    const rereg = await ex.waitForEvent("reregistered", 20_000);
    expect(rereg).toMatchObject({ executor_id: id, epoch: 2, previous_epoch: 1, reason: "restart" });
    await ex.waitForEvent("ready", 10_000);
    expect(ex.count("enrolled")).toBe(0);
    const v = showExecutor(ctl.dataDir, id);
    expect(v).toMatchObject({ id, epoch: 2, status: "ready" });
    expect(executorStatus(stateDir).json).toMatchObject({ executor_id: id, epoch: 2, health: "ok" });
    expect(listExecutors(ctl.dataDir)).toHaveLength(1);
  }, 40_000);

  it("a second daemon on the same state dir refuses to start (it would fight over the epoch)", async () => {
    const twin = startExecutor(ctl, stateDir);
    const r = await twin.exited;
    expect(r.code).toBe(1);
    expect(twin.stderr()).toMatch(/another executor is using .*; stop it first \(pid \d+ holds /);
    expect(ex.child.exitCode).toBeNull();
    expect(showExecutor(ctl.dataDir, id).epoch).toBe(2);
  }, 20_000);

  it("rides out a controller restart: same executor id, same epoch, no new enrollment, back to ready", async () => {
    const renewedBefore = ex.count("jwt.renewed");
    await ctl.restart();
    // While the controller was gone the executor backed off; now it carries on.
    const beatsAfterRestart = ex.count("heartbeat");
    await ex.waitFor(() => ex.count("heartbeat") >= beatsAfterRestart + 2, "heartbeats after the restart", 20_000);
    for (const r of ex.logs().filter((l) => l.event === "retrying")) expect(r.delay_ms).toBeGreaterThanOrEqual(250);
    expect(ex.child.exitCode).toBeNull();
    expect(ex.count("enrolled")).toBe(0);
    expect(ex.count("reregistered")).toBe(1); // only the one from the restart of the executor
    const v = showExecutor(ctl.dataDir, id);
    expect(v).toMatchObject({ id, epoch: 2, status: "ready", revoked: false });
    expect(Date.now() - Date.parse(v.last_seen_at!)).toBeLessThan(5_000);
    expect(listExecutors(ctl.dataDir).map((e) => e.id)).toEqual([id]);
    // And the JWT keeps renewing against the restarted controller.
    await ex.waitFor(() => ex.count("jwt.renewed") > renewedBefore, "a JWT renewal after the restart", 20_000);
    await sleep(1500);
    expect(showExecutor(ctl.dataDir, id).status).toBe("ready");
  }, 60_000);
});
