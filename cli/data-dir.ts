/** Options and helpers shared by the commands that act on a controller's data dir. */
import { homedir } from "node:os";
import { join, resolve } from "node:path";
import { oneLine } from "./terminal.ts";
import type { OptionSpec, ParsedArgs } from "./args.ts";
import { UsageError } from "./args.ts";
import { storeKindOf } from "../controller/store/store-url.ts";
import { defaultConfig } from "../controller/config.ts";
import { openControllerContext, type ControllerContext } from "../controller/context.ts";

export const dataDirOption: Record<string, OptionSpec> = {
  "data-dir": { kind: "string", arg: "DIR", help: "the controller's data directory (on the controller host)", env: "TETHER_DATA_DIR" },
  store: {
    kind: "string", arg: "URL", env: "TETHER_STORE",
    help: "the controller's store: sqlite (in --data-dir, the default) or postgres://USER@HOST:PORT/DB shared by replicas",
  },
  "kek-file": { kind: "string", arg: "FILE", help: "the replicas' key-encryption key (required with a postgres:// --store)", env: "TETHER_KEK_FILE" },
};

/**
 * Where a command keeps its own files (the audit log of what it did, a copy of the trust
 * bundle) when it acts on a shared store without a --data-dir: the user's state dir.
 */
export function cliStateDir(): string {
  return join(process.env.XDG_STATE_HOME || join(homedir(), ".local", "state"), "tether", "cli");
}

/** The data dir, store URL and KEK file a command acts on; a usage error when they do not add up. */
export function storeTarget(args: ParsedArgs): { dataDir: string; storeUrl?: string; kekFile?: string } {
  const storeArg = args.strings.store;
  const storeUrl = storeArg && storeArg !== "sqlite" ? storeArg : undefined;
  const kekFile = args.strings["kek-file"] ? resolve(args.strings["kek-file"]) : undefined;
  const dataDirArg = args.strings["data-dir"];
  if (storeUrl) {
    if (storeKindOf(storeUrl) !== "postgres") throw new UsageError(`--store must be sqlite or postgres://…, got "${storeArg}"`);
    if (!kekFile) throw new UsageError("--kek-file is required with a postgres:// --store");
    return { dataDir: dataDirArg ? resolve(dataDirArg) : cliStateDir(), storeUrl, kekFile };
  }
  if (!dataDirArg) throw new UsageError("--data-dir is required (or --store postgres://… --kek-file FILE)");
  return { dataDir: resolve(dataDirArg) };
}
export const jsonOption: Record<string, OptionSpec> = {
  json: { kind: "boolean", help: "print machine-readable JSON to stdout" },
};

/** Opens an existing controller's state (never creates one) for a CLI command. */
export async function withDataDir<T>(args: ParsedArgs, fn: (ctx: ControllerContext) => Promise<T>): Promise<T> {
  const { dataDir, storeUrl, kekFile } = storeTarget(args);
  const ctx = await openControllerContext(defaultConfig(dataDir, { storeUrl, kekFile }), { create: false, actor: `cli:${process.env.USER ?? "unknown"}` });
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
