import type { CommandSpec, ParsedArgs } from "./args.ts";

/** One CLI command: its declared options and what it does. Returns the exit code. */
export interface Command {
  spec: CommandSpec;
  run(args: ParsedArgs): Promise<number>;
}

/** Everything that is not a secret or machine-readable output goes to stderr. */
export function info(msg: string): void {
  process.stderr.write(msg.endsWith("\n") ? msg : msg + "\n");
}

export function out(text: string): void {
  process.stdout.write(text.endsWith("\n") ? text : text + "\n");
}

/** One record as `key value` lines (objects as JSON), keys padded to `keyWidth`. */
export function recordText(r: object, keyWidth: number): string {
  return Object.entries(r)
    .map(([k, v]) => `${k.padEnd(keyWidth)} ${v !== null && typeof v === "object" ? JSON.stringify(v) : String(v)}`)
    .join("\n");
}
