/**
 * The trust lifecycle's edges with real processes (PROTOCOL §7): activation waits for an
 * executor that has not adopted (409 naming it; --force overrides), a daemon stopped
 * across an activation comes back through the cross-signed chain, a revocation shows in
 * the CRL that `openssl verify -crl_check` reads within a second, and a new host joins
 * with a CA pin — or, with a wrong pin, sends nothing.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { spawnSync } from "node:child_process";
import { X509Certificate } from "node:crypto";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { createToken, killAll, listExecutors, sleep, start, startController, startExecutor, tempDir, tether, type Controller, type Proc } from "./harness.ts";

let ctl: Controller;
const hasOpenssl = spawnSync("openssl", ["version"]).status === 0;

beforeAll(async () => {
  // A stopped daemon stays "live" (pending) for 6 heartbeat intervals: 18 s covers the CLI
  // calls the activation test makes meanwhile (each starts a process: seconds on a busy machine).
  ctl = await startController({ heartbeat: "3s", jwtTtl: "10s", certTtl: "10m" });
}, 30_000);
afterAll(async () => {
  await killAll();
});

function caStatus(): { cas: { fingerprint_sha256: string; state: string; pending: string[] }[] } {
  return JSON.parse(tether(["ca", "status", "--data-dir", ctl.dataDir, "--json"]).stdout);
}
const activeFp = () => caStatus().cas.find((c) => c.state === "active")!.fingerprint_sha256;

async function until(what: string, ok: () => boolean, timeoutMs: number): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!ok()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(200);
  }
}

function issuedBy(stateDir: string, fingerprint: string): boolean {
  const cert = new X509Certificate(readFileSync(join(stateDir, "cert.pem")));
  const bundle = tether(["ca", "bundle", "--data-dir", ctl.dataDir]).stdout;
  const ca = (bundle.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? []).map((b) => new X509Certificate(b)).find((c) => c.fingerprint256 === fingerprint);
  return !!ca && cert.checkIssued(ca) && cert.verify(ca.publicKey);
}

async function daemon(): Promise<{ p: Proc; dir: string; id: string }> {
  const dir = join(tempDir(), "state");
  const p = startExecutor(ctl, dir, ["--token", createToken(ctl.dataDir)]);
  const id = (await p.waitForEvent("enrolled", 20_000)).executor_id as string;
  await p.waitForEvent("ready", 10_000);
  return { p, dir, id };
}

describe("trust lifecycle edges (e2e)", () => {
  it("activation waits for an executor that has not adopted: 409 naming it; --force activates anyway, and it catches up", async () => {
    const [a, b] = await Promise.all([daemon(), daemon()]);
    b.p.child.kill("SIGSTOP"); // alive for the controller (not offline yet), but it adopts nothing
    expect(tether(["ca", "rotate", "--data-dir", ctl.dataDir]).status).toBe(0);
    const prepared = caStatus().cas.find((c) => c.state === "prepared")!;
    await until("the running daemon to adopt", () => JSON.stringify(caStatus().cas.find((c) => c.state === "prepared")?.pending) === JSON.stringify([b.id]), 10_000);
    const refused = tether(["ca", "activate", "--data-dir", ctl.dataDir]);
    expect(refused.status).not.toBe(0);
    expect(refused.stderr).toContain(b.id);
    expect(refused.stderr).not.toContain(a.id);
    const forced = tether(["ca", "activate", "--force", "--data-dir", ctl.dataDir]);
    expect(forced.status, forced.stderr).toBe(0);
    expect(activeFp()).toBe(prepared.fingerprint_sha256);
    b.p.child.kill("SIGCONT");
    await until("both daemons to renew onto the new CA", () => issuedBy(a.dir, prepared.fingerprint_sha256) && issuedBy(b.dir, prepared.fingerprint_sha256), 30_000);
    expect(a.p.count("enrolled") + b.p.count("enrolled")).toBe(2);
    await Promise.all([a.p.kill(), b.p.kill()]);
  }, 90_000);

  it("a daemon stopped before an activation connects after it through the cross-signed chain, adopts and renews", async () => {
    const c = await daemon();
    await c.p.kill("SIGTERM");
    expect(tether(["ca", "rotate", "--data-dir", ctl.dataDir]).status).toBe(0);
    expect(tether(["ca", "activate", "--force", "--data-dir", ctl.dataDir]).status).toBe(0);
    const fp = activeFp();
    // Its state dir trusts only the previous CA; the controller now serves a certificate of the new one.
    const again = startExecutor(ctl, c.dir);
    await again.waitForEvent("reregistered", 20_000);
    await again.waitForEvent("trust_bundle.updated", 20_000);
    await until("the restarted daemon to renew onto the new CA", () => issuedBy(c.dir, fp), 30_000);
    expect(again.count("enrolled")).toBe(0);
    expect(again.logs().filter((l) => l.event === "retrying")).toEqual([]);
    await again.kill();
  }, 90_000);

  it.skipIf(!hasOpenssl)("openssl verify -crl_check: a revoked executor's certificate is revoked within a second of `tether executors revoke`, a live one OK", async () => {
    const [live, doomed] = await Promise.all([daemon(), daemon()]);
    const work = tempDir("tether-crl-");
    const bundle = join(work, "bundle.pem");
    writeFileSync(bundle, tether(["ca", "bundle", "--data-dir", ctl.dataDir]).stdout);
    const revoked = tether(["executors", "revoke", doomed.id, "--data-dir", ctl.dataDir]);
    expect(revoked.status, revoked.stderr).toBe(0);
    const at = Date.now();
    // Within a second, as a third party would see it: from the controller's public route.
    const { request, Agent } = await import("undici");
    const agent = new Agent({ connect: { ca: readFileSync(bundle) } });
    const crl = await (await request(`${ctl.url}/v1/ca/crl.pem`, { dispatcher: agent })).body.text();
    await agent.close();
    expect(Date.now() - at).toBeLessThan(1_000);
    writeFileSync(join(work, "crl.pem"), crl);
    const verify = (dir: string) =>
      spawnSync("openssl", ["verify", "-crl_check", "-CAfile", bundle, "-CRLfile", join(work, "crl.pem"), join(dir, "cert.pem")], { encoding: "utf8" });
    const bad = verify(doomed.dir);
    expect(bad.status).not.toBe(0);
    expect(bad.stdout + bad.stderr).toMatch(/certificate revoked/);
    const ok = verify(live.dir);
    expect(ok.stdout.trim(), ok.stderr).toMatch(/: OK$/);
    await doomed.p.exited; // CERT_REVOKED: the daemon stops on its own
    await live.p.kill();
  }, 60_000);

  it("--ca-fingerprint: the join command enrolls a new host; a wrong pin exits non-zero and nothing reaches /register", async () => {
    const join_ = tether(["token", "create", "--data-dir", ctl.dataDir, "--join-command", ctl.url]);
    expect(join_.status, join_.stderr).toBe(0);
    const argv = join_.stdout.trim().split(" ");
    expect(argv.slice(0, 3)).toEqual(["tether", "executor", "run"]);
    const dir = join(tempDir(), "state");
    const args = argv.slice(1);
    args[args.indexOf("--state-dir") + 1] = dir;
    const joined = start([...args, "--log-level", "debug"]);
    await joined.waitForEvent("ready", 20_000);
    expect(joined.count("ca_pin.verified")).toBe(1);
    await joined.kill();

    const before = listExecutors(ctl.dataDir).length;
    const wrongPin = "SHA256:" + "AB:".repeat(31) + "AB";
    const token = createToken(ctl.dataDir);
    const stranger = start(["executor", "run", "--controller", ctl.url, "--ca-fingerprint", wrongPin, "--state-dir", join(tempDir(), "state"), "--token", token]);
    const exit = await stranger.exited;
    expect(exit.code).not.toBe(0);
    expect(stranger.stderr()).toMatch(/fingerprint/i);
    expect(listExecutors(ctl.dataDir)).toHaveLength(before);
    // The token was never used: it still enrolls someone.
    const tokens = JSON.parse(tether(["token", "list", "--data-dir", ctl.dataDir, "--json"]).stdout) as { uses: number; state: string }[];
    expect(tokens.at(-1)).toMatchObject({ uses: 0, state: "active" });
  }, 60_000);
});
