/**
 * The built-in `command` task kind (PROTOCOL §6): its payload, checked by one function
 * on both sides — by the controller when the task is submitted (so a malformed task
 * fails at once, with a 400) and by the executor before it runs anything (the payload
 * is untrusted input there).
 */
import { isAbsolute } from "node:path";

export const COMMAND_KIND = "command";
export const MAX_ARGV_ITEMS = 1024;
export const MAX_ARG_CHARS = 65536;

/** Environment variables a task may never set: dynamic-loader injection would run code inside any allowed program. */
const FORBIDDEN_ENV = /^(LD_|DYLD_)/i;
const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

/**
 * Why `name` can never be a task's environment variable, or undefined. Shape only:
 * which names an executor actually sets is its own `--allow-env` policy (the handler).
 */
export function envNameProblem(name: string): string | undefined {
  if (!ENV_NAME.test(name)) return `"${name.slice(0, 64)}" is not a valid variable name`;
  if (FORBIDDEN_ENV.test(name)) return `${name} may not be set by a task (dynamic-loader variables are refused)`;
  return undefined;
}

export interface CommandPayload {
  argv: string[];
  timeoutS?: number;
  env?: Record<string, string>;
  cwd?: string;
}

/** The payload as a CommandPayload, or the reason it is not one. */
export function parseCommandPayload(payload: unknown): CommandPayload | string {
  if (payload === null || typeof payload !== "object" || Array.isArray(payload)) return "the payload must be an object";
  const p = payload as Record<string, unknown>;
  const argv = p.argv;
  if (!Array.isArray(argv) || argv.length === 0) return "argv must be a non-empty array of strings";
  if (!argv.every((a): a is string => typeof a === "string")) return "argv must be a non-empty array of strings";
  if (argv.length > MAX_ARGV_ITEMS) return `argv has more than ${MAX_ARGV_ITEMS} items`;
  if (argv.some((a) => a.length > MAX_ARG_CHARS)) return `an argv item is longer than ${MAX_ARG_CHARS} characters`;
  if (argv[0] === "") return "argv[0] is empty";
  if (argv.some((a) => a.includes("\0"))) return "argv contains a NUL byte";
  const out: CommandPayload = { argv: [...argv] };
  if (p.timeout_s !== undefined && p.timeout_s !== null) {
    if (typeof p.timeout_s !== "number" || !Number.isFinite(p.timeout_s) || p.timeout_s <= 0) return "timeout_s must be a positive number of seconds";
    out.timeoutS = p.timeout_s;
  }
  if (p.env !== undefined && p.env !== null) {
    if (typeof p.env !== "object" || Array.isArray(p.env)) return "env must be an object of strings";
    const env: Record<string, string> = {};
    for (const [k, v] of Object.entries(p.env as Record<string, unknown>)) {
      const problem = envNameProblem(k);
      if (problem) return `env: ${problem}`;
      if (typeof v !== "string") return `env: ${k} must be a string`;
      if (v.includes("\0")) return `env: ${k} contains a NUL byte`;
      env[k] = v;
    }
    out.env = env;
  }
  if (p.cwd !== undefined && p.cwd !== null) {
    if (typeof p.cwd !== "string" || !isAbsolute(p.cwd) || p.cwd.includes("\0")) return "cwd must be an absolute path";
    out.cwd = p.cwd;
  }
  return out;
}
