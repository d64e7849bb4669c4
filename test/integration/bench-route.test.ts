/**
 * The benchmark mode (`controller start --bench`, used by `npm run bench`): its
 * unguarded baseline route and lifted /register rate limit exist only in
 * development/test, never in production.
 */
import { afterAll, describe, expect, it } from "vitest";
import { readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import { startController } from "../../controller/controller.ts";
import { defaultConfig } from "../../controller/config.ts";
import { startTestController, type TestController } from "../support/controller.ts";
import { tempDir } from "../support/temp-dir.ts";
import { spawnTether, tether } from "../support/process.ts";
import { register, WireClient, HEARTBEAT } from "../support/wire.ts";

const BARE = "/v1/bench/bare";
const opened: TestController[] = [];
const dirs: string[] = [];
afterAll(async () => {
  for (const t of opened) await t.close();
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

describe("bench mode", () => {
  it("production has no bench route (404), even when asked for it through the library", async () => {
    const tc = await startTestController(); // TETHER_ENV defaults to production
    opened.push(tc);
    const c = new WireClient(tc.url, tc.caPem);
    const r = await c.send("POST", BARE, { body: JSON.stringify(HEARTBEAT) });
    await c.close();
    expect(r.status).toBe(404);
    expect(r.json?.error?.code).toBe("NOT_FOUND");

    const dir = tempDir();
    dirs.push(dir);
    await expect(startController(defaultConfig(join(dir, "data"), { port: 0, logLevel: "silent", bench: true }))).rejects.toThrow(/refused in production/);
  });

  it("`controller start --bench` is refused in production, with the reason", () => {
    const dir = tempDir();
    dirs.push(dir);
    const r = tether(["controller", "start", "--data-dir", join(dir, "data"), "--listen", "127.0.0.1:0", "--bench"], {
      env: { TETHER_ENV: "" },
      timeoutMs: 30_000,
    });
    expect(r.status).not.toBe(0);
    expect(r.stderr).toMatch(/--bench is refused in production/);
  });

  it("with --dev: the bare route answers like a heartbeat without any guard, and /register is not rate limited", async () => {
    const dir = tempDir();
    dirs.push(dir);
    const dataDir = join(dir, "data");
    const p = spawnTether(["controller", "start", "--data-dir", dataDir, "--listen", "127.0.0.1:0", "--dev", "--bench"], { env: { TETHER_LOG_LEVEL: "warn" } });
    try {
      const [, url] = (await p.waitFor(/listening on (https:\/\/127\.0\.0\.1:\d+)/))!;
      await p.waitFor(/WARNING: bench mode/);
      const caPem = readFileSync(join(dataDir, "ca.pem"), "utf8");
      const c = new WireClient(url!, caPem);
      const r = await c.send("POST", BARE, { body: JSON.stringify(HEARTBEAT) });
      await c.close();
      expect(r.status).toBe(200);
      expect(Object.keys(r.json).sort()).toEqual(["cancel_leases", "cert_renew_after", "drain", "jwt_renew_after", "next_heartbeat_s", "server_time", "trust_bundle_version"]);

      // The default limit is a burst of 20 per source address; bench mode lifts it.
      const tok = tether(["token", "create", "--data-dir", dataDir, "--uses", "25"]);
      expect(tok.status).toBe(0);
      const token = tok.stdout.trim();
      const results = await Promise.allSettled(Array.from({ length: 25 }, () => register(url!, caPem, token)));
      for (const res of results) if (res.status === "fulfilled") await res.value.client.close();
      expect(results.filter((x) => x.status === "rejected").map((x) => String((x as PromiseRejectedResult).reason))).toEqual([]);
    } finally {
      expect(await p.stop()).toBe(0);
    }
  });
});
