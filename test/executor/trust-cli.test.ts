/**
 * `tether executor run` / `status` and the trust options (PROTOCOL §6, §7.6), as real
 * processes against a stand-in controller: exactly one of --ca-file /
 * --ca-fingerprint on a first start, neither needed once a bundle is saved, a wrong
 * pin ends with exit 5, and `status` shows the trust bundle. (A daemon is always
 * spawned, never run with spawnSync: the stand-in answers from this process.)
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { createChainCa, type ChainCa } from "../support/ca.ts";
import { spawnTether, tether } from "../support/process.ts";
import { tempDir } from "../support/temp-dir.ts";
import { startTrustController, type TrustController } from "./trust-controller.ts";

let a: ChainCa, b: ChainCa, t: TrustController;
beforeAll(async () => {
  a = await createChainCa("a");
  b = await createChainCa("b");
  t = await startTrustController({ cas: [a], active: a, heartbeatS: 1 });
});
afterAll(async () => {
  await t?.close();
});

/** As an operator types it: no colons, lower case. */
const typed = (c: ChainCa) => `sha256:${c.ca.fingerprintSha256.replace(/:/g, "").toLowerCase()}`;
const run = (stateDir: string, extra: string[]) => ["executor", "run", "--controller", t.url, "--state-dir", stateDir, "--log-level", "info", ...extra];

describe("tether executor run: how the controller is verified", () => {
  it("refuses both --ca-file and --ca-fingerprint, neither on a first start, and a malformed fingerprint (exit 2)", () => {
    const stateDir = join(tempDir(), "state");
    const caFile = join(tempDir(), "ca.pem");
    writeFileSync(caFile, a.certPem);
    const both = tether(run(stateDir, ["--ca-file", caFile, "--ca-fingerprint", typed(a), "--token", "tet_enr_x"]));
    expect(both.status).toBe(2);
    expect(both.stderr).toMatch(/either --ca-file or --ca-fingerprint, not both/);
    const neither = tether(run(stateDir, ["--token", "tet_enr_x"]));
    expect(neither.status).toBe(2);
    expect(neither.stderr).toMatch(/holds no trust bundle yet: give --ca-file FILE or --ca-fingerprint/);
    const bad = tether(run(stateDir, ["--ca-fingerprint", "SHA256:12:34", "--token", "tet_enr_x"]));
    expect(bad.status).toBe(2);
    expect(bad.stderr).toMatch(/--ca-fingerprint expects SHA256: and 64 hex digits/);
    expect(t.log).toHaveLength(0);
  });

  it("joins with a pin typed without colons in lower case; later starts need neither option; status shows the bundle", async () => {
    const stateDir = join(tempDir(), "state");
    const first = spawnTether(run(stateDir, ["--ca-fingerprint", typed(a), "--token", "tet_enr_cli"]));
    await first.waitFor(/"event":"ready"/);
    expect(await first.stop()).toBe(0);
    const later = spawnTether(run(stateDir, []));
    await later.waitFor(/"event":"ready"/);
    expect(await later.stop()).toBe(0);

    const json = tether(["executor", "status", "--state-dir", stateDir, "--json"]);
    expect(json.status).toBe(0);
    expect(JSON.parse(json.stdout)).toMatchObject({ trust_bundle_version: 1, trusted_cas: [{ fingerprint_sha256: a.ca.fingerprintSha256, subject: expect.stringContaining("Tether test CA a") }] });
    const text = tether(["executor", "status", "--state-dir", stateDir]).stdout;
    expect(text).toMatch(/trust_bundle\s+version 1/);
    expect(text).toMatch(new RegExp(`trusted_ca +SHA256:${a.ca.fingerprintSha256} CN=Tether test CA a`));
  });

  it("a wrong pin: exit 5, a one-line reason, and the controller received no registration", async () => {
    const before = t.log.length;
    // Spawned, not spawnSync: the stand-in controller answers from this process.
    const p = spawnTether(run(join(tempDir(), "state"), ["--ca-fingerprint", typed(b), "--token", "tet_enr_wrong"]));
    expect(await p.exited).toBe(5);
    expect(p.stderr().trim().split("\n").at(-1)).toMatch(/^tether executor run: the CA bundle served at .* holds no CA certificate with the fingerprint .*no token left this host/);
    expect(t.log.slice(before).map((x) => x.route)).toEqual(["bundle.pem"]);
  });
});
