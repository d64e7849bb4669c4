/** `tether task submit|list|show|cancel|wait` — on --data-dir or --url, through the OperatorClient. */
import { durationSeconds, parseKeyValues, UsageError, wholeNumber } from "./args.ts";
import { info, out, type Command } from "./command.ts";
import { idCommand, listCommand, recordPrinter } from "./command-kinds.ts";
import { jsonOption } from "./data-dir.ts";
import { OPERATOR_USAGE, operatorOptions, withOperator } from "./operator-client.ts";
import { TERMINAL_STATUSES, type TaskStatus } from "../shared/wire/operator.ts";

const STATUSES: TaskStatus[] = ["queued", "leased", "succeeded", "failed", "cancelled"];
const print = recordPrinter(17);

export const taskSubmit: Command = {
  spec: {
    name: "task submit",
    usage: `task submit ${OPERATOR_USAGE} [--selector k=v]… [--timeout 10m] [--max-attempts 3] -- ARGV…`,
    summary: "Submits a `command` task (ARGV runs without a shell on an executor that allows ARGV[0]) and prints its id alone on stdout.",
    options: {
      ...operatorOptions,
      selector: { kind: "list", arg: "k=v", help: "run only on executors with this label" },
      timeout: { kind: "string", arg: "DURATION", help: "how long one attempt may run", default: "10m" },
      "max-attempts": { kind: "string", arg: "N", help: "attempts before the task fails", default: "3" },
    },
    passthrough: true,
  },
  async run(args) {
    if (args.rest.length === 0 || args.rest[0] === "") throw new UsageError("give the command after --, e.g. tether task submit -- echo hello");
    const task = await withOperator(args, (op) =>
      op.submitTask({
        kind: "command",
        payload: { argv: args.rest },
        selector: parseKeyValues(args.lists.selector!, "selector"),
        timeout_s: durationSeconds(args, "timeout"),
        max_attempts: wholeNumber(args, "max-attempts"),
      }),
    );
    info(`task ${task.id} queued`);
    out(task.id);
    return 0;
  },
};

export const taskList = listCommand({
  name: "task list",
  usage: `task list ${OPERATOR_USAGE} [--status S] [--limit N] [--json]`,
  summary: "Lists tasks, newest first.",
  options: {
    status: { kind: "string", arg: "STATUS", help: STATUSES.join(", ") },
    limit: { kind: "string", arg: "N", help: "at most N tasks (max 1000)", default: "100" },
  },
  list(args) {
    const status = STATUSES.find((s) => s === args.strings.status);
    if (args.strings.status !== undefined && !status) throw new UsageError(`--status must be one of ${STATUSES.join(", ")}`);
    return (op) => op.listTasks({ status, limit: Math.min(wholeNumber(args, "limit") ?? 100, 1000) });
  },
  human: ["id", "kind", "status", "attempts", "executor_id", "created_at", "error"],
});

export const taskShow = idCommand({ name: "task show", what: "task", summary: "Shows one task with its result.", act: (op, id) => op.showTask(id), print });

export const taskCancel = idCommand({
  name: "task cancel", what: "task", act: (op, id) => op.cancelTask(id), print,
  summary: "Cancels a task; a running one is stopped on its executor at the next heartbeat.",
  done: (id) => `task ${id} cancelled`,
});

export const taskWait: Command = {
  spec: {
    name: "task wait",
    usage: `task wait ID… ${OPERATOR_USAGE} [--timeout DURATION] [--json]`,
    summary: "Waits until every task has finished; exits 0 only when all succeeded (1 if any failed or was cancelled, 3 on timeout).",
    options: {
      ...operatorOptions,
      ...jsonOption,
      timeout: { kind: "string", arg: "DURATION", help: "give up after this long (default: wait indefinitely)" },
      interval: { kind: "string", arg: "DURATION", help: "how often to check", default: "1s" },
    },
    positionals: ["ID…"],
  },
  async run(args) {
    const ids = [...new Set(args.positionals)];
    if (ids.length === 0) throw new UsageError("give at least one task ID");
    const timeoutS = durationSeconds(args, "timeout");
    const intervalMs = (durationSeconds(args, "interval") ?? 1) * 1000;
    const deadline = timeoutS === undefined ? Infinity : Date.now() + timeoutS * 1000;
    const final = await withOperator(args, async (op) => {
      let last = "";
      for (;;) {
        const tasks = await Promise.all(ids.map((id) => op.showTask(id)));
        const done = tasks.filter((t) => (TERMINAL_STATUSES as string[]).includes(t.status));
        const line = `${done.length}/${tasks.length} finished (${STATUSES.map((s) => `${s} ${tasks.filter((t) => t.status === s).length}`).join(", ")})`;
        if (line !== last) info(line);
        last = line;
        if (done.length === tasks.length || Date.now() >= deadline) return tasks;
        await new Promise((r) => setTimeout(r, Math.min(intervalMs, Math.max(0, deadline - Date.now()))));
      }
    });
    if (args.flags.json) out(JSON.stringify(final, null, 2));
    const unfinished = final.filter((t) => !(TERMINAL_STATUSES as string[]).includes(t.status));
    const bad = final.filter((t) => t.status === "failed" || t.status === "cancelled");
    for (const t of bad) info(`task ${t.id} ${t.status}${t.error ? `: ${t.error.split("\n")[0]}` : ""}`);
    if (unfinished.length) {
      info(`timed out with ${unfinished.length} task(s) unfinished`);
      return 3;
    }
    return bad.length ? 1 : 0;
  },
};
