/**
 * `tether controller migrate --store postgres://…`: applies the shared store's schema
 * migrations explicitly, before replicas of a new version start (start-up also applies
 * them, under the same lock, so this is for operators who want it as its own step).
 */
import { UsageError } from "./args.ts";
import { info, out, type Command } from "./command.ts";
import { jsonOption } from "./data-dir.ts";
import { migratePostgres } from "../controller/store/postgres/migrations.ts";
import { redactStoreUrl, storeKindOf } from "../controller/store/store-url.ts";
import { createPostgresPool } from "../controller/store/postgres/pool.ts";

export const controllerMigrate: Command = {
  spec: {
    name: "controller migrate",
    usage: "controller migrate --store postgres://USER@HOST:PORT/DB [--json]",
    summary:
      "Applies the PostgreSQL store's schema migrations (once, whatever runs at the same time) and prints the versions applied. The embedded SQLite store migrates itself when opened.",
    options: {
      store: { kind: "string", arg: "URL", help: "the shared store: postgres://USER@HOST:PORT/DB", env: "TETHER_STORE" },
      ...jsonOption,
    },
  },
  async run(args) {
    const url = args.strings.store;
    if (!url || storeKindOf(url) !== "postgres") {
      throw new UsageError("--store postgres://USER@HOST:PORT/DB is required (the embedded SQLite store migrates itself when opened)");
    }
    const pool = createPostgresPool(url, { max: 1, applicationName: "tether-migrate" });
    try {
      const { applied } = await migratePostgres(pool);
      if (args.flags.json) out(JSON.stringify({ store: redactStoreUrl(url), applied }));
      else info(applied.length ? `applied migrations ${applied.join(", ")} to ${redactStoreUrl(url)}` : `${redactStoreUrl(url)} is up to date`);
      return 0;
    } catch (e) {
      throw new Error(`cannot migrate ${redactStoreUrl(url)}: ${(e as Error).message}`);
    } finally {
      await pool.end();
    }
  },
};
