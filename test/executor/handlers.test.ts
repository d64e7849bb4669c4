/**
 * The `command` handler with real processes: no shell, the allowlist (a refused
 * command never starts), timeouts and cancellation killing the whole process
 * group, bounded output tails.
 */
import { describe, expect, it } from "vitest";
import { chmodSync, existsSync, readFileSync, writeFileSync } from "node:fs";
import { userInfo } from "node:os";
import { join } from "node:path";
import { createLogger } from "../../executor/logger.ts";
import {
  CommandHandler, ERROR_TEXT_BYTES, MAX_RESULT_JSON_BYTES, TAIL_BYTES, failureText, fitResult, type CommandHandlerOptions,
} from "../../executor/handlers/command.ts";
import { DEFAULT_PATH, allowedNameProblem, loadsCode, minimalEnv, runsAnything } from "../../executor/handlers/command-policy.ts";
import { envNameProblem, parseCommandPayload } from "../../shared/task-kinds/command.ts";
import { TailBuffer } from "../../executor/handlers/tail-buffer.ts";
import type { TaskOutcome } from "../../executor/handlers/types.ts";
import { alive, until } from "../support/daemon-wait.ts";
import { tempDir } from "../support/temp-dir.ts";

const log = createLogger({ level: "silent" });

function handler(allowed: string[], o: Partial<CommandHandlerOptions> = {}) {
  const spawned: number[] = [];
  const h = new CommandHandler({
    allowed, killGraceMs: 500, ...o,
    onSpawn: (pid, argv) => {
      spawned.push(pid);
      o.onSpawn?.(pid, argv);
    },
  });
  return { h, spawned };
}

function run(h: CommandHandler, payload: unknown, signal: AbortSignal = new AbortController().signal): Promise<TaskOutcome> {
  return h.run({ taskId: "task_1", leaseId: "lease_1", kind: "command", payload, expiresAt: "", log }, signal);
}

function readPid(file: string): number {
  return Number(readFileSync(file, "utf8").trim());
}

describe("command handler: no shell", () => {
  it('passes argv literally: ["echo", "$HOME; rm -rf /"] prints exactly that', async () => {
    const { h } = handler(["echo"]);
    const r = await run(h, { argv: ["echo", "$HOME; rm -rf /", "`id`", "a  b"] });
    expect(r).toEqual({
      result: expect.objectContaining({ exit_code: 0, signal: null, stdout_tail: "$HOME; rm -rf / `id` a  b\n", stderr_tail: "", stdout_bytes: 26, stderr_bytes: 0 }),
    });
    expect((r as { result: { duration_ms: number } }).result.duration_ms).toBeGreaterThanOrEqual(0);
  });

  it("passes allowed env and cwd; nothing of the daemon's own environment is inherited", async () => {
    const dir = tempDir();
    const { h } = handler(["sh"], { allowEnv: ["FOO"], daemonEnv: { PATH: process.env.PATH, TETHER_TOKEN: "secret", KEEP: "yes" } });
    const r = await run(h, { argv: ["sh", "-c", 'echo "$FOO|${KEEP-unset}|${TETHER_TOKEN-unset}|$(pwd)"'], env: { FOO: "bar baz" }, cwd: dir });
    expect(r).toMatchObject({ result: { exit_code: 0, stdout_tail: `bar baz|unset|unset|${dir}\n` } });
  });
});

/** `env`'s output as an object (one NAME=value per line). */
function envOf(r: TaskOutcome): Record<string, string> {
  const text = (r as { result: { stdout_tail: string } }).result.stdout_tail;
  return Object.fromEntries(text.split("\n").filter(Boolean).map((l) => [l.slice(0, l.indexOf("=")), l.slice(l.indexOf("=") + 1)]));
}

