import { helpText, parseArgs, UsageError } from "./args.ts";
import type { Command } from "./command.ts";
import { oneLine } from "./terminal.ts";

/** Command table: loaded lazily so `tether executor run` never loads the server. */
const COMMANDS: Record<string, () => Promise<Command>> = {
  "controller start": async () => (await import("./controller-start.ts")).controllerStart,
  "controller migrate": async () => (await import("./controller-migrate.ts")).controllerMigrate,
  "token create": async () => (await import("./token-commands.ts")).tokenCreate,
  "token list": async () => (await import("./token-commands.ts")).tokenList,
  "token revoke": async () => (await import("./token-commands.ts")).tokenRevoke,
  "executors list": async () => (await import("./executors-commands.ts")).executorsList,
  "executors show": async () => (await import("./executors-commands.ts")).executorsShow,
  "executors revoke": async () => (await import("./executors-commands.ts")).executorsRevoke,
  "executors drain": async () => (await import("./executors-commands.ts")).executorsDrain,
  "api-token create": async () => (await import("./operator-commands.ts")).apiTokenCreate,
  "api-token list": async () => (await import("./operator-commands.ts")).apiTokenList,
  "api-token revoke": async () => (await import("./operator-commands.ts")).apiTokenRevoke,
  "admin bootstrap": async () => (await import("./operator-commands.ts")).adminBootstrap,
  login: async () => (await import("./operator-commands.ts")).login,
  logout: async () => (await import("./operator-commands.ts")).logout,
  "audit list": async () => (await import("./operator-commands.ts")).auditList,
  "task submit": async () => (await import("./task-commands.ts")).taskSubmit,
  "task list": async () => (await import("./task-commands.ts")).taskList,
  "task show": async () => (await import("./task-commands.ts")).taskShow,
  "task cancel": async () => (await import("./task-commands.ts")).taskCancel,
  "task wait": async () => (await import("./task-commands.ts")).taskWait,
  "ca show": async () => (await import("./ca-commands.ts")).caShow,
  "ca bundle": async () => (await import("./ca-commands.ts")).caBundle,
  "ca status": async () => (await import("./ca-commands.ts")).caStatus,
  "ca rotate": async () => (await import("./ca-commands.ts")).caRotate,
  "ca activate": async () => (await import("./ca-commands.ts")).caActivate,
  "ca crl": async () => (await import("./ca-commands.ts")).caCrl,
  "jwt-key rotate": async () => (await import("./jwt-key-commands.ts")).jwtKeyRotate,
  "executor run": async () => (await import("./executor-commands.ts")).executorRun,
  "executor status": async () => (await import("./executor-commands.ts")).executorStatus,
};

function topHelp(): string {
  const names = Object.keys(COMMANDS).map((n) => `  tether ${n}`);
  return [
    "tether — mTLS executor control plane",
    "",
    "Commands:",
    ...names,
    "",
    "Run `tether <command> --help` for the options of a command.",
    "",
  ].join("\n");
}

/** Finds the command words wherever they stand, so options may come before them. */
function findCommand(argv: string[]): { name: string; at: number } | undefined {
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === "--") break;
    if (argv[i]!.startsWith("-")) continue;
    const two = `${argv[i]} ${argv[i + 1] ?? ""}`;
    if (COMMANDS[two]) return { name: two, at: i };
    if (COMMANDS[argv[i]!]) return { name: argv[i]!, at: i };
  }
  return undefined;
}

export async function main(argv: string[]): Promise<number> {
  const found = findCommand(argv);
  if (!found) {
    if (argv.length === 0 || argv.includes("--help") || argv.includes("-h")) {
      process.stdout.write(topHelp());
      return argv.length === 0 ? 2 : 0;
    }
    const words = argv.filter((a) => !a.startsWith("-")).slice(0, 2).map(oneLine);
    const group = Object.keys(COMMANDS).filter((n) => n.startsWith(`${words[0]} `));
    process.stderr.write(
      group.length
        ? `tether: unknown command "${words.join(" ")}"; try: ${group.map((g) => `tether ${g}`).join(", ")}\n`
        : `tether: unknown command "${words.join(" ")}" (see: tether --help)\n`,
    );
    return 2;
  }
  const { name } = found;
  const rest = [...argv];
  rest.splice(found.at, name.split(" ").length);
  const command = await COMMANDS[name]!();
  try {
    const args = parseArgs(command.spec, rest);
    if (args.help) {
      process.stdout.write(helpText(command.spec));
      return 0;
    }
    return await command.run(args);
  } catch (e) {
    if (e instanceof UsageError) {
      process.stderr.write(`tether ${name}: ${oneLine(e.message)}\n`);
      return 2;
    }
    const msg = e instanceof Error ? e.message : String(e);
    process.stderr.write(`tether ${name}: ${oneLine(msg.split("\n")[0] ?? "")}\n`);
    if (process.env.TETHER_DEBUG) process.stderr.write(`${(e as Error)?.stack ?? ""}\n`);
    return 1;
  }
}
