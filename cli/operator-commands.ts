/**
 * Operator access: `tether admin bootstrap` (the first admin API token, on the
 * controller host), `tether login` / `tether logout`, `tether api-token
 * create|list|revoke` and `tether audit list`.
 */
import { resolve } from "node:path";
import { parseDuration } from "../shared/duration.ts";
import { readFileSync } from "node:fs";
import { durationSeconds, requireString, UsageError, wholeNumber } from "./args.ts";
import { info, out, type Command } from "./command.ts";
import { idCommand, listCommand } from "./command-kinds.ts";
import { dataDirOption, withDataDir } from "./data-dir.ts";
import { loginPath, readLogin, removeLogin, saveLogin } from "./login-store.ts";
import { normalizeUrl, OPERATOR_USAGE, operatorOptions, readCaFile, RemoteOperatorClient, withOperator } from "./operator-client.ts";
import { AUDIT_MAX_LIMIT, ROLES } from "../shared/wire/operator.ts";

const user = () => process.env.USER ?? process.env.LOGNAME ?? "unknown";

export const adminBootstrap: Command = {
  spec: {
    name: "admin bootstrap",
    usage: "admin bootstrap --data-dir DIR [--name NAME] [--ttl DURATION]",
    summary:
      "Creates the first admin API token and prints it alone on stdout (shown once; only its hash is stored). " +
      "Runs on the controller host against its data dir, and refuses while an active admin token exists.",
    options: {
      ...dataDirOption,
      name: { kind: "string", arg: "NAME", help: "a name for the token", default: "bootstrap-admin" },
      ttl: { kind: "string", arg: "DURATION", help: "expire the token after this long (default: no expiry)" },
    },
  },
  async run(args) {
    const ttl = durationSeconds(args, "ttl");
    const created = await withDataDir(args, (ctx) =>
      ctx.apiTokens.bootstrap({ name: args.strings.name, ttlSeconds: ttl }, `cli:${user()}`, { via: "cli", user: user() }),
    );
    if (!created) {
      throw new Error("refused: an active admin API token already exists (an admin can mint more with: tether api-token create)");
    }
    info(`admin API token ${created.id} (${created.name})${created.expires_at ? ` expires ${created.expires_at}` : ", no expiry"} — store it now, it is not shown again`);
    out(created.token);
    return 0;
  },
};

export const login: Command = {
  spec: {
    name: "login",
    usage: "login --url URL (--token TOKEN | --token-file FILE) [--ca-file FILE]",
    summary:
      "Checks an API token against the controller and, only when it works, saves {url, token, ca_file} (0600) " +
      "for later commands; a failing login never replaces a saved one. Config dir: $TETHER_CONFIG_DIR, else " +
      "$XDG_CONFIG_HOME/tether, else ~/.config/tether.",
    options: {
      url: { kind: "string", arg: "URL", help: "the controller, e.g. https://controller:8443", env: "TETHER_URL" },
      token: { kind: "string", arg: "TOKEN", help: "the API token (tet_pat_…; prefer --token-file: argv is visible to other users)", env: "TETHER_TOKEN" },
      "token-file": { kind: "string", arg: "FILE", help: "file holding the API token ('-' for stdin); wins over --token" },
      "ca-file": { kind: "string", arg: "FILE", help: "the controller's CA bundle (its ca.pem; default: the system's trust store)", env: "TETHER_CA_FILE" },
    },
  },
  async run(args) {
    const url = normalizeUrl(requireString(args, "url"));
    const tokenFile = args.strings["token-file"];
    let token = args.strings.token;
    if (tokenFile !== undefined) {
      token = readFileSync(tokenFile === "-" ? 0 : resolve(tokenFile), "utf8").trim();
    }
    if (!token) throw new UsageError("--token (or --token-file, or TETHER_TOKEN) is required");
    const caFile = args.strings["ca-file"] ? resolve(args.strings["ca-file"]) : null;
    const client = new RemoteOperatorClient(url, token, caFile ? readCaFile(caFile) : undefined);
    let me;
    try {
      me = await client.whoami();
    } catch (e) {
      const kept = safeReadLogin();
      throw new Error(`login failed, nothing saved${kept ? ` (kept the login for ${kept.url})` : ""}: ${(e as Error).message}`);
    } finally {
      await client.close();
    }
    const path = loginPath();
    saveLogin({ url, token, ca_file: caFile, token_id: me.id, name: me.name, role: me.role, saved_at: new Date().toISOString() }, path);
    info(`logged in to ${url} as ${me.name} (${me.role}, ${me.id}${me.expires_at ? `, expires ${me.expires_at}` : ""}); saved to ${path}`);
    return 0;
  },
};