describe("command handler: the task environment (--allow-env)", () => {
  // Programs that are no interpreters, but are scripts: their interpreter reads code from the environment.
  const ldd = ["/usr/bin/ldd", "/bin/ldd"].find((p) => existsSync(p) && readFileSync(p, "utf8").startsWith("#!/bin/bash"));
  const shasum = ["/usr/bin/shasum", "/bin/shasum"].find((p) => existsSync(p) && readFileSync(p, "utf8").startsWith("#!/usr/bin/perl"));

  it.skipIf(!ldd || !shasum)("env cannot smuggle code into an allowed program (BASH_ENV via ldd, PERL5DB via shasum): refused, nothing runs", async () => {
    const dir = tempDir();
    const m1 = join(dir, "bash-env-ran");
    const m2 = join(dir, "perl5db-ran");
    const { h, spawned } = handler(["ldd", "shasum"]);
    const r1 = await run(h, { argv: ["ldd", "/bin/true"], env: { BASH_ENV: `$(touch ${m1})` } });
    expect(r1).toEqual({ error: 'env "BASH_ENV" is not allowed on this executor (--allow-env: none)', retryable: false });
    const r2 = await run(h, { argv: ["shasum", "/dev/null"], env: { PERL5OPT: "-d", PERL5DB: `BEGIN{system("touch ${m2}")}` } });
    expect(r2).toEqual({ error: 'env "PERL5OPT", "PERL5DB" are not allowed on this executor (--allow-env: none)', retryable: false });
    await new Promise((res) => setTimeout(res, 200));
    expect([existsSync(m1), existsSync(m2)]).toEqual([false, false]);
    expect(spawned).toEqual([]);
  });

  it("only --allow-env names are set; a task asking for any other name fails naming it and the option", async () => {
    const dir = tempDir();
    const marker = join(dir, "ran");
    const { h, spawned } = handler(["sh"], { allowEnv: ["GREETING", "PGHOST"] });
    const refused = await run(h, { argv: ["sh", "-c", `touch ${marker}`], env: { GREETING: "hi", NODE_OPTIONS: "--import=data:," } });
    expect(refused).toEqual({ error: 'env "NODE_OPTIONS" is not allowed on this executor (--allow-env: GREETING, PGHOST)', retryable: false });
    // Names are case-sensitive, as on Linux.
    expect(await run(h, { argv: ["sh", "-c", `touch ${marker}`], env: { greeting: "hi" } })).toMatchObject({ error: expect.stringContaining('env "greeting" is not allowed') });
    expect(existsSync(marker)).toBe(false);
    expect(spawned).toEqual([]);
    expect(await run(h, { argv: ["sh", "-c", 'echo "$GREETING"'], env: { GREETING: "hello" } })).toMatchObject({ result: { exit_code: 0, stdout_tail: "hello\n" } });
  });

  it("the child starts from PATH, HOME and LANG alone, never from the daemon's environment", async () => {
    const env = (() => {
      for (const dir of (process.env.PATH ?? "").split(":")) if (dir && existsSync(join(dir, "env"))) return "env";
      return "/usr/bin/env";
    })();
    // This test process's own environment (VITEST, NODE_ENV, …) is the daemon's here.
    const plain = handler([env]);
    const r = envOf(await run(plain.h, { argv: [env] }));
    expect(Object.keys(r).sort()).toEqual(["HOME", "LANG", "PATH"]);
    expect(r.HOME).toBe(userInfo().homedir);
    // A daemon environment full of secrets and loader tricks: only PATH (absolute entries) and LANG come from it.
    const daemonEnv = { PATH: `/usr/local/bin:.::relative/bin:/usr/bin:/bin`, LANG: "de_DE.UTF-8", HOME: "/not-the-user-home", AWS_SECRET_ACCESS_KEY: "s3cr3t", TETHER_TOKEN: "t", BASH_ENV: "/tmp/x" };
    const tricked = handler([env], { daemonEnv, allowEnv: ["GREETING"] });
    const r2 = envOf(await run(tricked.h, { argv: [env], env: { GREETING: "hi" } }));
    expect(r2).toEqual({ PATH: "/usr/local/bin:/usr/bin:/bin", HOME: userInfo().homedir, LANG: "de_DE.UTF-8", GREETING: "hi" });
    // LANG defaults to C.UTF-8; PATH to a fixed default when the daemon has none.
    expect(minimalEnv({})).toEqual({ PATH: DEFAULT_PATH, HOME: userInfo().homedir, LANG: "C.UTF-8" });
  });

  it("envNameProblem: valid names only, never a dynamic-loader variable (--allow-env and the payload share it)", () => {
    for (const ok of ["PGHOST", "_X", "a1"]) expect(envNameProblem(ok), ok).toBeUndefined();
    expect(envNameProblem("LD_PRELOAD")).toMatch(/LD_PRELOAD may not be set/);
    expect(envNameProblem("dyld_insert_libraries")).toMatch(/may not be set/);
    for (const bad of ["", "1X", "A-B", "A=B", "A B"]) expect(envNameProblem(bad), bad).toMatch(/not a valid variable name/);
  });

  it("runsAnything: shells, interpreters and launchers, by bare name, versioned name or absolute path", () => {
    for (const n of ["sh", "bash", "env", "node", "npx", "python", "python3", "python3.11", "/usr/bin/python3.11", "/usr/local/bin/node", "perl5.36", "/bin/sh", "xargs", "sudo", "ruby3.2"]) {
      expect(runsAnything(n), n).toBe(true);
    }
    for (const n of ["echo", "pg_dump", "/usr/bin/touch", "ldd", "sha256sum", "base64", "/opt/python3.11/bin/backup"]) expect(runsAnything(n), n).toBe(false);
  });

  it("loadsCode: env names that make a program load code of the task's choosing", () => {
    for (const n of ["BASH_ENV", "NODE_OPTIONS", "PERL5OPT", "PERL5DB", "PYTHONPATH", "PATH", "JAVA_TOOL_OPTIONS", "GIT_SSH_COMMAND"]) expect(loadsCode(n), n).toBe(true);
    for (const n of ["GREETING", "TZ", "LANG", "BACKUP_TARGET"]) expect(loadsCode(n), n).toBe(false);
  });
});

