/**
 * The operator CLI end to end: a real controller process, `tether admin bootstrap`,
 * `tether login`, and every operator command run remotely (`--url` + API token)
 * through the real binary. Ends by grepping the data dir and every captured log
 * for each secret the session minted.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { spawn } from "node:child_process";
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { startTestController, type TestController } from "../support/controller.ts";
import { tempDir } from "../support/temp-dir.ts";
import { spawnTether, tether, TETHER_BIN, type Spawned } from "../support/process.ts";
import { register } from "../support/wire.ts";

const PAT = /^tet_pat_[A-Za-z0-9_-]{43}\n$/;

let ctl: Spawned;
let url: string;
let dataDir: string;
let caFile: string;
let cfg: string;
/** Every secret this session minted, and every log line it produced. */
const minted: string[] = [];
const logs: string[] = [];
let admin: string;
let viewer: string;

function run(args: string[], env: NodeJS.ProcessEnv = {}) {
  const r = tether(args, { env: { TETHER_CONFIG_DIR: cfg, TETHER_TOKEN: "", TETHER_URL: "", TETHER_CA_FILE: "", ...env } });
  logs.push(r.stderr);
  return r;
}

function oneLineFailure(r: { status: number | null; stdout: string; stderr: string }, label: string) {
  expect(r.status, label).not.toBe(0);
  expect(r.stdout, label).toBe("");
  expect(r.stderr.trim().split("\n"), label).toHaveLength(1);
}

beforeAll(async () => {
  dataDir = join(tempDir(), "data");
  cfg = join(tempDir("tether-cfg-"), "tether");
  ctl = spawnTether(["controller", "start", "--data-dir", dataDir, "--listen", "127.0.0.1:0", "--log-level", "debug"]);
  url = (await ctl.waitFor(/listening on (https:\/\/127\.0\.0\.1:\d+)/))[1]!;
  caFile = join(dataDir, "ca.pem");
}, 60_000);

afterAll(async () => {
  await ctl?.stop();
});

describe("tether admin bootstrap", () => {
  it("prints the first admin token alone on stdout, once; a second bootstrap is refused", () => {
    const first = run(["admin", "bootstrap", "--data-dir", dataDir]);
    expect(first.status, first.stderr).toBe(0);
    expect(first.stdout).toMatch(PAT);
    expect(first.stderr).toMatch(/admin API token tok_\S+ \(bootstrap-admin\)/);
    admin = first.stdout.trim();
    minted.push(admin);
    const second = run(["admin", "bootstrap", "--data-dir", dataDir]);
    oneLineFailure(second, "second bootstrap");
    expect(second.stderr).toContain("refused: an active admin API token already exists");
  });

  it("is atomic: concurrent bootstraps on one data dir make exactly one token", async () => {
    const other: TestController = await startTestController();
    try {
      const once = () =>
        new Promise<{ code: number | null; stdout: string }>((resolve) => {
          const child = spawn(process.execPath, [TETHER_BIN, "admin", "bootstrap", "--data-dir", other.dataDir], { stdio: ["ignore", "pipe", "pipe"] });
          let stdout = "";
          child.stdout.on("data", (d) => (stdout += d));
          child.stderr.on("data", (d) => logs.push(String(d)));
          child.on("exit", (code) => resolve({ code, stdout }));
        });
      const results = await Promise.all([once(), once(), once()]);
      const winners = results.filter((r) => r.code === 0);
      expect(winners).toHaveLength(1);
      expect(winners[0]!.stdout).toMatch(PAT);
      for (const r of results.filter((x) => x.code !== 0)) expect(r.stdout).toBe("");
      expect((await other.c.ctx.apiTokens.list()).filter((t) => t.role === "admin")).toHaveLength(1);
    } finally {
      await other.close();
    }
  }, 60_000);
});

