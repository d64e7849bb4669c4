import { parseDuration } from "../shared/duration.ts";
import { parseKeyValues, UsageError } from "./args.ts";
import { info, out, type Command } from "./command.ts";
import { dataDirOption, jsonOption, table, withDataDir } from "./data-dir.ts";

const who = () => ({ via: "cli", user: process.env.USER ?? "unknown" });

export const tokenCreate: Command = {
  spec: {
    name: "token create",
    usage: "token create --data-dir DIR [--ttl 1h] [--uses N] [--label k=v]…",
    summary: "Creates an enrollment token and prints it alone on stdout (shown once; only its hash is stored).",
    options: {
      ...dataDirOption,
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
    const created = await withDataDir(args, (ctx) => ctx.enrollment.create({ ttlSeconds, maxUses, labels }, who()));
    info(`enrollment token ${created.id} expires ${created.expires_at}, ${created.max_uses} use(s)`);
    out(created.token);
    return 0;
  },
};

export const tokenList: Command = {
  spec: {
    name: "token list",
    summary: "Lists enrollment tokens (never their secrets).",
    options: { ...dataDirOption, ...jsonOption },
  },
  async run(args) {
    const tokens = await withDataDir(args, (ctx) => ctx.enrollment.list());
    if (args.flags.json) out(JSON.stringify(tokens, null, 2));
    else out(table(tokens as unknown as Record<string, unknown>[], ["id", "state", "uses", "max_uses", "expires_at", "labels"]));
    return 0;
  },
};

export const tokenRevoke: Command = {
  spec: {
    name: "token revoke",
    usage: "token revoke ID --data-dir DIR",
    summary: "Revokes an enrollment token so it can enroll nobody else.",
    options: { ...dataDirOption },
    positionals: ["ID"],
  },
  async run(args) {
    const id = args.positionals[0];
    if (!id) throw new UsageError("the token ID is required (see: tether token list)");
    const ok = await withDataDir(args, (ctx) => ctx.enrollment.revoke(id, who()));
    if (!ok) throw new Error(`no active enrollment token ${id}`);
    info(`revoked enrollment token ${id}`);
    return 0;
  },
};
