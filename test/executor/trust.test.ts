/**
 * The daemon's half of the trust lifecycle (PROTOCOL §7.2, §7.4), against a stand-in
 * controller over real TLS with real CAs: adopting newer trust bundles (from
 * heartbeats by fetching, from renew and re-register answers), refusing unusable
 * ones, dropping CAs that left the bundle, the cross-signed handover, the exit when
 * every trusted CA is gone, and HMAC key rotation.
 */
import { beforeAll, describe, expect, it } from "vitest";
import { readdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { chainsTo } from "../../executor/certificate.ts";
import { ExitCode } from "../../executor/exit-codes.ts";
import { CHAIN_ERROR_CODES } from "../../executor/reactions.ts";
import { readStatus } from "../../executor/status.ts";
import { NoWork } from "../../executor/work.ts";
import type { DaemonOptions } from "../../executor/daemon/daemon.ts";
import { createChainCa, type ChainCa } from "../support/ca.ts";
import { daemonRuns, events, testDaemonOptions, untilEvent, type DaemonRun } from "../support/daemon.ts";
import { until } from "../support/daemon-wait.ts";
import { startTrustController, type TrustController } from "./trust-controller.ts";

let a: ChainCa, b: ChainCa;
beforeAll(async () => {
  a = await createChainCa("a");
  b = await createChainCa("b");
});

const daemons = daemonRuns();

async function controller(o: Parameters<typeof startTrustController>[0]): Promise<TrustController> {
  return daemons.closeAfterEach(await startTrustController(o));
}

function start(t: TrustController, o: Partial<DaemonOptions> = {}): DaemonRun {
  return daemons.start(testDaemonOptions({ controllerUrl: t.url, caFilePem: a.certPem, ...o }), new NoWork());
}

/** A daemon enrolled with `t` and stopped again: its state dir holds bundle version 1. */
async function enrolledStateDir(t: TrustController): Promise<string> {
  const run = start(t);
  await untilReported(t, 1);
  await daemons.stop(run, "SIGTERM");
  return run.stateDir;
}

/** A later start on `stateDir`: no token. */
const restart = (t: TrustController, stateDir: string, o: Partial<DaemonOptions> = {}) => start(t, { stateDir, token: () => undefined, ...o });

const heartbeats = (t: TrustController) => t.requests((r) => r.route === "heartbeat");
const reported = (t: TrustController) => heartbeats(t).map((r) => r.json.trust_bundle_version as number);
const caFile = (run: DaemonRun) => readFileSync(join(run.stateDir, "ca.pem"), "utf8");
const logged = (run: DaemonRun, event: string) => run.logs.filter((l) => l.event === event);
const untilReported = (t: TrustController, v: number) => until(() => reported(t).at(-1) === v, `a heartbeat reporting version ${v}`);

describe("trust bundle adoption", () => {
  it("reports the version held in every heartbeat, from the registration on; a newer one is fetched over the trusted connection, saved with its version and reported from the next heartbeat", async () => {
    const t = await controller({ cas: [a], active: a });
    const run = start(t);
    await untilEvent(run, "ready");
    expect(reported(t)[0]).toBe(1);
    expect(caFile(run)).toBe(`# tether-trust-bundle-version: 1\n${a.certPem}`);
    t.setBundle([a, b]);
    await untilReported(t, 2);
    const fetches = t.requests((r) => r.route === "bundle.pem");
    expect(fetches).toHaveLength(1);
    expect(fetches[0]!.certFingerprint).toBe(t.certFingerprint); // the executor's own mTLS connection
    expect(caFile(run)).toBe(`# tether-trust-bundle-version: 2\n${a.certPem}${b.certPem}`);
    expect(statSync(join(run.stateDir, "ca.pem")).mode & 0o777).toBe(0o600);
    expect(logged(run, "trust_bundle.updated").at(-1)).toMatchObject({ version: 2, previous_version: 1, source: "fetch", added: [b.ca.fingerprintSha256], removed: [] });
    expect([...reported(t)].sort((x, y) => x - y)).toEqual(reported(t)); // never backwards
    const { status } = readStatus(run.stateDir);
    expect(status.trust_bundle_version).toBe(2);
    expect(status.trusted_cas!.map((c) => c.fingerprint_sha256)).toEqual([a.ca.fingerprintSha256, b.ca.fingerprintSha256]);
    expect(events(run)).not.toContain("retrying");
  });

  it("a registration answer without a version (an older controller): reports 0, then fetches the version the first heartbeat answer names", async () => {
    const t = await controller({ cas: [a], active: a, registerVersion: false });
    const run = start(t);
    await untilReported(t, 1);
    expect(reported(t)[0]).toBe(0);
    expect(t.requests((r) => r.route === "bundle.pem")).toHaveLength(1);
    expect(logged(run, "trust_bundle.updated")).toMatchObject([{ version: 1, previous_version: 0, source: "fetch", added: [], removed: [] }]);
  });

  it("renew and re-register answers carry the bundle and its version: adopted the same way, with no fetch", async () => {
    const t = await controller({ cas: [a], active: a });
    const stateDir = await enrolledStateDir(t);
    t.setBundle([a, b]);
    const n = t.log.length;
    const again = restart(t, stateDir);
    await untilReported(t, 2);
    expect(t.log.slice(n).map((r) => r.route)).not.toContain("bundle.pem");
    expect(logged(again, "trust_bundle.updated")).toMatchObject([{ version: 2, previous_version: 1, source: "reregister" }]);
    expect(caFile(again)).toBe(`# tether-trust-bundle-version: 2\n${a.certPem}${b.certPem}`);
  });

  it("refuses a bundle that would cut it off, one that does not parse, and one holding a non-CA certificate: keeps the old one and says why", async () => {
    const t = await controller({ cas: [a], active: a });
    const run = start(t);
    await untilReported(t, 1);
    const before = caFile(run);
    const leaf = (await a.serverCert()).certPem;
    const cases: [ChainCa[], string | undefined, RegExp][] = [
      [[b], undefined, /does not chain to any CA in it/],
      [[a], "not a PEM bundle", /holds no certificate/],
      [[a], a.certPem + leaf, /certificate 2 .* is not a CA certificate/],
    ];
    for (const [cas, pem, reason] of cases) {
      t.setBundle(cas, { pem });
      await until(() => logged(run, "trust_bundle.rejected").some((l) => l.version === t.version), `version ${t.version} to be refused`);
      expect(logged(run, "trust_bundle.rejected").at(-1)).toMatchObject({ level: "warn", held_version: 1, source: "fetch", reason: expect.stringMatching(reason) });
      const n = heartbeats(t).length;
      await until(() => heartbeats(t).length > n, "a heartbeat after the refusal");
      expect(reported(t).at(-1)).toBe(1);
      expect(caFile(run)).toBe(before);
    }
    // A refused version is not fetched again at every heartbeat.
    expect(t.requests((r) => r.route === "bundle.pem")).toHaveLength(cases.length);
    expect(events(run)).not.toContain("retrying");
  });
});

describe("the cross-signed handover and the end of trust", () => {
  it("a daemon that trusts only the previous CA connects through the cross certificate, adopts the new bundle, renews onto the new CA and drops the old CA once it left", async () => {
    const t = await controller({ cas: [a], active: a });
    const stateDir = await enrolledStateDir(t);
    // Activated while the executor was stopped: it holds [a] only.
    t.setBundle([a, b]);
    await t.activate(b); // from now on the heartbeat tells a certificate from a to renew at once
    const again = restart(t, stateDir);
    await untilEvent(again, "cert.renewed");
    await until(() => !readdirSync(stateDir).some((f) => f.includes(".next")), "the new certificate promoted");
    const cert = readFileSync(join(stateDir, "cert.pem"), "utf8");
    expect(chainsTo(cert, b.certPem)).toBe(true);
    expect(logged(again, "trust_bundle.updated")[0]).toMatchObject({ version: 2, source: "reregister" });
    // The old CA leaves the bundle.
    t.setBundle([b]);
    await untilReported(t, 3);
    expect(caFile(again)).toBe(`# tether-trust-bundle-version: 3\n${b.certPem}`);
    expect(logged(again, "trust_bundle.updated").at(-1)).toMatchObject({ version: 3, removed: [a.ca.fingerprintSha256], added: [] });
    expect(events(again)).not.toContain("retrying");
    expect(t.requests((r) => r.route !== "register" && r.route !== "bundle.pem").every((r) => r.hmacWith)).toBe(true);

    // Dropped means dropped: a server certificate from the old CA no longer verifies, and the daemon says so.
    t.fake.serve(await a.serverCert());
    expect(await again.done).toBe(ExitCode.REENROLL_REQUIRED);
    expect(again.daemon.lastExit?.event).toBe("trust.lost");
    // (The stand-in sends its CA after the leaf: SELF_SIGNED_CERT_IN_CHAIN; the leaf alone: UNABLE_TO_VERIFY_LEAF_SIGNATURE.)
    expect(again.daemon.lastExit?.message).toMatch(new RegExp(`6 times in a row \\([A-Z_]+\\).*version 3: ${b.ca.fingerprintSha256}.*enrolled again`));
    expect(logged(again, "retrying").filter((l) => CHAIN_ERROR_CODES.has(l.code))).toHaveLength(5);
  });

  it("without the cross certificate the stranded daemon exits 4 after a few attempts, naming the way out, and sends nothing", async () => {
    const t = await controller({ cas: [a], active: a });
    const stateDir = await enrolledStateDir(t);
    t.setBundle([b]);
    await t.activate(b, { cross: false });
    const n = t.log.length;
    const again = restart(t, stateDir);
    expect(await again.done).toBe(ExitCode.REENROLL_REQUIRED);
    expect(again.daemon.lastExit?.message).toMatch(/Every CA executor ex_trust01 trusted has left the controller's bundle.*move .* away.*--join-command/);
    expect(t.log.length).toBe(n); // no request got through a TLS handshake
    expect(logged(again, "trust.lost")).toHaveLength(1);
  });

  it("a controller that is unverifiable only briefly (a proxy presenting a wrong certificate) stops no one: the failures must last", async () => {
    const t = await controller({ cas: [a], active: a });
    const run = start(t, { untrusted: { attempts: 3, forMs: 60_000 } });
    await untilEvent(run, "ready");
    const good = await a.serverCert();
    t.fake.serve(await b.serverCert());
    await until(() => logged(run, "retrying").filter((l) => CHAIN_ERROR_CODES.has(l.code)).length >= 4, "four chain failures");
    t.fake.serve(good);
    await untilEvent(run, "contact.restored");
    expect(run.daemon.lastExit).toBeUndefined();
    const n = heartbeats(t).length;
    await until(() => heartbeats(t).length > n, "heartbeats again");
  });

  it("--ca-file is used only until a bundle is saved: a later start verifies with the saved bundle alone", async () => {
    const t = await controller({ cas: [a], active: a });
    const stateDir = await enrolledStateDir(t);
    // A --ca-file naming another CA changes nothing: the saved bundle [a] is what is trusted.
    const again = restart(t, stateDir, { caFilePem: b.certPem });
    await untilEvent(again, "ready");
    expect(events(again)).not.toContain("retrying");
    expect(logged(again, "ca_option.unused")).toMatchObject([{ trust_bundle_version: 1 }]);
  });
});

describe("HMAC key rotation (PROTOCOL §7.4)", () => {
  it("a renew with a CSR switches the certificate and the HMAC key at once; both are promoted together", async () => {
    const t = await controller({ cas: [a], active: a, certTtlMs: 3000 });
    const run = start(t);
    await untilEvent(run, "ready");
    t.certTtlMs = 3600_000; // one rotation in this test: of the first certificate
    await untilEvent(run, "cert.renewed", 6000);
    const renewAt = t.log.findIndex((r) => r.route === "renew" && r.json?.csr_pem);
    await until(() => !readdirSync(run.stateDir).some((f) => f.includes(".next")), "the rotation promoted");
    await until(() => heartbeats(t).at(-1)!.certFingerprint === t.certFingerprint, "a heartbeat with the new certificate");
    // Never the new certificate with the old key, nor the old certificate with the new key.
    for (const r of t.log.slice(renewAt + 1).filter((x) => x.route === "heartbeat")) {
      expect(r.hmacWith).toBe(r.certFingerprint === t.certFingerprint ? "current" : "previous");
    }
    expect(JSON.parse(readFileSync(join(run.stateDir, "identity.json"), "utf8")).hmac_key).toBe(t.hmacKey.toString("base64url"));
    expect(events(run)).not.toContain("retrying");
  });

  it("every re-register brings a new key, saved before it is used; after a crash before the save, the previous key (still accepted) gets a new one", async () => {
    const t = await controller({ cas: [a], active: a });
    const stateDir = await enrolledStateDir(t);
    const identityFile = join(stateDir, "identity.json");
    const beforeRestart = readFileSync(identityFile, "utf8");
    const second = restart(t, stateDir);
    await untilEvent(second, "ready");
    expect(JSON.parse(readFileSync(identityFile, "utf8")).hmac_key).toBe(t.hmacKey.toString("base64url"));
    expect(heartbeats(t).at(-1)!.hmacWith).toBe("current");
    await daemons.stop(second, "SIGTERM");
    // As if the daemon had died between the re-register answer and saving its key.
    const lastRereg = t.requests((r) => r.route === "reregister").length;
    expect(JSON.parse(beforeRestart).hmac_key).toBe(t.previousHmacKey!.toString("base64url"));
    writeFileSync(identityFile, beforeRestart, { mode: 0o600 });
    const third = restart(t, stateDir);
    await untilEvent(third, "ready");
    const rereg = t.requests((r) => r.route === "reregister")[lastRereg]!;
    expect(rereg.hmacWith).toBe("previous");
    expect(heartbeats(t).at(-1)!.hmacWith).toBe("current");
    expect(JSON.parse(readFileSync(identityFile, "utf8")).hmac_key).toBe(t.hmacKey.toString("base64url"));
  });
});

describe("joining with a CA pin (PROTOCOL §7.6)", () => {
  it("the right pin: the bundle is fetched once without a client certificate, the registration is verified with the pinned CA, later starts need no pin", async () => {
    const t = await controller({ cas: [a, b], active: a });
    const run = start(t, { caFilePem: undefined, caPin: a.ca.fingerprintSha256 });
    await untilReported(t, 1);
    expect(t.log.slice(0, 2).map((r) => [r.route, r.certFingerprint])).toEqual([["bundle.pem", undefined], ["register", undefined]]);
    expect(logged(run, "ca_pin.verified")).toHaveLength(1);
    expect(caFile(run)).toBe(`# tether-trust-bundle-version: 1\n${a.certPem}${b.certPem}`);
    await daemons.stop(run, "SIGTERM");
    const again = restart(t, run.stateDir, { caFilePem: undefined });
    await untilEvent(again, "ready");
  });

  it("a wrong pin stops the daemon with exit 5 before anything else is sent: no registration, no token", async () => {
    const t = await controller({ cas: [a], active: a });
    const run = start(t, { caFilePem: undefined, caPin: b.ca.fingerprintSha256 });
    expect(await run.done).toBe(ExitCode.ENROLLMENT_FAILED);
    expect(run.daemon.lastExit).toMatchObject({ event: "ca_pin.mismatch" });
    expect(run.daemon.lastExit?.message).toContain(`SHA256:${b.ca.fingerprintSha256}`);
    expect(run.daemon.lastExit?.message).toContain(`it holds SHA256:${a.ca.fingerprintSha256}`);
    expect(run.daemon.lastExit?.message).toMatch(/no token left this host/);
    expect(t.log.map((r) => r.route)).toEqual(["bundle.pem"]);
    expect(JSON.stringify(t.log.map((r) => r.body.toString()))).not.toContain("tet_enr_");
  });

  it("only the pinned CA is trusted from the unverified download: a server certified by another CA in that bundle gets no token", async () => {
    const t = await controller({ cas: [a, b], active: a });
    t.fake.serve(await b.serverCert()); // e.g. someone in the middle adding their CA to the bundle
    const run = start(t, { caFilePem: undefined, caPin: a.ca.fingerprintSha256 });
    expect(await run.done).toBe(ExitCode.ENROLLMENT_FAILED);
    expect(run.daemon.lastExit).toMatchObject({ event: "enrollment.untrusted" });
    expect(run.daemon.lastExit?.message).toMatch(/the CA pinned with --ca-fingerprint/);
    expect(t.log.map((r) => r.route)).toEqual(["bundle.pem"]);
  });

  it("a controller without the bundle route: exit 5 naming the answer, nothing sent", async () => {
    const t = await controller({ cas: [a], active: a });
    t.script["bundle.pem"] = [{ status: 404, body: { error: { code: "NOT_FOUND", message: "no route" } } }];
    const run = start(t, { caFilePem: undefined, caPin: a.ca.fingerprintSha256 });
    expect(await run.done).toBe(ExitCode.ENROLLMENT_FAILED);
    expect(run.daemon.lastExit).toMatchObject({ event: "ca_pin.unavailable" });
    expect(t.log.map((r) => r.route)).toEqual(["bundle.pem"]);
  });
});
