/**
 * The executor's own policy for `command` tasks: which programs (`--allow-command`)
 * and which environment variables (`--allow-env`) a task may use, and the fixed
 * environment every command starts from. The payload's shape is checked elsewhere
 * (shared/task-kinds/command.ts); this is what one executor permits.
 * Decisions: docs/handlers.md.
 */
import { userInfo } from "node:os";
import { basename, delimiter, isAbsolute } from "node:path";

/** The child's PATH when the daemon has none (the usual system directories). */
export const DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
export const DEFAULT_LANG = "C.UTF-8";

/** Why an `--allow-command` value is unusable, or undefined when it is fine. */
export function allowedNameProblem(name: string): string | undefined {
  if (name.length === 0) return "an empty name";
  if (name.includes("\0")) return "a name with a NUL byte";
  if (name.includes("/") && !isAbsolute(name)) return `"${name}" is a relative path: give a bare command name (looked up in PATH) or an absolute path`;
  return undefined;
}

/** Programs that run whatever their arguments say: allowing one allows every command. */
const RUNS_ANYTHING = new Set([
  "sh", "bash", "dash", "zsh", "ksh", "mksh", "ash", "fish", "csh", "tcsh", "pwsh", "busybox",
  "env", "xargs", "sudo", "su", "doas", "nohup", "timeout", "nice", "ionice", "setsid", "stdbuf", "chroot", "nsenter", "unshare", "flock", "strace", "gdb", "script", "expect", "watch",
  "node", "npx", "npm", "pnpm", "yarn", "bun", "deno", "tsx", "ts-node",
  "python", "pypy", "perl", "ruby", "irb", "php", "lua", "luajit", "tclsh", "wish", "awk", "gawk", "mawk", "nawk", "find",
]);

/** Whether an `--allow-command` value names such a program: by bare name, versioned name (`python3.11`) or absolute path. */
export function runsAnything(allowed: string): boolean {
  const name = basename(allowed);
  return RUNS_ANYTHING.has(name) || RUNS_ANYTHING.has(name.replace(/[\d.]+$/, ""));
}

/**
 * Variables that make a program load or run code of the task's choosing (shell start-up
 * files, interpreter options and module paths, the search path itself). Allowing one
 * with --allow-env is allowed, but it widens every --allow-command, so the daemon says so.
 */
const LOADS_CODE = new Set([
  "PATH", "BASH_ENV", "ENV", "SHELLOPTS", "BASHOPTS", "PROMPT_COMMAND", "PS4", "IFS",
  "NODE_OPTIONS", "NODE_PATH", "PERL5OPT", "PERL5LIB", "PERLLIB", "PERL5DB", "PYTHONPATH", "PYTHONSTARTUP", "PYTHONHOME",
  "PYTHONINSPECT", "RUBYOPT", "RUBYLIB", "JAVA_TOOL_OPTIONS", "_JAVA_OPTIONS", "JDK_JAVA_OPTIONS", "CLASSPATH",
  "GIT_SSH", "GIT_SSH_COMMAND", "GIT_EXEC_PATH", "GIT_CONFIG_GLOBAL", "GCONV_PATH", "LOCPATH", "TCLLIBPATH", "LUA_INIT", "LUA_PATH",
]);

/** Whether an `--allow-env` name is one of those. */
export function loadsCode(envName: string): boolean {
  return LOADS_CODE.has(envName) || LOADS_CODE.has(envName.toUpperCase());
}

/** The absolute entries of a PATH value: empty and relative ones would search the current directory. */
export function absoluteEntries(path: string | undefined): string[] {
  return (path ?? "").split(delimiter).filter((d) => d !== "" && isAbsolute(d));
}

function userHome(daemonEnv: NodeJS.ProcessEnv): string {
  try {
    return userInfo().homedir || "/";
  } catch {
    return daemonEnv.HOME || "/"; // no passwd entry for this uid (some containers)
  }
}

export interface BaseEnv {
  PATH: string;
  HOME: string;
  LANG: string;
}

/**
 * What every command starts from — never the daemon's own environment, which holds
 * its settings and whatever its service manager put there:
 * - PATH: the daemon's (absolute entries only), the one bare commands are looked up
 *   in, so the program found and what it runs look in the same places; DEFAULT_PATH if unset;
 * - HOME: the daemon user's home directory from the user database;
 * - LANG: the daemon's, or C.UTF-8.
 */
export function minimalEnv(daemonEnv: NodeJS.ProcessEnv = process.env): BaseEnv {
  return { PATH: absoluteEntries(daemonEnv.PATH).join(delimiter) || DEFAULT_PATH, HOME: userHome(daemonEnv), LANG: daemonEnv.LANG || DEFAULT_LANG };
}

/** The error for a task whose env names variables `allowEnv` does not hold, or undefined. */
export function refusedEnvError(env: Readonly<Record<string, string>> | undefined, allowEnv: ReadonlySet<string>): { error: string; names: string[] } | undefined {
  const names = Object.keys(env ?? {}).filter((k) => !allowEnv.has(k));
  if (names.length === 0) return undefined;
  const shown = names.slice(0, 5).map((n) => `"${n.slice(0, 64)}"`).join(", ") + (names.length > 5 ? `, … (${names.length} in all)` : "");
  const list = allowEnv.size ? [...allowEnv].join(", ") : "none";
  return { error: `env ${shown} ${names.length === 1 ? "is" : "are"} not allowed on this executor (--allow-env: ${list})`, names };
}
