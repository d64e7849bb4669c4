/**
 * A small, strict command-line parser: every command declares its options, and
 * anything undeclared is a one-line error instead of being silently ignored.
 */
import { parseDuration } from "../shared/duration.ts";

export type OptionKind = "string" | "boolean" | "list";

export interface OptionSpec {
  kind: OptionKind;
  help: string;
  /** Placeholder shown in help, e.g. DIR. */
  arg?: string;
  env?: string;
  default?: string;
}

export interface CommandSpec {
  /** e.g. "token create" */
  name: string;
  summary: string;
  usage?: string;
  options: Record<string, OptionSpec>;
  /** Positional arguments allowed (names, for help only). */
  positionals?: string[];
  /** Whether arguments after `--` are collected (e.g. task submit -- ARGV…). */
  passthrough?: boolean;
}

export interface ParsedArgs {
  strings: Record<string, string | undefined>;
  lists: Record<string, string[]>;
  flags: Record<string, boolean>;
  positionals: string[];
  rest: string[];
  help: boolean;
}

export class UsageError extends Error {}

export function parseArgs(spec: CommandSpec, argv: string[]): ParsedArgs {
  const out: ParsedArgs = { strings: {}, lists: {}, flags: {}, positionals: [], rest: [], help: false };
  for (const [name, o] of Object.entries(spec.options)) {
    if (o.kind === "list") out.lists[name] = [];
    if (o.kind === "boolean") out.flags[name] = false;
  }
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === "--") {
      if (!spec.passthrough) throw new UsageError(`unexpected "--" for "${spec.name}"`);
      out.rest = argv.slice(i + 1);
      break;
    }
    if (a === "--help" || a === "-h") {
      out.help = true;
      continue;
    }
    if (a.startsWith("--")) {
      const eq = a.indexOf("=");
      const name = eq === -1 ? a.slice(2) : a.slice(2, eq);
      const o = spec.options[name];
      if (!o) throw new UsageError(`unknown option --${name} for "${spec.name}" (see: tether ${spec.name} --help)`);
      if (o.kind === "boolean") {
        if (eq !== -1) throw new UsageError(`--${name} takes no value`);
        out.flags[name] = true;
        continue;
      }
      let value: string | undefined;
      if (eq !== -1) value = a.slice(eq + 1);
      else {
        value = argv[++i];
        if (value === undefined) throw new UsageError(`--${name} needs a value`);
      }
      if (o.kind === "list") out.lists[name]!.push(value);
      else out.strings[name] = value;
      continue;
    }
    out.positionals.push(a);
  }
  const maxPos = spec.positionals?.length ?? 0;
  if (!out.help && out.positionals.length > maxPos && !spec.positionals?.some((p) => p.endsWith("…"))) {
    throw new UsageError(`unexpected argument "${out.positionals[maxPos]}" for "${spec.name}"`);
  }
  for (const [name, o] of Object.entries(spec.options)) {
    if (o.kind !== "string" || out.strings[name] !== undefined) continue;
    if (o.env && process.env[o.env] !== undefined && process.env[o.env] !== "") out.strings[name] = process.env[o.env];
    else if (o.default !== undefined) out.strings[name] = o.default;
  }
  return out;
}

export function helpText(spec: CommandSpec): string {
  const lines = [`Usage: tether ${spec.usage ?? spec.name}`, "", spec.summary, ""];
  const entries = Object.entries(spec.options);
  if (entries.length) {
    lines.push("Options:");
    for (const [name, o] of entries) {
      const left = `  --${name}${o.kind === "boolean" ? "" : ` ${o.arg ?? "VALUE"}`}${o.kind === "list" ? " (repeatable)" : ""}`;
      const extra = [o.default !== undefined ? `default ${o.default}` : "", o.env ? `env ${o.env}` : ""].filter(Boolean).join("; ");
      lines.push(`${left.padEnd(34)} ${o.help}${extra ? ` (${extra})` : ""}`);
    }
  }
  lines.push(`  --help${" ".repeat(28)} show this help`);
  return lines.join("\n") + "\n";
}

/** `k=v` pairs (for --label / --selector) into an object; a bad pair is a usage error. */
export function parseKeyValues(pairs: string[], what: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const p of pairs) {
    const eq = p.indexOf("=");
    if (eq <= 0) throw new UsageError(`--${what} expects key=value, got "${p}"`);
    out[p.slice(0, eq)] = p.slice(eq + 1);
  }
  return out;
}

export function requireString(args: ParsedArgs, name: string): string {
  const v = args.strings[name];
  if (v === undefined || v === "") throw new UsageError(`--${name} is required`);
  return v;
}

/** The ID a command acts on (its first positional); a usage error naming where to find one. */
export function requireId(args: ParsedArgs, what: string, listCommand?: string): string {
  const id = args.positionals[0];
  if (!id) throw new UsageError(`the ${what} ID is required${listCommand ? ` (see: tether ${listCommand})` : ""}`);
  return id;
}

/** The value of an option the command cannot do without (one with a default is always set). */
export function required<T>(value: T | undefined, name: string): T {
  if (value === undefined) throw new UsageError(`--${name} is required`);
  return value;
}

/** A duration option (`90s`, `15m`, `24h`, `7d`) in seconds; undefined when not given. */
export function durationSeconds(args: ParsedArgs, name: string): number | undefined {
  const text = args.strings[name];
  if (text === undefined) return undefined;
  try {
    return parseDuration(text);
  } catch (e) {
    throw new UsageError(`--${name}: ${(e as Error).message}`);
  }
}

/** A whole-number option (digits only) from 1 to `max`; undefined when not given. */
export function wholeNumber(args: ParsedArgs, name: string, max?: number): number | undefined {
  const text = args.strings[name];
  if (text === undefined) return undefined;
  const n = Number(text);
  if (!/^\d+$/.test(text) || !Number.isSafeInteger(n) || n < 1 || (max !== undefined && n > max)) {
    throw new UsageError(`--${name} must be a whole number ${max === undefined ? "≥ 1" : `from 1 to ${max}`}`);
  }
  return n;
}
