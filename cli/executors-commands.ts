import { requireId, type ParsedArgs } from "./args.ts";
import { info, out, type Command } from "./command.ts";
import { jsonOption, table } from "./data-dir.ts";
import { OPERATOR_USAGE, operatorOptions, withOperator } from "./operator-client.ts";
import type { ExecutorView } from "../controller/domain/executors.ts";

const idArg = (args: ParsedArgs) => requireId(args, "executor", "executors list");

function printExecutor(e: ExecutorView, json: boolean): void {
  if (json) out(JSON.stringify(e, null, 2));
  else out(Object.entries(e).map(([k, v]) => `${k.padEnd(16)} ${typeof v === "object" && v !== null ? JSON.stringify(v) : String(v)}`).join("\n"));
}

export const executorsList: Command = {
  spec: { name: "executors list", usage: `executors list ${OPERATOR_USAGE} [--json]`, summary: "Lists enrolled executors with their liveness.", options: { ...operatorOptions, ...jsonOption } },
  async run(args) {
    const list = await withOperator(args, (op) => op.listExecutors());
    if (args.flags.json) out(JSON.stringify(list, null, 2));
    else out(table(list as unknown as Record<string, unknown>[], ["id", "name", "epoch", "status", "cert_expires_at", "last_seen_at", "labels"]));
    return 0;
  },
};

export const executorsShow: Command = {
  spec: { name: "executors show", usage: `executors show ID ${OPERATOR_USAGE} [--json]`, summary: "Shows one executor.", options: { ...operatorOptions, ...jsonOption }, positionals: ["ID"] },
  async run(args) {
    const id = idArg(args);
    printExecutor(await withOperator(args, (op) => op.showExecutor(id)), args.flags.json!);
    return 0;
  },
};

export const executorsRevoke: Command = {
  spec: {
    name: "executors revoke",
    usage: `executors revoke ID ${OPERATOR_USAGE}`,
    summary: "Revokes an executor: its next request is refused with CERT_REVOKED and the daemon stops.",
    options: { ...operatorOptions, ...jsonOption },
    positionals: ["ID"],
  },
  async run(args) {
    const id = idArg(args);
    const e = await withOperator(args, (op) => op.revokeExecutor(id));
    info(`revoked executor ${id}`);
    if (args.flags.json) printExecutor(e, true);
    return 0;
  },
};

export const executorsDrain: Command = {
  spec: {
    name: "executors drain",
    usage: `executors drain ID ${OPERATOR_USAGE}`,
    summary: "Asks an executor to drain: it finishes its work and takes no more.",
    options: { ...operatorOptions, ...jsonOption },
    positionals: ["ID"],
  },
  async run(args) {
    const id = idArg(args);
    const e = await withOperator(args, (op) => op.drainExecutor(id));
    info(`executor ${id} will drain`);
    if (args.flags.json) printExecutor(e, true);
    return 0;
  },
};
