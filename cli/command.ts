import type { CommandSpec, ParsedArgs } from "./args.ts";
import { oneLine, terminalSafe } from "./terminal.ts";

/** One CLI command: its declared options and what it does. Returns the exit code. */
export interface Command {
  spec: CommandSpec;
  run(args: ParsedArgs): Promise<number>;
}

/** Everything that is not a secret or machine-readable output goes to stderr. */
export function info(msg: string): void {
  const safe = terminalSafe(msg);
  process.stderr.write(safe.endsWith("\n") ? safe : safe + "\n");
}

export function out(text: string): void {
  const safe = terminalSafe(text);
  process.stdout.write(safe.endsWith("\n") ? safe : safe + "\n");
}

/** One record as `key value` lines (objects as JSON), keys padded to `keyWidth`. */
export function recordText(r: object, keyWidth: number): string {
  return Object.entries(r)
    .map(([k, v]) => `${k.padEnd(keyWidth)} ${oneLine(v !== null && typeof v === "object" ? JSON.stringify(v) : String(v))}`)
    .join("\n");
}
