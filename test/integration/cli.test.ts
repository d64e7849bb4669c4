/** The operator CLI against a data dir while a real controller runs on it. */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { X509Certificate } from "node:crypto";
import { readFileSync } from "node:fs";
import { startTestController, type TestController } from "../support/controller.ts";
import { tether, spawnTether } from "../support/process.ts";
import { register, WireClient } from "../support/wire.ts";
import { tempDir } from "../support/temp-dir.ts";

let tc: TestController;
beforeAll(async () => {
  tc = await startTestController();
});
afterAll(async () => {
  await tc?.close();
});

describe("tether CLI on --data-dir", () => {
  it("token create prints the token alone on stdout, and it registers", async () => {
    const r = tether(["token", "create", "--data-dir", tc.dataDir, "--ttl", "15m", "--uses", "2", "--label", "zone=z1"]);
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/^tet_enr_[A-Za-z0-9_-]{43}\n$/);
    expect(r.stderr).toMatch(/enrollment token enr_\S+ expires/);
    const e = await register(tc.url, tc.caPem, r.stdout.trim());
    await e.client.close();
    expect((await tc.c.ctx.executors.show(e.id)).labels).toEqual({ zone: "z1" });
  });

  it("token create --join-command prints, alone on stdout, the command a new host runs: URL, CA pin and token", async () => {
    const url = "https://controller.example:8443";
    const r = tether(["token", "create", "--data-dir", tc.dataDir, "--join-command", url]);
    expect(r.status, r.stderr).toBe(0);
    const m = /^tether executor run --controller (\S+) --ca-fingerprint SHA256:([0-9A-F:]{95}) --state-dir \S+ --token (tet_enr_[A-Za-z0-9_-]{43})\n$/.exec(r.stdout);
    expect(m, r.stdout).not.toBeNull();
    expect(m![1]).toBe(url);
    expect(m![2]).toBe(new X509Certificate(tc.caPem).fingerprint256); // the active CA, as `openssl x509 -fingerprint -sha256` prints it
    const e = await register(tc.url, tc.caPem, m![3]!);
    await e.client.close();
    const plain = tether(["token", "create", "--data-dir", tc.dataDir, "--join-command", "http://controller:8443"]);
    expect([plain.status, plain.stdout]).toEqual([2, ""]);
    expect(plain.stderr).toMatch(/must be https/);
  });

  it("token list --json shows no secret; token revoke makes a token unusable", async () => {
    const created = tether(["token", "create", "--data-dir", tc.dataDir]);
    const token = created.stdout.trim();
    const list = tether(["token", "list", "--data-dir", tc.dataDir, "--json"]);
    expect(list.status).toBe(0);
    const tokens = JSON.parse(list.stdout) as { id: string; state: string }[];
    expect(list.stdout).not.toContain(token);
    expect(list.stdout).not.toContain("tet_enr_");
    const id = tokens.find((t) => t.state === "active")!.id;
    const revoke = tether(["token", "revoke", id, "--data-dir", tc.dataDir]);
    expect(revoke.status).toBe(0);
    const after = JSON.parse(tether(["token", "list", "--data-dir", tc.dataDir, "--json"]).stdout) as { id: string; state: string }[];
    expect(after.find((t) => t.id === id)!.state).toBe("revoked");
  });

  it("executors list/show --json carry the PROTOCOL §6 fields", async () => {
    const e = await register(tc.url, tc.caPem, await tc.createToken(), { name: "shown" });
    await e.client.close();
    const show = tether(["executors", "show", e.id, "--data-dir", tc.dataDir, "--json"]);
    expect(show.status).toBe(0);
    const j = JSON.parse(show.stdout);
    for (const k of ["id", "name", "epoch", "status", "labels", "cert_expires_at", "last_seen_at", "revoked"]) expect(j).toHaveProperty(k);
    expect(j).toMatchObject({ id: e.id, name: "shown", epoch: 1, revoked: false });
    const list = JSON.parse(tether(["executors", "list", "--data-dir", tc.dataDir, "--json"]).stdout) as { id: string }[];
    expect(list.map((x) => x.id)).toContain(e.id);
    const table = tether(["executors", "list", "--data-dir", tc.dataDir]);
    expect(table.stdout.split("\n")[0]).toMatch(/^ID\s+NAME\s+EPOCH\s+STATUS/);
  });

  it("ca show (every CA of the bundle, a list) and ca bundle", () => {
    const show = JSON.parse(tether(["ca", "show", "--data-dir", tc.dataDir, "--json"]).stdout);
    expect(show).toMatchObject([{ state: "active", fingerprint_sha256: new X509Certificate(tc.caPem).fingerprint256 }]);
    expect(tether(["ca", "bundle", "--data-dir", tc.dataDir]).stdout).toBe(tc.caPem);
  });

  it("fails with a one-line reason and a non-zero exit on bad input", () => {
    const cases = [
      ["executors", "show", "ex_nope", "--data-dir", tc.dataDir],
      ["token", "create", "--data-dir", tc.dataDir, "--ttl", "soon"],
      ["token", "create", "--data-dir", tc.dataDir, "--bogus"],
      ["token", "create"],
      ["token", "list", "--data-dir", "/nonexistent/tether"],
      ["frobnicate"],
    ];
    for (const args of cases) {
      const r = tether(args);
      expect(r.status, args.join(" ")).not.toBe(0);
      expect(r.stdout, args.join(" ")).toBe("");
      expect(r.stderr.trim().split("\n"), args.join(" ")).toHaveLength(1);
    }
  });

  it("--help works on every command", () => {
    const top = tether(["--help"]);
    expect(top.status).toBe(0);
    const commands = [...top.stdout.matchAll(/^ {2}tether (.+)$/gm)].map((m) => m[1]!.split(" "));
    expect(commands.length).toBeGreaterThanOrEqual(10);
    for (const c of commands) {
      const r = tether([...c, "--help"]);
      expect(r.status, c.join(" ")).toBe(0);
      expect(r.stdout, c.join(" ")).toContain(`Usage: tether ${c.join(" ")}`);
    }
  }, 60_000);
});

describe("tether controller start", () => {
  it("prints the URL and CA fingerprint, serves, and exits 0 on SIGTERM", async () => {
    const dir = `${tempDir()}/data`;
    const p = spawnTether(["controller", "start", "--data-dir", dir, "--listen", "127.0.0.1:0", "--log-level", "silent"]);
    const [, url] = (await p.waitFor(/listening on (https:\/\/127\.0\.0\.1:\d+)/))!;
    await p.waitFor(/CA fingerprint SHA256:[0-9A-F:]{95}/);
    const c = new WireClient(url!, readFileSync(`${dir}/ca.pem`, "utf8"));
    expect((await c.send("GET", "/healthz")).status).toBe(200);
    await c.close();
    expect(p.stdout()).toBe("");
    expect(await p.stop("SIGTERM")).toBe(0);
  });

  it("--dev logs a WARNING at start", async () => {
    const p = spawnTether(["controller", "start", "--data-dir", `${tempDir()}/data`, "--listen", "127.0.0.1:0", "--dev"]);
    await p.waitFor(/listening on/);
    await p.waitFor(/WARNING: development mode/);
    expect(await p.stop()).toBe(0);
  });
});
