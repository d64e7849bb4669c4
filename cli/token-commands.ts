/** `tether token create|list|revoke` — enrollment tokens, on --data-dir or --url. */
import { durationSeconds, parseKeyValues, wholeNumber } from "./args.ts";
import { info, out, type Command } from "./command.ts";
import { idCommand, listCommand } from "./command-kinds.ts";
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
    const ttlSeconds = durationSeconds(args, "ttl");
    const maxUses = wholeNumber(args, "uses");
    const labels = parseKeyValues(args.lists.label ?? [], "label");
    const created = await withOperator(args, (op) => op.createEnrollmentToken({ ttl_s: ttlSeconds, max_uses: maxUses, labels }));
    info(`enrollment token ${created.id} expires ${created.expires_at}, ${created.max_uses} use(s)`);
    out(created.token);
    return 0;
  },
};

export const tokenList = listCommand({
  name: "token list", summary: "Lists enrollment tokens (never their secrets).",
  list: () => (op) => op.listEnrollmentTokens(),
  human: ["id", "state", "uses", "max_uses", "expires_at", "labels"],
});

export const tokenRevoke = idCommand({
  name: "token revoke", what: "token", act: (op, id) => op.revokeEnrollmentToken(id),
  summary: "Revokes an enrollment token so it can enroll nobody else.",
  done: (id) => `revoked enrollment token ${id}`,
});
