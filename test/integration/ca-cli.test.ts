/**
 * The CA set through the real CLI and across processes (PROTOCOL §6, §7): `tether ca
 * status|rotate|activate|crl|show|bundle` on the data dir and over --url; a change made by
 * the CLI reaches the running controller within a poll (its bundle, its server
 * certificate); a revocation by the CLI is in the CRL at once (`openssl verify
 * -crl_check`); and the import of a data dir written by an earlier version.
 */
import { describe, expect, it } from "vitest";
import { copyFileSync, existsSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { spawnSync } from "node:child_process";
import { connect } from "node:tls";
import { X509Certificate } from "node:crypto";
import { parseBundle } from "../../certs/bundle.ts";
import { caFingerprint } from "../../shared/fingerprint.ts";
import type { TestController } from "../support/controller.ts";
import { WireClient } from "../support/wire.ts";
import { heartbeat, trustFixture } from "../support/trust.ts";
import { spawnTether, tether } from "../support/process.ts";
import { tempDir } from "../support/temp-dir.ts";
import { writeLegacyCa } from "../support/legacy-ca.ts";
import { hasOpenssl } from "../certs/helpers.ts";

const t = trustFixture();
const controller = t.controller;
const enroll = t.enroll;

async function bundleVersion(tc: TestController): Promise<number> {
  const anon = new WireClient(tc.url, tc.caPem);
  try {
    return Number((await anon.send("GET", "/v1/ca/bundle.pem")).headers["x-tether-bundle-version"]);
  } finally {
    await anon.close();
  }
}

/** The issuer (subject text) of the server certificate a new connection gets. */
function serverIssuer(port: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = connect({ host: "127.0.0.1", port, rejectUnauthorized: false, servername: "localhost" }, () => {
      resolve(s.getPeerX509Certificate()?.issuer ?? "");
      s.end();
    });
    s.on("error", reject);
  });
}

/** The CLI against this process's own controller: asynchronous, or the controller could not answer. */
async function tetherAsync(args: string[]): Promise<{ status: number | null; stdout: string; stderr: string }> {
  const p = spawnTether(args);
  const status = await p.exited;
  return { status, stdout: p.stdout(), stderr: p.stderr() };
}

