/**
 * A real PostgreSQL server for the shared-store tests (PROTOCOL §8).
 *
 *   import { describePostgres, freshDatabase } from "../support/postgres.ts";
 *   describePostgres("my suite", () => {
 *     let db: { url: string; drop(): Promise<void> };
 *     beforeAll(async () => { db = await freshDatabase(); });   // CREATE DATABASE tether_t_<random>
 *     afterAll(async () => { await db.drop(); });                // DROP DATABASE … WITH (FORCE)
 *   });
 *
 * The server is TETHER_TEST_POSTGRES_URL (default postgres://postgres@127.0.0.1:5432/postgres,
 * trust auth; `.ci/run` makes sure one answers and exports it). Where none answers, the
 * suites are skipped with one line saying so — never silently.
 */
import { randomBytes } from "node:crypto";
import pg from "pg";
import { describe } from "vitest";
import { redactStoreUrl, withDatabase } from "../../controller/store/store-url.ts";

export function postgresAdminUrl(): string {
  return process.env.TETHER_TEST_POSTGRES_URL || "postgres://postgres@127.0.0.1:5432/postgres";
}

/** A connection string for another database of the same server. */
export function databaseUrl(name: string, base = postgresAdminUrl()): string {
  return withDatabase(base, name);
}

let available: Promise<boolean> | undefined;

/** Whether the server answers a query within 2 s (asked once per test file). */
export function postgresAvailable(): Promise<boolean> {
  available ??= (async () => {
    const client = new pg.Client({ connectionString: postgresAdminUrl(), connectionTimeoutMillis: 2_000, query_timeout: 2_000 });
    client.on("error", () => undefined);
    try {
      await client.connect();
      await client.query("SELECT 1");
      return true;
    } catch {
      return false;
    } finally {
      await client.end().catch(() => undefined);
    }
  })();
  return available;
}

/** Runs `fn` on a short-lived connection to the admin database. */
export async function withAdmin<T>(fn: (c: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: postgresAdminUrl(), connectionTimeoutMillis: 5_000 });
  client.on("error", () => undefined);
  await client.connect();
  try {
    return await fn(client);
  } finally {
    await client.end().catch(() => undefined);
  }
}

/** A new empty database; `drop()` removes it, closing whatever is still connected to it. */
export async function freshDatabase(): Promise<{ name: string; url: string; drop(): Promise<void> }> {
  const name = `tether_t_${randomBytes(6).toString("hex")}`;
  await withAdmin((c) => c.query(`CREATE DATABASE "${name}"`));
  let dropped = false;
  return {
    name,
    url: databaseUrl(name),
    async drop() {
      if (dropped) return;
      dropped = true;
      await withAdmin((c) => c.query(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`));
    },
  };
}

const reachable = await postgresAvailable();
if (!reachable) console.log(`PostgreSQL not reachable at ${redactStoreUrl(postgresAdminUrl())}: skipping its tests`);

/** `describe` where a PostgreSQL server answers, `describe.skip` (with one line saying so) where none does. */
export const describePostgres = reachable ? describe : describe.skip;
