/** `tether task submit|list|show|cancel|wait` against a real controller process, on --data-dir and on --url. */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { join } from "node:path";
import { readFileSync } from "node:fs";
import { tempDir } from "../support/temp-dir.ts";
import { spawnTether, tether, type Spawned } from "../support/process.ts";
import { executorCall, register, type Enrolled } from "../support/wire.ts";

let controller: Spawned;
let dataDir: string;
let url: string;
let caPem: string;
let admin: string;
let ex: Enrolled;
const remote = () => ["--url", url, "--token", admin, "--ca-file", join(dataDir, "ca.pem")];

beforeAll(async () => {
  dataDir = join(tempDir(), "data");
  controller = spawnTether(["controller", "start", "--data-dir", dataDir, "--listen", "127.0.0.1:0", "--log-level", "warn"]);
  url = (await controller.waitFor(/listening on (https:\/\/127\.0\.0\.1:\d+)/))[1]!;
  caPem = readFileSync(join(dataDir, "ca.pem"), "utf8");
  admin = tether(["admin", "bootstrap", "--data-dir", dataDir]).stdout.trim();
  const token = tether(["token", "create", "--data-dir", dataDir, "--label", "pool=cli"]).stdout.trim();
  ex = await register(url, caPem, token);
}, 60_000);
afterAll(async () => {
  await ex?.client.close();
  await controller?.stop();
});

async function leaseOne(): Promise<{ lease_id: string; task_id: string; payload: { argv: string[] } }> {
  const r = await executorCall(ex, "POST", `/v1/executors/${ex.id}/leases`, { max: 1, wait_s: 5 });
  expect(r.status).toBe(200);
  return r.json.leases[0];
}

describe("tether task", () => {
  it("submit prints the id alone; list/show see it; wait exits 0 once it succeeded", async () => {
    const sub = tether(["task", "submit", "--data-dir", dataDir, "--selector", "pool=cli", "--timeout", "1m", "--max-attempts", "2", "--", "echo", "hello world"]);
    expect(sub.status).toBe(0);
    expect(sub.stdout).toMatch(/^task_[A-Za-z0-9_-]+\n$/);
    const id = sub.stdout.trim();
    const list = JSON.parse(tether(["task", "list", ...remote(), "--json"]).stdout) as { id: string; status: string }[];
    expect(list.find((t) => t.id === id)).toMatchObject({ status: "queued" });
    const l = await leaseOne();
    expect(l.task_id).toBe(id);
    expect(l.payload.argv).toEqual(["echo", "hello world"]);
    const running = tether(["task", "wait", id, ...remote(), "--timeout", "1s"]);
    expect(running.status).toBe(3);
    expect((await executorCall(ex, "POST", `/v1/executors/${ex.id}/leases/${l.lease_id}/complete`, { result: { exit_code: 0 } })).status).toBe(200);
    const wait = tether(["task", "wait", id, ...remote()]);
    expect(wait.status).toBe(0);
    const shown = JSON.parse(tether(["task", "show", id, "--data-dir", dataDir, "--json"]).stdout);
    expect(shown).toMatchObject({ id, status: "succeeded", attempts: 1, max_attempts: 2, timeout_s: 60, result: { exit_code: 0 }, executor_id: ex.id });
  });

  it("what the controller sends is printed with its control characters escaped: no terminal escape reaches the terminal", async () => {
    const id = tether(["task", "submit", "--data-dir", dataDir, "--selector", "pool=cli", "--", "false"]).stdout.trim();
    const l = await leaseOne();
    // An output tail can hold anything the command printed: an OSC title change, a CSI colour, a C1 CSI, a bell.
    const nasty = "boom \u001b]0;pwned\u0007 \u001b[31mred\u009b2J\rline2";
    expect((await executorCall(ex, "POST", `/v1/executors/${ex.id}/leases/${l.lease_id}/fail`, { error: nasty, retryable: false })).status).toBe(200);
    for (const args of [["task", "show", id], ["task", "list"], ["task", "wait", id]]) {
      const r = tether([...args, "--data-dir", dataDir]);
      const printed = r.stdout + r.stderr;
      expect(printed, args.join(" ")).not.toMatch(/[\u0000-\u0008\u000b-\u001f\u007f-\u009f]/);
      expect(printed, args.join(" ")).toContain("\\u001b[31mred\\u009b2J");
    }
    // --json stays valid JSON and carries the exact text.
    expect(JSON.parse(tether(["task", "show", id, "--data-dir", dataDir, "--json"]).stdout).error).toBe(nasty);
  });

  it("wait exits non-zero when any task failed or was cancelled", async () => {
    const failed = tether(["task", "submit", ...remote(), "--selector", "pool=cli", "--", "false"]).stdout.trim();
    const l = await leaseOne();
    expect(l.task_id).toBe(failed);
    await executorCall(ex, "POST", `/v1/executors/${ex.id}/leases/${l.lease_id}/fail`, { error: "exit code 1", retryable: false });
    const cancelled = tether(["task", "submit", ...remote(), "--selector", "pool=nobody", "--", "true"]).stdout.trim();
    const cancel = tether(["task", "cancel", cancelled, ...remote()]);
    expect(cancel.status).toBe(0);
    const wait = tether(["task", "wait", failed, cancelled, ...remote()]);
    expect(wait.status).toBe(1);
    expect(wait.stderr).toContain(`task ${failed} failed: exit code 1`);
    expect(wait.stderr).toContain(`task ${cancelled} cancelled`);
    const again = tether(["task", "cancel", cancelled, ...remote()]);
    expect(again.status).not.toBe(0);
    expect(again.stderr.trim().split("\n")).toHaveLength(1);
  });

  it("refuses bad input with a one-line reason", () => {
    const noArgv = tether(["task", "submit", "--data-dir", dataDir]);
    expect(noArgv.status).toBe(2);
    const badStatus = tether(["task", "list", "--data-dir", dataDir, "--status", "done"]);
    expect(badStatus.status).toBe(2);
    const unknown = tether(["task", "show", "task_nope", ...remote()]);
    expect(unknown.status).toBe(1);
    expect(unknown.stderr).toMatch(/no task task_nope \(404 NOT_FOUND\)/);
  });

  it("a viewer may list tasks but not submit them (403 FORBIDDEN)", () => {
    const viewer = tether(["api-token", "create", "--data-dir", dataDir, "--name", "v", "--role", "viewer"]).stdout.trim();
    const args = ["--url", url, "--token", viewer, "--ca-file", join(dataDir, "ca.pem")];
    expect(tether(["task", "list", ...args]).status).toBe(0);
    const sub = tether(["task", "submit", ...args, "--", "true"]);
    expect(sub.status).toBe(1);
    expect(sub.stderr).toMatch(/403 FORBIDDEN/);
  });
});