describe("command handler: the allowlist", () => {
  it("a command that is not allowed never starts, and the error names it", async () => {
    const dir = tempDir();
    const marker = join(dir, "marker");
    const { h, spawned } = handler(["echo"]);
    const r = await run(h, { argv: ["touch", marker] });
    expect(r).toEqual({ error: expect.stringContaining('command "touch" is not allowed'), retryable: false });
    expect((r as { error: string }).error).toContain("--allow-command: echo");
    await new Promise((res) => setTimeout(res, 200));
    expect(existsSync(marker)).toBe(false);
    expect(spawned).toEqual([]);
  });

  it("matches argv[0] exactly: a path is refused unless that exact path was allowed, and vice versa", async () => {
    const dir = tempDir();
    const marker = join(dir, "marker");
    const touch = ["/usr/bin/touch", "/bin/touch"].find((p) => existsSync(p))!;
    const bare = handler(["touch"]);
    for (const argv0 of [touch, "./touch", "../bin/touch", "touch ", "TOUCH"]) {
      const r = await run(bare.h, { argv: [argv0, marker] });
      expect(r, argv0).toMatchObject({ error: expect.stringContaining(`"${argv0}" is not allowed`), retryable: false });
    }
    const abs = handler([touch]);
    expect(await run(abs.h, { argv: ["touch", marker] })).toMatchObject({ error: expect.stringContaining("not allowed"), retryable: false });
    expect(existsSync(marker)).toBe(false);
    expect([...bare.spawned, ...abs.spawned]).toEqual([]);
    // The exact allowed path runs.
    expect(await run(abs.h, { argv: [touch, marker] })).toMatchObject({ result: { exit_code: 0 } });
    expect(existsSync(marker)).toBe(true);
  });

  it("a bare name is looked up in the daemon's PATH, never the payload's (PATH hijack)", async () => {
    const dir = tempDir();
    const marker = join(dir, "hijacked");
    const evil = join(dir, "echo");
    writeFileSync(evil, `#!/bin/sh\ntouch ${marker}\n`);
    chmodSync(evil, 0o755);
    const { h } = handler(["echo"], { allowEnv: ["PATH"] });
    const r = await run(h, { argv: ["echo", "hi"], env: { PATH: dir } });
    expect(r).toMatchObject({ result: { exit_code: 0, stdout_tail: "hi\n" } });
    expect(existsSync(marker)).toBe(false);
    // Relative and empty PATH entries (the current directory) are never searched.
    const rel = handler(["echo"], { searchPath: `.:${""}` });
    expect(await run(rel.h, { argv: ["echo", "x"] }, undefined)).toMatchObject({ error: expect.stringContaining("not found in this executor's PATH"), retryable: false });
  });

  it("refuses dynamic-loader variables and malformed payloads without starting anything", async () => {
    const { h, spawned } = handler(["echo"]);
    const bad: [unknown, RegExp][] = [
      [{ argv: ["echo"], env: { LD_PRELOAD: "/tmp/x.so" } }, /LD_PRELOAD may not be set/],
      [{ argv: ["echo"], env: { DYLD_INSERT_LIBRARIES: "x" } }, /may not be set/],
      [{ argv: ["echo"], env: { "A=B": "x" } }, /not a valid variable name/],
      [{ argv: ["echo"], env: { A: 1 } }, /must be a string/],
      [{ argv: [] }, /non-empty array/],
      [{ argv: "echo hi" }, /non-empty array/],
      [{ argv: ["echo", 3] }, /non-empty array/],
      [{ argv: [""] }, /argv\[0\] is empty/],
      [{ argv: ["echo", "a\0b"] }, /NUL/],
      [{ argv: ["echo"], timeout_s: 0 }, /timeout_s/],
      [{ argv: ["echo"], timeout_s: "10" }, /timeout_s/],
      [{ argv: ["echo"], cwd: "relative/dir" }, /absolute path/],
      [null, /must be an object/],
      [["echo"], /must be an object/],
    ];
    for (const [payload, re] of bad) {
      const r = await run(h, payload);
      expect(r, JSON.stringify(payload)).toMatchObject({ error: expect.stringMatching(re), retryable: false });
      expect((r as { error: string }).error).toMatch(/^invalid command payload/);
    }
    expect(await run(h, { argv: ["echo"], cwd: "/nonexistent-dir-xyz" })).toMatchObject({ error: expect.stringContaining("is not a directory"), retryable: false });
    expect(spawned).toEqual([]);
  });

  it("checks --allow-command values: bare names or absolute paths", () => {
    expect(allowedNameProblem("echo")).toBeUndefined();
    expect(allowedNameProblem("/usr/local/bin/job")).toBeUndefined();
    expect(allowedNameProblem("./job")).toMatch(/relative path/);
    expect(allowedNameProblem("bin/job")).toMatch(/relative path/);
    expect(allowedNameProblem("")).toMatch(/empty/);
  });

  it("accepts timeout_s from the payload and treats null fields as absent", () => {
    expect(parseCommandPayload({ argv: ["a"], timeout_s: 30, env: null, cwd: null })).toEqual({ argv: ["a"], timeoutS: 30 });
  });
});

