/** `tether token create|list|revoke` — enrollment tokens, on --data-dir or --url. */
import { durationSeconds, parseKeyValues, UsageError, wholeNumber } from "./args.ts";
import { info, out, type Command } from "./command.ts";
import { idCommand, listCommand } from "./command-kinds.ts";
import { OPERATOR_USAGE, operatorOptions, withOperator } from "./operator-client.ts";

export const tokenCreate: Command = {
  spec: {
    name: "token create",
    usage: `token create ${OPERATOR_USAGE} [--ttl 1h] [--uses N] [--label k=v]… [--join-command URL]`,
    summary:
      "Creates an enrollment token and prints it alone on stdout (shown once; only its hash is stored). With --join-command, " +
      "prints instead the whole `tether executor run` command a new host reaching the controller at URL runs to join: " +
      "the URL, the active CA's fingerprint as a pin (no CA file to copy) and the token.",
    options: {
      ...operatorOptions,
      ttl: { kind: "string", arg: "DURATION", help: "how long the token is valid", default: "1h" },
      uses: { kind: "string", arg: "N", help: "how many registrations it allows", default: "1" },
      label: { kind: "list", arg: "k=v", help: "label every executor enrolled with it gets" },
      "join-command": { kind: "string", arg: "URL", help: "print the join command for hosts that reach the controller at URL" },
    },
  },
  async run(args) {
    const ttlSeconds = durationSeconds(args, "ttl");
    const maxUses = wholeNumber(args, "uses");
    const labels = parseKeyValues(args.lists.label ?? [], "label");
    const joinUrl = args.strings["join-command"];
    if (joinUrl !== undefined) checkJoinUrl(joinUrl);
    const { created, pin } = await withOperator(args, async (op) => {
      const created = await op.createEnrollmentToken({ ttl_s: ttlSeconds, max_uses: maxUses, labels });
      const active = joinUrl === undefined ? undefined : (await op.trustStatus()).cas.find((c) => c.state === "active");
      return { created, pin: active?.fingerprint_sha256 };
    });
    info(`enrollment token ${created.id} expires ${created.expires_at}, ${created.max_uses} use(s)`);
    if (joinUrl === undefined) out(created.token);
    else {
      if (!pin) throw new Error("the controller reported no active CA to pin");
      info("run this on the new host (it holds the token: treat it as a secret; --state-dir is where the identity will live)");
      out(joinCommand(joinUrl, pin, created.token));
    }
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

function checkJoinUrl(url: string): void {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw new UsageError(`--join-command: "${url}" is not a URL`);
  }
  if (u.protocol !== "https:") throw new UsageError("--join-command: the controller URL must be https://");
}

/** A shell word: as is when it is plainly safe, else single-quoted. */
const word = (s: string) => (/^[A-Za-z0-9_@%+=:,./-]+$/.test(s) ? s : `'${s.replace(/'/g, `'\\''`)}'`);

/** The command a new host runs to join (PROTOCOL §6, §7.6): no CA file, a pin instead. */
export function joinCommand(url: string, caFingerprint: string, token: string): string {
  return ["tether", "executor", "run", "--controller", url, "--ca-fingerprint", `SHA256:${caFingerprint}`, "--state-dir", "/var/lib/tether/executor", "--token", token]
    .map(word)
    .join(" ");
}
