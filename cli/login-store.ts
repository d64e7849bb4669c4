/**
 * The saved login of `tether login`: `{url, token, ca_file}` in `login.json` under
 * the user's config dir — `$TETHER_CONFIG_DIR`, else `$XDG_CONFIG_HOME/tether`, else
 * `~/.config/tether`. The directory is 0700, the file 0600 and written atomically,
 * and a file readable by group or others is refused, like ssh does.
 */
import { readFileSync, statSync, unlinkSync } from "node:fs";
import { homedir } from "node:os";
import { dirname, isAbsolute, join } from "node:path";
import { ensurePrivateDir, writeFileAtomic } from "../shared/secure-fs.ts";

export const LOGIN_FILE = "login.json";

export interface SavedLogin {
  url: string;
  token: string;
  ca_file: string | null;
  /** For humans reading the file: who the token is and when it was saved. */
  token_id?: string;
  name?: string;
  role?: string;
  saved_at?: string;
}

export function configDir(env: NodeJS.ProcessEnv = process.env): string {
  if (env.TETHER_CONFIG_DIR) return env.TETHER_CONFIG_DIR;
  if (env.XDG_CONFIG_HOME && isAbsolute(env.XDG_CONFIG_HOME)) return join(env.XDG_CONFIG_HOME, "tether");
  return join(homedir(), ".config", "tether");
}

export function loginPath(env: NodeJS.ProcessEnv = process.env): string {
  return join(configDir(env), LOGIN_FILE);
}

export function sameUrl(a: string, b: string): boolean {
  return a.replace(/\/+$/, "") === b.replace(/\/+$/, "");
}

/** The saved login, or undefined when there is none. A broken or exposed file is an error, not "no login". */
export function readLogin(path = loginPath()): SavedLogin | undefined {
  let text: string;
  try {
    const mode = statSync(path).mode & 0o777;
    if (mode & 0o077) throw new Error(`${path} is readable by group or others (mode ${mode.toString(8)}); run: chmod 600 ${path}`);
    text = readFileSync(path, "utf8");
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw e;
  }
  let v: Partial<SavedLogin>;
  try {
    v = JSON.parse(text);
  } catch {
    throw new Error(`${path} is not valid JSON; run tether login again`);
  }
  if (typeof v?.url !== "string" || typeof v.token !== "string") throw new Error(`${path} lacks url or token; run tether login again`);
  return { ...v, url: v.url, token: v.token, ca_file: typeof v.ca_file === "string" ? v.ca_file : null };
}

export function saveLogin(login: SavedLogin, path = loginPath()): void {
  ensurePrivateDir(dirname(path));
  writeFileAtomic(path, JSON.stringify(login, null, 2) + "\n", 0o600);
}

/** true when a saved login was removed. */
export function removeLogin(path = loginPath()): boolean {
  try {
    unlinkSync(path);
    return true;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT") return false;
    throw e;
  }
}