function safeReadLogin() {
  try {
    return readLogin();
  } catch {
    return undefined;
  }
}

export const logout: Command = {
  spec: { name: "logout", summary: "Forgets the saved login (it does not revoke the token: use tether api-token revoke).", options: {} },
  async run() {
    const path = loginPath();
    info(removeLogin(path) ? `removed ${path}` : "no saved login");
    return 0;
  },
};

export const apiTokenCreate: Command = {
  spec: {
    name: "api-token create",
    usage: `api-token create --name NAME --role ${ROLES.join("|")} [--ttl DURATION] ${OPERATOR_USAGE}`,
    summary: "Creates an operator API token and prints it alone on stdout (shown once; only its hash is stored). Needs an admin.",
    options: {
      ...operatorOptions,
      name: { kind: "string", arg: "NAME", help: "what the token is for (shown in lists and in the audit log)" },
      role: { kind: "string", arg: "ROLE", help: `${ROLES.join(", ")}` },
      ttl: { kind: "string", arg: "DURATION", help: "expire the token after this long, e.g. 90d (default: no expiry)" },
    },
  },
  async run(args) {
    const name = requireString(args, "name");
    const role = requireString(args, "role");
    if (!(ROLES as readonly string[]).includes(role)) throw new UsageError(`--role must be one of ${ROLES.join(", ")}`);
    const ttl = durationSeconds(args, "ttl");
    const created = await withOperator(args, (op) => op.createApiToken({ name, role, ...(ttl !== undefined ? { ttl_s: ttl } : {}) }));
    info(`API token ${created.id} (${created.name}, ${created.role})${created.expires_at ? ` expires ${created.expires_at}` : ", no expiry"}`);
    out(created.token);
    return 0;
  },
};

export const apiTokenList = listCommand({
  name: "api-token list", summary: "Lists operator API tokens (never their secrets). Needs an admin.",
  list: () => (op) => op.listApiTokens(),
  human: ["id", "name", "role", "state", "expires_at", "last_used_at", "last_used_ip"],
});

export const apiTokenRevoke = idCommand({
  name: "api-token revoke", what: "API token", act: (op, id) => op.revokeApiToken(id),
  summary: "Revokes an operator API token: its very next request is refused. Needs an admin.",
  done: (id) => `revoked API token ${id}`,
});

export const auditList = listCommand({
  name: "audit list",
  usage: `audit list [--since TIME|DURATION] [--limit N] ${OPERATOR_USAGE} [--json]`,
  summary: "Prints the newest audit events (one JSON object per line, newest last). Needs an admin.",
  options: {
    since: { kind: "string", arg: "TIME", help: "only events at or after this RFC 3339 time, or this long ago (e.g. 1h)" },
    limit: { kind: "string", arg: "N", help: `at most this many events (1–${AUDIT_MAX_LIMIT})`, default: "100" },
  },
  list(args) {
    const limit = wholeNumber(args, "limit", AUDIT_MAX_LIMIT);
    const since = auditSince(args.strings.since);
    return (op) => op.audit({ since, limit });
  },
  human: (events) => (events.length ? events.map((e) => JSON.stringify(e)).join("\n") : undefined),
});

/** `--since`: an RFC 3339 time as given, or a duration back from now. */
function auditSince(text: string | undefined): string | undefined {
  if (text === undefined) return undefined;
  if (/^\d+[smhd]?$/.test(text.trim())) return new Date(Date.now() - parseDuration(text) * 1000).toISOString().replace(/\.\d{3}Z$/, "Z");
  if (!Number.isFinite(Date.parse(text))) throw new UsageError(`--since expects an RFC 3339 time or a duration, got "${text}"`);
  return text;
}