async function within<T>(ms: number, what: string, fn: () => Promise<T | undefined>): Promise<{ value: T; elapsedMs: number }> {
  const start = Date.now();
  for (;;) {
    const value = await fn();
    if (value !== undefined) return { value, elapsedMs: Date.now() - start };
    if (Date.now() - start > ms) throw new Error(`not within ${ms} ms: ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

function opensslVerify(dir: string, certPem: string, bundlePem: string, crlPem: string): { ok: boolean; output: string } {
  writeFileSync(join(dir, "cert.pem"), certPem);
  writeFileSync(join(dir, "bundle.pem"), bundlePem);
  writeFileSync(join(dir, "crl.pem"), crlPem);
  const r = spawnSync("openssl", ["verify", "-crl_check", "-CAfile", "bundle.pem", "-CRLfile", "crl.pem", "cert.pem"], { cwd: dir, encoding: "utf8" });
  return { ok: r.status === 0, output: r.stdout + r.stderr };
}

describe("tether ca on the data dir, while the controller runs", () => {
  it("rotate → the controller serves the new bundle within a poll; activate is refused naming the pending executor, then works; the controller's server certificate follows", async () => {
    const tc = await controller();
    const e = await enroll(tc);
    await heartbeat(e, 1);
    const d = ["--data-dir", tc.dataDir];

    const rotated = tether(["ca", "rotate", ...d, "--json"]);
    expect(rotated.status, rotated.stderr).toBe(0);
    const prepared = JSON.parse(rotated.stdout);
    expect(prepared).toMatchObject({ state: "prepared", pending: [e.id] });
    expect(rotated.stderr).toContain(`prepared CA SHA256:${prepared.fingerprint_sha256}`);
    const seen = await within(1500, "the controller to serve bundle version 2", async () => ((await bundleVersion(tc)) === 2 ? true : undefined));
    expect(seen.elapsedMs).toBeLessThan(1500);

    const status = tether(["ca", "status", ...d, "--json"]);
    expect(status.status, status.stderr).toBe(0);
    expect(JSON.parse(status.stdout)).toMatchObject({
      trust_bundle_version: 2, cas: [{ state: "active", adopted_by: 1 }, { state: "prepared", adopted_by: 0, pending: [e.id] }], jwt_keys: expect.any(Array),
    });
    const human = tether(["ca", "status", ...d]);
    expect(human.stdout).toMatch(/trust bundle version 2/);
    expect(human.stdout).toMatch(new RegExp(`prepared\\s+SHA256:${prepared.fingerprint_sha256}\\s+\\S+\\s+0\\s+${e.id}`));

    const refused = tether(["ca", "activate", ...d]);
    expect(refused.status).toBe(1);
    expect(refused.stderr.trim()).toBe(`tether ca activate: refused: 1 live executor(s) have not adopted the prepared CA yet: ${e.id} (wait for their next heartbeats, or pass --force)`);

    expect((await heartbeat(e, 2)).json.trust_bundle_version).toBe(2);
    const before = await serverIssuer(tc.c.port);
    const activated = tether(["ca", "activate", ...d]);
    expect(activated.status, activated.stderr).toBe(0);
    expect(activated.stderr).toContain(`activated CA SHA256:${prepared.fingerprint_sha256}`);
    const newSubject = parseBundle(readFileSync(join(tc.dataDir, "ca.pem"), "utf8")).find((c) => caFingerprint(c.raw) === prepared.fingerprint_sha256)!.subject;
    const moved = await within(1500, "the server certificate to be re-issued by the new CA", async () => {
      const issuer = await serverIssuer(tc.c.port);
      return issuer === newSubject ? issuer : undefined;
    });
    expect(before).not.toBe(newSubject);
    expect(moved.elapsedMs).toBeLessThan(1500);

    const show = tether(["ca", "show", ...d, "--json"]);
    expect(JSON.parse(show.stdout).map((c: { state: string }) => c.state)).toEqual(["retired", "active"]);
    const bundle = tether(["ca", "bundle", ...d]);
    expect(parseBundle(bundle.stdout)).toHaveLength(2);
    expect(bundle.stderr).toContain("trust bundle version 2");
  }, 60_000);

  it("over --url with an API token: status, rotate, force-activate, show, bundle and crl; a viewer is refused rotate (403 FORBIDDEN)", async () => {
    const tc = await controller();
    const e = await enroll(tc);
    await heartbeat(e, 1);
    const admin = (await tc.c.ctx.apiTokens.create({ name: "cli-admin", role: "admin" }, "test", { via: "test" })).token;
    const viewer = (await tc.c.ctx.apiTokens.create({ name: "cli-viewer", role: "viewer" }, "test", { via: "test" })).token;
    const caFile = join(tempDir(), "ca.pem");
    writeFileSync(caFile, tc.caPem);
    const remote = (token: string) => ["--url", tc.url, "--token", token, "--ca-file", caFile];
    const denied = await tetherAsync(["ca", "rotate", ...remote(viewer)]);
    expect(denied.status).toBe(1);
    expect(denied.stderr).toMatch(/\(403 FORBIDDEN\)/);
    expect((await tetherAsync(["ca", "rotate", ...remote(admin)])).status).toBe(0);
    const refused = await tetherAsync(["ca", "activate", ...remote(admin)]);
    expect(refused.status).toBe(1);
    expect(refused.stderr).toContain(`have not adopted the prepared CA yet: ${e.id}`);
    const forced = await tetherAsync(["ca", "activate", "--force", ...remote(admin), "--json"]);
    expect(forced.status, forced.stderr).toBe(0);
    expect(JSON.parse(forced.stdout)).toMatchObject({ state: "active", pending: [e.id] });
    const status = await tetherAsync(["ca", "status", "--json", ...remote(viewer)]);
    expect(JSON.parse(status.stdout).cas.map((c: { state: string }) => c.state)).toEqual(["retired", "active"]);
    const show = JSON.parse((await tetherAsync(["ca", "show", "--json", ...remote(viewer)])).stdout);
    expect(show).toMatchObject([{ state: "retired", key_type: "ed25519" }, { state: "active", subject: expect.stringMatching(/^CN=Tether CA /) }]);
    expect((await tetherAsync(["ca", "bundle", ...remote(viewer)])).stdout).toBe(readFileSync(join(tc.dataDir, "ca.pem"), "utf8"));
    expect((await tetherAsync(["ca", "crl", ...remote(viewer)])).stdout.match(/-----BEGIN X509 CRL-----/g)).toHaveLength(2);
  }, 60_000);
});

describe.skipIf(!hasOpenssl)("revocation lists", () => {
  it("a revocation by the CLI on the data dir is in GET /v1/ca/crl.pem at once: openssl says revoked for it and OK for a live executor; the CRL number grows", async () => {
    const tc = await controller();
    const [gone, live] = [await enroll(tc), await enroll(tc)];
    const anon = t.track(new WireClient(tc.url, tc.caPem));
    const dir = tempDir("tether-crl-");
    const crlNumber = (pem: string) => spawnSync("openssl", ["crl", "-noout", "-crlnumber"], { input: pem, encoding: "utf8" }).stdout.trim();
    const first = (await anon.send("GET", "/v1/ca/crl.pem")).text;
    expect(opensslVerify(dir, gone.certPem, tc.caPem, first)).toMatchObject({ ok: true });
    // Unchanged entries: the same CRL (same number) again.
    expect((await anon.send("GET", "/v1/ca/crl.pem")).text).toBe(first);

    const r = tether(["executors", "revoke", gone.id, "--data-dir", tc.dataDir]);
    expect(r.status, r.stderr).toBe(0);
    const revokedAt = Date.now();
    const crl = await anon.send("GET", "/v1/ca/crl.pem");
    const elapsed = Date.now() - revokedAt;
    expect(elapsed).toBeLessThan(1000);
    expect([crl.status, crl.headers["content-type"]]).toEqual([200, "application/x-pem-file"]);
    const verdict = opensslVerify(dir, gone.certPem, tc.caPem, crl.text);
    expect(verdict.ok).toBe(false);
    expect(verdict.output).toMatch(/error 23 at 0 depth lookup: certificate revoked/);
    expect(opensslVerify(dir, live.certPem, tc.caPem, crl.text)).toMatchObject({ ok: true });
    const [before, after] = [crlNumber(first), crlNumber(crl.text)].map((t) => parseInt(t.split("=")[1]!, 16));
    expect(after).toBeGreaterThan(before!);

    // The CLI's own CRL (another process, the next number) agrees.
    const cli = tether(["ca", "crl", "--data-dir", tc.dataDir]);
    expect(cli.status, cli.stderr).toBe(0);
    expect(opensslVerify(dir, gone.certPem, tc.caPem, cli.stdout).output).toMatch(/certificate revoked/);
    expect(parseInt(crlNumber(cli.stdout).split("=")[1]!, 16)).toBeGreaterThan(after!);
  }, 60_000);
});

describe("a data dir of an earlier version (ca.pem + ca.key)", () => {
  it("is imported as the active CA, encrypted in the store; ca.key is removed; a crash before the removal is finished on the next start", async () => {
    const dataDir = join(tempDir(), "data");
    const legacy = await writeLegacyCa(dataDir);
    const tc = await controller({ dataDir });
    expect(tc.c.caBootstrap).toBe("imported");
    expect(tc.c.caFingerprint).toBe(legacy.ca.fingerprintSha256);
    expect(existsSync(join(dataDir, "ca.key"))).toBe(false);
    expect(readFileSync(join(dataDir, "ca.pem"), "utf8")).toBe(legacy.certPem);
    const db = readFileSync(join(dataDir, "tether.db"));
    const keyBody = legacy.keyPem.split("\n")[1]!;
    expect(db.includes(Buffer.from(keyBody))).toBe(false);
    // Executors trusting the old ca.pem enroll and heartbeat as before.
    const e = await enroll(tc);
    expect((await heartbeat(e, 1)).status).toBe(200);
    expect(readFileSync(join(dataDir, "audit.log"), "utf8")).toContain(`"event":"ca.imported"`);

    // A crash between the commit and the removal: the key is back; the next start removes it, nothing else changes.
    await tc.c.close();
    const keyCopy = join(tempDir(), "ca.key");
    writeFileSync(keyCopy, legacy.keyPem, { mode: 0o600 });
    copyFileSync(keyCopy, join(dataDir, "ca.key"));
    await tc.restart();
    expect(tc.c.caBootstrap).toBe("loaded");
    expect(tc.c.caFingerprint).toBe(legacy.ca.fingerprintSha256);
    expect(existsSync(join(dataDir, "ca.key"))).toBe(false);
    expect(tc.c.ctx.cas.records()).toHaveLength(1);
  });

  it("refuses a ca.key that is not a key of the store's CAs, and a ca.pem whose key is lost, naming the file", async () => {
    const tc = await controller();
    await tc.c.close();
    await writeLegacyCa(join(tempDir(), "other")).then((other) => writeFileSync(join(tc.dataDir, "ca.key"), other.keyPem, { mode: 0o600 }));
    const r = tether(["controller", "start", "--data-dir", tc.dataDir, "--listen", "127.0.0.1:0"]);
    expect(r.status).toBe(1);
    expect(r.stderr.trim()).toBe(`tether controller start: ${join(tc.dataDir, "ca.key")} is not the key of any CA in the store; move it out of the data dir (the controller keeps its CA keys in the database)`);

    const fresh = join(tempDir(), "data");
    await writeLegacyCa(fresh);
    const { rmSync } = await import("node:fs");
    rmSync(join(fresh, "ca.key"));
    const lost = tether(["controller", "start", "--data-dir", fresh, "--listen", "127.0.0.1:0"]);
    expect(lost.status).toBe(1);
    expect(lost.stderr).toContain(`${join(fresh, "ca.pem")} exists but ${join(fresh, "ca.key")} is missing`);
    t.forget(tc);
    await tc.close();
  }, 40_000);

  it("the first rotation from it strands a client that trusts only the old CA (pathlen 0): the documented limitation", async () => {
    const dataDir = join(tempDir(), "data");
    const legacy = await writeLegacyCa(dataDir);
    const tc = await controller({ dataDir });
    await tc.c.ctx.cas.prepare({ via: "test" });
    await tc.c.ctx.cas.activate({ force: true }, { via: "test" });
    const verdict = await new Promise<string | undefined>((resolve, reject) => {
      const s = connect({ host: "127.0.0.1", port: tc.c.port, ca: legacy.certPem, servername: "localhost", rejectUnauthorized: false }, () => {
        resolve(s.authorizationError?.toString());
        s.end();
      });
      s.on("error", reject);
    });
    expect(verdict).toMatch(/PATH_LENGTH_EXCEEDED|path length constraint exceeded/i);
    // A client that adopted the bundle is fine.
    const adopted = t.track(new WireClient(tc.url, readFileSync(join(dataDir, "ca.pem"), "utf8")));
    expect((await adopted.send("GET", "/healthz")).status).toBe(200);
    expect(new X509Certificate(legacy.certPem).subject).toBe("CN=Tether CA\nO=tether.local");
  });
});
