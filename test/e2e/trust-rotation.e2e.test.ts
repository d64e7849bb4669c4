/**
 * Every trust root rotates online (PROTOCOL §7), with real processes and short lifetimes:
 * three daemons heartbeat while the CA is rotated and activated by hand, the JWT key is
 * rotated twice, and the schedule (`--ca-ttl 60s`) prepares and activates the next CA on
 * its own. No request fails, nobody enrolls again, every executor ends on a certificate
 * of the newest CA, and the first CA leaves the bundle once its last certificate expired.
 */
import { afterAll, describe, expect, it } from "vitest";
import { X509Certificate } from "node:crypto";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { createToken, killAll, sleep, startController, startExecutor, tempDir, tether, type Controller, type Proc } from "./harness.ts";

afterAll(async () => {
  await killAll();
});

interface CaStatusJson {
  trust_bundle_version: number;
  cas: { fingerprint_sha256: string; state: string; not_after: string; pending: string[]; adopted_by: number }[];
  jwt_keys: { kid: string; state: string }[];
}

function caStatus(ctl: Controller): CaStatusJson {
  const r = tether(["ca", "status", "--data-dir", ctl.dataDir, "--json"]);
  if (r.status !== 0) throw new Error(`ca status: ${r.stderr}`);
  return JSON.parse(r.stdout) as CaStatusJson;
}

async function until(what: string, ok: () => boolean, timeoutMs: number): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!ok()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(250);
  }
}

/** The fingerprint (colon hex) of the CA that issued the certificate in a daemon's state dir. */
function issuerOf(stateDir: string, ctl: Controller): string | undefined {
  const cert = new X509Certificate(readFileSync(join(stateDir, "cert.pem")));
  const bundle = tether(["ca", "bundle", "--data-dir", ctl.dataDir]).stdout;
  for (const block of bundle.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? []) {
    const ca = new X509Certificate(block);
    if (cert.checkIssued(ca) && cert.verify(ca.publicKey)) return ca.fingerprint256;
  }
  return undefined;
}

const active = (s: CaStatusJson) => s.cas.find((c) => c.state === "active")!;
/** Log lines that mean a request failed or something went wrong. */
const failures = (p: Proc) => p.logs().filter((l) => l.event === "retrying" || (typeof l.level === "string" && ["error", "fatal"].includes(l.level)));

describe("trust lifecycle (e2e)", () => {
  it("CA rotated by hand and by schedule, JWT key rotated twice, while three daemons heartbeat: nothing fails", async () => {
    const ctl = await startController({ heartbeat: "1s", jwtTtl: "6s", certTtl: "30s", args: ["--ca-ttl", "60s"] });
    const token = createToken(ctl.dataDir, ["--uses", "3"]);
    const dirs = [0, 1, 2].map(() => join(tempDir(), "state"));
    const daemons = dirs.map((d) => startExecutor(ctl, d, ["--token", token]));
    await Promise.all(daemons.map((d) => d.waitForEvent("ready", 20_000)));
    const first = active(caStatus(ctl)).fingerprint_sha256;

    // ── by hand: rotate, wait for adoption, activate ──────────────────────────────────
    const rotated = tether(["ca", "rotate", "--data-dir", ctl.dataDir, "--json"]);
    expect(rotated.status, rotated.stderr).toBe(0);
    const second = (JSON.parse(rotated.stdout) as { fingerprint_sha256: string }).fingerprint_sha256;
    await until("every daemon to adopt the prepared CA", () => caStatus(ctl).cas.find((c) => c.fingerprint_sha256 === second)?.pending.length === 0, 15_000);
    const activated = tether(["ca", "activate", "--data-dir", ctl.dataDir]);
    expect(activated.status, activated.stderr).toBe(0);
    expect(active(caStatus(ctl)).fingerprint_sha256).toBe(second);
    await until("every daemon to renew onto the second CA", () => dirs.every((d) => issuerOf(d, ctl) === second), 20_000);

    // ── the JWT key, twice (each next key must have been published for one JWT lifetime) ──
    const kids: string[] = [];
    for (let i = 0; i < 2; i++) {
      let r = tether(["jwt-key", "rotate", "--data-dir", ctl.dataDir, "--json"]);
      for (let tries = 0; r.status !== 0 && tries < 20; tries++) {
        await sleep(1_000);
        r = tether(["jwt-key", "rotate", "--data-dir", ctl.dataDir, "--json"]);
      }
      expect(r.status, r.stderr).toBe(0);
      kids.push((JSON.parse(r.stdout) as { kid: string; state: string }[]).find((k) => k.state === "active")!.kid);
    }
    expect(new Set(kids).size).toBe(2);
    // Each daemon's next JWT comes from the newest key.
    await Promise.all(daemons.map((d) => d.waitFor(() => d.count("jwt.renewed") >= 3, "JWT renewals after the key rotations", 20_000)));

    // ── the schedule: the second CA (60 s) gets a successor prepared at ½ and activated at ⅙ ──
    await until("the schedule to activate a third CA", () => ![first, second].includes(active(caStatus(ctl)).fingerprint_sha256), 70_000);
    const third = active(caStatus(ctl)).fingerprint_sha256;
    await until("every daemon to renew onto the third CA", () => dirs.every((d) => issuerOf(d, ctl) === third), 20_000);

    // ── the first CA leaves the bundle once the last certificate it signed has expired ──
    const firstNotAfter = Date.parse(caStatus(ctl).cas.find((c) => c.fingerprint_sha256 === first)?.not_after ?? "0");
    await until("the first CA to leave the bundle", () => !caStatus(ctl).cas.some((c) => c.fingerprint_sha256 === first), 40_000);
    expect(Date.now()).toBeGreaterThanOrEqual(firstNotAfter - 60_000); // not before its certificates could have expired

    for (const [i, d] of daemons.entries()) {
      expect(failures(d), `daemon ${i}: ${JSON.stringify(failures(d).slice(0, 3))}`).toEqual([]);
      expect(d.count("enrolled"), `daemon ${i} enrolled once`).toBe(1);
      expect(d.count("trust_bundle.updated"), `daemon ${i} adopted bundles`).toBeGreaterThanOrEqual(2);
    }
    await Promise.all(daemons.map((d) => d.kill("SIGTERM")));
    await ctl.stop();
  }, 180_000);
});
