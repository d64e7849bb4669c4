/**
 * Clients we do not control: a key and CSR made by `openssl req`, registration and a
 * heartbeat made by curl, the HMAC computed by `openssl dgst` — the docs' walk-through.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { spawnSync, execFile } from "node:child_process";
import { promisify } from "node:util";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { startTestController, type TestController } from "../support/controller.ts";
import { tempDir } from "../support/temp-dir.ts";

const have = (cmd: string) => spawnSync("sh", ["-c", `command -v ${cmd}`]).status === 0;
const tools = have("openssl") && have("curl") && have("jq");
// Asynchronous on purpose: the controller runs in this process, so a synchronous spawn would block it.
const run = async (cmd: string, args: string[]) => {
  try {
    const { stdout, stderr } = await promisify(execFile)(cmd, args, { encoding: "utf8", timeout: 30_000 });
    return { status: 0, stdout, stderr };
  } catch (e) {
    const err = e as { code?: number; stdout?: string; stderr?: string };
    return { status: err.code ?? 1, stdout: err.stdout ?? "", stderr: err.stderr ?? String(e) };
  }
};
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
    const r = await run("bash", [script, tc.url, join(tc.dataDir, "ca.pem"), token, work]);
    expect(r.stderr).toBe("");
    expect(r.status).toBe(0);
    const hb = JSON.parse(r.stdout);
    expect(hb).toMatchObject({ next_heartbeat_s: 10, drain: false, cancel_leases: [] });
    const executors = await tc.c.ctx.executors.list();
    expect(executors.find((e) => e.name === "curl")).toBeDefined();
  });

  it("curl without a client certificate is refused with 401 CERT_REQUIRED", async () => {
    const r = await run("curl", ["-sS", "--cacert", join(tc.dataDir, "ca.pem"), "-X", "POST", "-H", "content-type: application/json", "-d", "{}", `${tc.url}/v1/executors/ex_x/heartbeat`, "-w", "\\n%{http_code}"]);
    const [body, status] = r.stdout.trim().split("\n");
    expect(status).toBe("401");
    expect(JSON.parse(body!).error.code).toBe("CERT_REQUIRED");
  });
});