describe("command handler: exit codes, timeouts, cancellation", () => {
  it("a non-zero exit fails (not retryable) with the exit code and the tails", async () => {
    const { h } = handler(["sh"]);
    const r = await run(h, { argv: ["sh", "-c", "echo out; echo oops >&2; exit 3"] });
    expect(r).toEqual({ error: "exit code 3\n--- stderr (tail) ---\noops\n\n--- stdout (tail) ---\nout\n", retryable: false });
  });

  it("a command killed by a signal it did not get from us fails naming the signal", async () => {
    const { h } = handler(["sh"]);
    const r = await run(h, { argv: ["sh", "-c", "kill -KILL $$"] });
    expect(r).toMatchObject({ error: expect.stringMatching(/^killed by signal SIGKILL/), retryable: false });
  });

  it("a timeout kills the whole process group, grandchildren included", async () => {
    const dir = tempDir();
    const pidFile = join(dir, "grandchild");
    const { h, spawned } = handler(["sh"]);
    const t0 = Date.now();
    const r = await run(h, { argv: ["sh", "-c", `sleep 100 & echo $! > ${pidFile}; echo started; sleep 100`], timeout_s: 0.5 });
    expect(Date.now() - t0).toBeLessThan(4000);
    expect(r).toMatchObject({ error: expect.stringMatching(/^timed out after 0\.500s; the process group was killed\n--- stdout \(tail\) ---\nstarted\n/), retryable: false });
    const grandchild = readPid(pidFile);
    await until(() => !alive(grandchild) && !alive(spawned[0]!), "the grandchild and the leader to be gone", 5_000);
  });

  it("SIGTERM is escalated to SIGKILL after the grace period", async () => {
    const dir = tempDir();
    const pidFile = join(dir, "grandchild");
    const { h } = handler(["sh"], { killGraceMs: 300 });
    const t0 = Date.now();
    // SIG_IGN survives exec: the background sleep ignores SIGTERM too.
    const r = await run(h, { argv: ["sh", "-c", `trap '' TERM; sleep 100 & echo $! > ${pidFile}; wait`], timeout_s: 0.3 });
    expect(Date.now() - t0).toBeGreaterThanOrEqual(550);
    expect(r).toMatchObject({ error: expect.stringMatching(/^timed out/), retryable: false });
    await until(() => !alive(readPid(pidFile)), "the TERM-ignoring grandchild to be killed", 5_000);
  });

  it("cancellation (abort) kills the process group and resolves promptly", async () => {
    const dir = tempDir();
    const pidFile = join(dir, "grandchild");
    const ctl = new AbortController();
    const { h, spawned } = handler(["sh"], { onSpawn: () => setTimeout(() => ctl.abort(), 200) });
    const t0 = Date.now();
    const r = await run(h, { argv: ["sh", "-c", `sleep 100 & echo $! > ${pidFile}; wait`] }, ctl.signal);
    expect(Date.now() - t0).toBeLessThan(3000);
    expect(r).toEqual({ error: "cancelled", retryable: false });
    await until(() => existsSync(pidFile) && !alive(readPid(pidFile)) && !alive(spawned[0]!), "the grandchild and the leader to be gone", 5_000);
  });

  it("what a command leaves running in its group when it exits is cleaned up", async () => {
    const dir = tempDir();
    const pidFile = join(dir, "leftover");
    const { h } = handler(["sh"]);
    const r = await run(h, { argv: ["sh", "-c", `sleep 100 > /dev/null 2>&1 & echo $! > ${pidFile}; echo done`] });
    expect(r).toMatchObject({ result: { exit_code: 0, stdout_tail: "done\n" } });
    await until(() => !alive(readPid(pidFile)), "the leftover to be gone", 5_000);
  });

  it("an allowed command missing on this host fails without retry", async () => {
    const { h } = handler(["tether-no-such-command-xyz"]);
    expect(await run(h, { argv: ["tether-no-such-command-xyz"] })).toMatchObject({ error: expect.stringContaining("not found"), retryable: false });
  });
});

