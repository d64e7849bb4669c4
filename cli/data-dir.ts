/** Options and helpers shared by the commands that act on a controller's data dir. */
import { resolve } from "node:path";
import { oneLine } from "./terminal.ts";
import type { OptionSpec, ParsedArgs } from "./args.ts";
import { requireString } from "./args.ts";
import { defaultConfig } from "../controller/config.ts";
import { openControllerContext, type ControllerContext } from "../controller/context.ts";

export const dataDirOption: Record<string, OptionSpec> = {
  "data-dir": { kind: "string", arg: "DIR", help: "the controller's data directory (on the controller host)", env: "TETHER_DATA_DIR" },
};
export const jsonOption: Record<string, OptionSpec> = {
  json: { kind: "boolean", help: "print machine-readable JSON to stdout" },
};

/** Opens an existing controller's state (never creates one) for a CLI command. */
export async function withDataDir<T>(args: ParsedArgs, fn: (ctx: ControllerContext) => Promise<T>): Promise<T> {
  const dataDir = resolve(requireString(args, "data-dir"));
  const ctx = await openControllerContext(defaultConfig(dataDir), { create: false, actor: `cli:${process.env.USER ?? "unknown"}` });
  try {
    return await fn(ctx);
  } finally {
    await ctx.close();
  }
}

/** A fixed-width table for humans (stderr-free: it is the command's output). */
export function table(rows: Record<string, unknown>[], columns: string[]): string {
  const cell = (v: unknown) => (v === null || v === undefined ? "-" : oneLine(typeof v === "object" ? JSON.stringify(v) : String(v)));
  const widths = columns.map((c) => Math.max(c.length, ...rows.map((r) => cell(r[c]).length)));
  const line = (vals: string[]) => vals.map((v, i) => v.padEnd(widths[i]!)).join("  ").trimEnd();
  return [line(columns.map((c) => c.toUpperCase())), ...rows.map((r) => line(columns.map((c) => cell(r[c]))))].join("\n") + "\n";
}
