/**
 * Clients we do not control: a key and CSR made by `openssl req`, registration and a
 * heartbeat made by curl, the HMAC computed by `openssl dgst` — the docs' walk-through.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { spawnSync } from "node:child_process";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { startTestController, tempDir, type TestController } from "../helpers/controller.ts";

const have = (cmd: string) => spawnSync("sh", ["-c", `command -v ${cmd}`]).status === 0;
const tools = have("openssl") && have("curl") && have("jq");
const script = fileURLToPath(new URL("../../docs/examples/curl-walkthrough.sh", import.meta.url));

let tc: TestController;
beforeAll(async () => {
  tc = await startTestController();
});
afterAll(async () => {
  await tc?.close();
});

describe.skipIf(!tools)("openssl + curl interop", () => {
  it("an `openssl req` CSR registers and curl heartbeats with it (docs/examples/curl-walkthrough.sh)", async () => {
    const token = await tc.createToken();
    const work = tempDir("tether-curl-");
    const r = spawnSync("bash", [script, tc.url, join(tc.dataDir, "ca.pem"), token, work], { encoding: "utf8", timeout: 30_000 });
    expect(r.stderr).toBe("");
    expect(r.status).toBe(0);
    const hb = JSON.parse(r.stdout);
    expect(hb).toMatchObject({ next_heartbeat_s: 10, drain: false, cancel_leases: [] });
    const executors = await tc.c.ctx.executors.list();
    expect(executors.find((e) => e.name === "curl")).toBeDefined();
  });

  it("curl without a client certificate is refused with 401 CERT_REQUIRED", async () => {
    const r = spawnSync("curl", ["-sS", "--cacert", join(tc.dataDir, "ca.pem"), "-X", "POST", "-H", "content-type: application/json", "-d", "{}", `${tc.url}/v1/executors/ex_x/heartbeat`, "-w", "\\n%{http_code}"], { encoding: "utf8" });
    const [body, status] = r.stdout.trim().split("\n");
    expect(status).toBe("401");
    expect(JSON.parse(body!).error.code).toBe("CERT_REQUIRED");
  });
});