describe("command handler: bounded output", () => {
  it("keeps the last 64 KiB of each stream however much is printed; the report fits the 64 KiB body limit", async () => {
    const { h } = handler(["sh"]);
    const r = await run(h, { argv: ["sh", "-c", "head -c 3000000 /dev/zero | tr '\\0' a; echo END; head -c 200000 /dev/zero | tr '\\0' b >&2; echo ERR >&2"] });
    const res = (r as { result: Record<string, any> }).result;
    expect(res.exit_code).toBe(0);
    expect(res.stdout_bytes).toBe(3_000_004);
    expect(res.stderr_bytes).toBe(200_004);
    expect(res.stdout_tail.endsWith("aaaaEND\n")).toBe(true);
    expect(res.stderr_tail.endsWith("bbbbERR\n")).toBe(true);
    expect(res.stdout_tail.length).toBeLessThanOrEqual(TAIL_BYTES);
    expect(Buffer.byteLength(JSON.stringify(res))).toBeLessThanOrEqual(MAX_RESULT_JSON_BYTES);
    expect(res.stdout_tail.length + res.stderr_tail.length).toBeGreaterThan(MAX_RESULT_JSON_BYTES - 1024);
  });

  it("a failure's error text stays within 4 KiB", async () => {
    const { h } = handler(["sh"]);
    const r = await run(h, { argv: ["sh", "-c", "head -c 100000 /dev/zero | tr '\\0' x >&2; echo LAST >&2; exit 1"] });
    const err = (r as { error: string }).error;
    expect(Buffer.byteLength(err)).toBeLessThanOrEqual(ERROR_TEXT_BYTES);
    expect(err.startsWith("exit code 1\n--- stderr (tail) ---\n")).toBe(true);
    expect(err.endsWith("xxLAST\n")).toBe(true);
  });

  it("TailBuffer keeps exactly the last N bytes across wrap-arounds", () => {
    const t = new TailBuffer(10);
    let all = "";
    for (const piece of ["abc", "defghij", "k", "lmnopqrstuvwxyz0123", "45", "6789abcdefgh"]) {
      t.push(Buffer.from(piece));
      all += piece;
      expect(t.bytes().toString()).toBe(all.slice(-10));
    }
    expect(t.total).toBe(all.length);
    expect(t.truncated).toBe(true);
    const small = new TailBuffer(100);
    small.push(Buffer.from("hello"));
    expect(small.text()).toBe("hello");
    expect(small.truncated).toBe(false);
  });

  it("TailBuffer text skips a UTF-8 character cut at the front", () => {
    const t = new TailBuffer(4);
    t.push(Buffer.from("aé€")); // 1 + 2 + 3 bytes: the last 4 are the 2nd byte of é and €
    expect(t.text()).toBe("€");
  });

  it("fitResult and failureText respect their byte limits with multi-byte and escaped text", () => {
    const res = fitResult({ stdout_tail: "€\u0001".repeat(30_000), stderr_tail: "\"".repeat(30_000), exit_code: 0 });
    expect(Buffer.byteLength(JSON.stringify(res))).toBeLessThanOrEqual(MAX_RESULT_JSON_BYTES);
    expect(res.stdout_tail.length).toBeGreaterThan(0);
    expect(Buffer.byteLength(failureText("exit code 1", "€".repeat(5000), "é".repeat(5000)))).toBeLessThanOrEqual(ERROR_TEXT_BYTES);
  });
});