describe("tether login", () => {
  const loginFile = () => join(cfg, "login.json");

  it("a bad token fails, non-zero, and saves nothing", () => {
    const r = run(["login", "--url", url, "--token", "tet_pat_" + "B".repeat(43), "--ca-file", caFile]);
    oneLineFailure(r, "bad login");
    expect(r.stderr).toContain("auth failure (401 UNAUTHENTICATED)");
    expect(existsSync(loginFile())).toBe(false);
  });

  it("a good token is checked, then saved 0600 in a 0700 dir", () => {
    const r = run(["login", "--url", url + "/", "--token", admin, "--ca-file", caFile]);
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toBe("");
    expect(r.stderr).toMatch(/logged in to https:\/\/127\.0\.0\.1:\d+ as bootstrap-admin \(admin, tok_/);
    expect(statSync(cfg).mode & 0o777).toBe(0o700);
    expect(statSync(loginFile()).mode & 0o777).toBe(0o600);
    expect(JSON.parse(readFileSync(loginFile(), "utf8"))).toMatchObject({ url, token: admin, ca_file: caFile, role: "admin" });
  });

  it("never replaces a working login with a failing one", () => {
    const before = readFileSync(loginFile(), "utf8");
    const failing: [string, string[]][] = [
      ["unknown token", ["login", "--url", url, "--token", "tet_pat_" + "C".repeat(43), "--ca-file", caFile]],
      ["garbage token", ["login", "--url", url, "--token", "hunter2", "--ca-file", caFile]],
      ["untrusted server", ["login", "--url", url, "--token", admin]],
      ["nobody listening", ["login", "--url", "https://127.0.0.1:1", "--token", admin, "--ca-file", caFile]],
      ["plain http", ["login", "--url", url.replace("https:", "http:"), "--token", admin]],
    ];
    for (const [label, args] of failing) {
      const r = run(args);
      oneLineFailure(r, label);
      expect(readFileSync(loginFile(), "utf8"), label).toBe(before);
    }
  }, 60_000);
});

describe("operator commands over --url", () => {
  it("api-token create prints the secret alone; list shows no secret", () => {
    const r = run(["api-token", "create", "--name", "dashboard", "--role", "viewer", "--ttl", "1h"]);
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toMatch(PAT);
    viewer = r.stdout.trim();
    minted.push(viewer);
    const list = run(["api-token", "list", "--json"]);
    expect(list.status, list.stderr).toBe(0);
    const tokens = JSON.parse(list.stdout) as { name: string; role: string; state: string }[];
    expect(tokens.map((t) => [t.name, t.role, t.state])).toEqual([["bootstrap-admin", "admin", "active"], ["dashboard", "viewer", "active"]]);
    expect(list.stdout).not.toContain("tet_pat_");
    const bad = run(["api-token", "create", "--name", "x", "--role", "root"]);
    expect(bad.status).toBe(2);
  });

  it("enrollment tokens and executors: create, register, list, show, drain, revoke — remotely", async () => {
    const created = run(["token", "create", "--ttl", "10m", "--label", "zone=remote"]);
    expect(created.status, created.stderr).toBe(0);
    expect(created.stdout).toMatch(/^tet_enr_[A-Za-z0-9_-]{43}\n$/);
    minted.push(created.stdout.trim());
    const ca = readFileSync(caFile, "utf8");
    const e = await register(url, ca, created.stdout.trim(), { name: "remote-one" });
    minted.push(e.jwt, e.reg.hmac_key);
    await e.client.close();
    const tokens = JSON.parse(run(["token", "list", "--json"]).stdout) as { id: string; uses: number }[];
    expect(tokens.find((t) => t.uses === 1)).toBeDefined();

    // The viewer, with --url/--token/--ca-file and with TETHER_TOKEN, reads but cannot act.
    const asViewer = ["--url", url, "--token", viewer, "--ca-file", caFile];
    const list = run(["executors", "list", "--json", ...asViewer]);
    expect(list.status, list.stderr).toBe(0);
    expect((JSON.parse(list.stdout) as { id: string }[]).map((x) => x.id)).toContain(e.id);
    const show = run(["executors", "show", e.id, "--json", "--url", url, "--ca-file", caFile], { TETHER_TOKEN: viewer });
    expect(show.status, show.stderr).toBe(0);
    expect(JSON.parse(show.stdout)).toMatchObject({ id: e.id, name: "remote-one", labels: { zone: "remote" }, revoked: false });
    const denied = run(["executors", "drain", e.id, ...asViewer]);
    oneLineFailure(denied, "viewer drain");
    expect(denied.stderr).toBe(`tether executors drain: the viewer role does not allow executors:drain (403 FORBIDDEN)\n`);

    // The admin, through the saved login.
    expect(run(["executors", "drain", e.id]).status).toBe(0);
    const revoked = run(["executors", "revoke", e.id, "--json"]);
    expect(revoked.status, revoked.stderr).toBe(0);
    expect(JSON.parse(revoked.stdout)).toMatchObject({ id: e.id, revoked: true, drain: true });
    const missing = run(["executors", "show", "ex_nope"]);
    oneLineFailure(missing, "show unknown");
    expect(missing.stderr).toBe("tether executors show: no executor ex_nope (404 NOT_FOUND)\n");

    const audit = run(["audit", "list", "--since", "5m", "--limit", "1000", "--json"]);
    expect(audit.status, audit.stderr).toBe(0);
    const events = JSON.parse(audit.stdout) as Record<string, any>[];
    expect(events.find((x) => x.event === "executor.revoked" && x.executor_id === e.id)).toMatchObject({
      actor: { type: "api_token", name: "bootstrap-admin", role: "admin" },
    });
    expect(events.find((x) => x.event === "operator.forbidden" && x.capability === "executors:drain")).toMatchObject({
      actor: { name: "dashboard", role: "viewer" },
    });
  }, 60_000);

  it("refuses ambiguous or unsafe targets, and never sends a saved token to another URL", () => {
    const both = run(["executors", "list", "--data-dir", dataDir, "--url", url]);
    oneLineFailure(both, "both");
    expect(both.status).toBe(2);
    const elsewhere = run(["executors", "list", "--url", "https://127.0.0.1:1"]);
    oneLineFailure(elsewhere, "elsewhere");
    expect(elsewhere.stderr).toContain("no API token for https://127.0.0.1:1");
    const nothing = run(["executors", "list"], { TETHER_CONFIG_DIR: tempDir("tether-empty-cfg-") });
    oneLineFailure(nothing, "no login");
    expect(nothing.stderr).toContain("--data-dir or --url is required");
  });

  it("api-token revoke: the revoked token's next command fails with the server's message", () => {
    const list = JSON.parse(run(["api-token", "list", "--json"]).stdout) as { id: string; name: string }[];
    const id = list.find((t) => t.name === "dashboard")!.id;
    expect(run(["api-token", "revoke", id]).status).toBe(0);
    const r = run(["executors", "list", "--url", url, "--token", viewer, "--ca-file", caFile]);
    oneLineFailure(r, "revoked viewer");
    expect(r.stderr).toBe("tether executors list: auth failure (401 UNAUTHENTICATED)\n");
    const again = run(["api-token", "revoke", id]);
    oneLineFailure(again, "revoke twice");
    expect(again.stderr).toContain(`no active API token ${id} (404 NOT_FOUND)`);
  });

  it("the same commands still work locally with --data-dir", () => {
    const r = run(["api-token", "create", "--data-dir", dataDir, "--name", "local-op", "--role", "operator"]);
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toMatch(PAT);
    minted.push(r.stdout.trim());
    const list = JSON.parse(run(["api-token", "list", "--data-dir", dataDir, "--json"]).stdout) as { name: string; created_by: string }[];
    expect(list.find((t) => t.name === "local-op")!.created_by).toMatch(/^cli:/);
    expect(run(["executors", "list", "--data-dir", dataDir, "--json"]).status).toBe(0);
  });
});

describe("secrets at rest and in logs", () => {
  it("no token the session minted appears in clear in the data dir (db, wal, audit.log, …) or in any log", async () => {
    expect(minted.length).toBeGreaterThanOrEqual(6);
    await ctl.stop();
    const files = readdirSync(dataDir).filter((f) => statSync(join(dataDir, f)).isFile());
    for (const f of ["tether.db", "audit.log"]) expect(files).toContain(f);
    const blobs: [string, Buffer][] = files.map((f) => [f, readFileSync(join(dataDir, f))]);
    blobs.push(["controller stderr", Buffer.from(ctl.stderr())], ["controller stdout", Buffer.from(ctl.stdout())]);
    blobs.push(["CLI stderr", Buffer.from(logs.join("\n"))]);
    expect(ctl.stderr().length).toBeGreaterThan(0);
    for (const secret of minted) {
      // The whole token, and its random part alone (base64url, also as raw bytes where it decodes).
      const random = secret.replace(/^tet_(pat|enr)_/, "");
      for (const [name, blob] of blobs) {
        expect(blob.includes(secret), `${secret.slice(0, 12)}… in ${name}`).toBe(false);
        expect(blob.includes(random), `${secret.slice(0, 12)}… (random part) in ${name}`).toBe(false);
      }
    }
  }, 30_000);
});
