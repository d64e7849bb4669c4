/**
 * The store the benchmarked controller runs on (`--store`): the embedded SQLite database
 * in its data dir (the default), or a PostgreSQL server (PROTOCOL §8). With PostgreSQL
 * the run gets a database of its own on that server (CREATE DATABASE tether_bench_<random>,
 * dropped at the end unless --keep; the URL's own database is only used to connect for
 * that) and a key-encryption key in the run's temp dir, and every controller process and
 * operator command of the run is pointed at both.
 */
import { randomBytes } from "node:crypto";
import { spawnSync } from "node:child_process";
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import pg from "pg";
import { isolatedEnv, TETHER_BIN } from "../tools/controller-process.ts";
import { redactStoreUrl, storeKindOf, withDatabase, type StoreKind } from "../controller/store/store-url.ts";

export interface BenchStore {
  kind: StoreKind;
  /** For logs: the run's database with any password hidden ("sqlite" for the embedded store). */
  label: string;
  /** `controller start` options besides --data-dir (every replica gets the same). */
  controllerArgs: string[];
  /** Where operator commands (`tether token create`, `admin bootstrap`) act. */
  cliArgs: string[];
  /** Drops the run's database (PostgreSQL, unless kept). */
  close(keep: boolean): Promise<void>;
}


async function onServer<T>(url: string, fn: (c: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 5_000 });
  client.on("error", () => undefined); // a dropped connection must not crash the harness
  await client.connect();
  try {
    return await fn(client);
  } finally {
    await client.end().catch(() => undefined);
  }
}

/**
 * `dataDir` is the first controller's data dir (the embedded store lives there);
 * `root` is the run's temp dir (the KEK file and the operator commands' own dir go there).
 */
export async function openBenchStore(url: string, root: string, dataDir: string): Promise<BenchStore> {
  if (storeKindOf(url) !== "postgres") {
    return { kind: "sqlite", label: "sqlite", controllerArgs: [], cliArgs: ["--data-dir", dataDir], close: async () => undefined };
  }
  const name = `tether_bench_${randomBytes(6).toString("hex")}`;
  try {
    await onServer(url, (c) => c.query(`CREATE DATABASE "${name}"`));
  } catch (e) {
    throw new Error(`cannot create a database on ${redactStoreUrl(url)}: ${(e as Error).message}`);
  }
  const dbUrl = withDatabase(url, name);
  // The replicas' shared KEK (PROTOCOL §8: 32 random bytes, base64, 0600 in a 0700 dir).
  const kekDir = join(root, "kek");
  mkdirSync(kekDir, { recursive: true, mode: 0o700 });
  const kekFile = join(kekDir, "tether.kek");
  writeFileSync(kekFile, randomBytes(32).toString("base64") + "\n", { mode: 0o600, flag: "wx" });
  const storeArgs = ["--store", dbUrl, "--kek-file", kekFile];
  let dropped = false;
  return {
    kind: "postgres",
    label: redactStoreUrl(dbUrl),
    controllerArgs: storeArgs,
    // Operator commands on a shared store keep their own files (audit log, ca.pem copy) in a
    // --data-dir of their own: here, not in a controller's data dir and not in ~/.local/state.
    cliArgs: [...storeArgs, "--data-dir", join(root, "cli")],
    async close(keep: boolean) {
      if (dropped) return;
      dropped = true;
      if (keep) return;
      // FORCE: a controller that did not stop in time must not keep the database alive.
      await onServer(url, (c) => c.query(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`));
    },
  };
}

/** Runs a `tether` operator command against the run's store; its stdout, trimmed. */
export function tetherCli(store: BenchStore, args: string[]): string {
  const r = spawnSync(process.execPath, [TETHER_BIN, ...args, ...store.cliArgs], { encoding: "utf8", timeout: 60_000, env: isolatedEnv() });
  if (r.status !== 0) throw new Error(`tether ${args.join(" ")} failed (exit ${r.status}): ${r.stderr}`);
  return r.stdout.trim();
}

let admin: string | undefined;
/**
 * The run's admin API token (`tether admin bootstrap`, as an operator on the controller
 * host would), made once: bootstrap refuses while an active admin token exists.
 */
export function adminToken(store: BenchStore): string {
  admin ??= tetherCli(store, ["admin", "bootstrap"]);
  return admin;
}
