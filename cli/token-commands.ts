import { parseDuration } from "../shared/duration.ts";
import { parseKeyValues, requireId, UsageError } from "./args.ts";
import { info, out, type Command } from "./command.ts";
import { jsonOption, table } from "./data-dir.ts";
import { OPERATOR_USAGE, operatorOptions, withOperator } from "./operator-client.ts";

export const tokenCreate: Command = {
  spec: {
    name: "token create",
    usage: `token create ${OPERATOR_USAGE} [--ttl 1h] [--uses N] [--label k=v]…`,
    summary: "Creates an enrollment token and prints it alone on stdout (shown once; only its hash is stored).",
    options: {
      ...operatorOptions,
      ttl: { kind: "string", arg: "DURATION", help: "how long the token is valid", default: "1h" },
      uses: { kind: "string", arg: "N", help: "how many registrations it allows", default: "1" },
      label: { kind: "list", arg: "k=v", help: "label every executor enrolled with it gets" },
    },
  },
  async run(args) {
    let ttlSeconds: number;
    try {
      ttlSeconds = parseDuration(args.strings.ttl!);
    } catch (e) {
      throw new UsageError(`--ttl: ${(e as Error).message}`);
    }
    const maxUses = Number(args.strings.uses);
    if (!Number.isInteger(maxUses) || maxUses < 1) throw new UsageError(`--uses must be a whole number ≥ 1`);
    const labels = parseKeyValues(args.lists.label!, "label");
    const created = await withOperator(args, (op) => op.createEnrollmentToken({ ttl_s: ttlSeconds, max_uses: maxUses, labels }));
    info(`enrollment token ${created.id} expires ${created.expires_at}, ${created.max_uses} use(s)`);
    out(created.token);
    return 0;
  },
};

export const tokenList: Command = {
  spec: {
    name: "token list",
    usage: `token list ${OPERATOR_USAGE} [--json]`,
    summary: "Lists enrollment tokens (never their secrets).",
    options: { ...operatorOptions, ...jsonOption },
  },
  async run(args) {
    const tokens = await withOperator(args, (op) => op.listEnrollmentTokens());
    if (args.flags.json) out(JSON.stringify(tokens, null, 2));
    else out(table(tokens as unknown as Record<string, unknown>[], ["id", "state", "uses", "max_uses", "expires_at", "labels"]));
    return 0;
  },
};

export const tokenRevoke: Command = {
  spec: {
    name: "token revoke",
    usage: `token revoke ID ${OPERATOR_USAGE}`,
    summary: "Revokes an enrollment token so it can enroll nobody else.",
    options: { ...operatorOptions },
    positionals: ["ID"],
  },
  async run(args) {
    const id = requireId(args, "token", "token list");
    await withOperator(args, (op) => op.revokeEnrollmentToken(id));
    info(`revoked enrollment token ${id}`);
    return 0;
  },
};
