/**
 * Opens the PostgreSQL store (PROTOCOL §8): one pool shared by the four stores, the
 * schema migrated (under its advisory lock) when `create`, every store wrapped so that a
 * lost database answers 503 UNAVAILABLE, and the change feed when `listen`. The URL's
 * password never appears in an error message.
 */
import { redactStoreUrl } from "../store-url.ts";
import type pg from "pg";
import type { ChangeFeed } from "../changes.ts";
import type { KeyEncryptor } from "../key-encryption.ts";
import type { TaskStore } from "../task-types.ts";
import type { CaStore, JwtKeyStore } from "../trust-types.ts";
import type { Store } from "../types.ts";
import { failClosed } from "../unavailable.ts";
import { PostgresCaStore } from "./ca-store.ts";
import { NeverLiveChangeFeed, PostgresChangeFeed } from "./change-feed.ts";
import { LATEST_SCHEMA_VERSION, migratePostgres, schemaVersion, SchemaTooNewError } from "./migrations.ts";
import { isPostgresOutage } from "./outage.ts";
import { CONNECT_TIMEOUT_MS, createPostgresPool } from "./pool.ts";
import { PostgresJwtKeyStore } from "./jwt-key-store.ts";
import { PostgresStore } from "./postgres-store.ts";
import { PostgresTaskStore } from "./task-store.ts";

export interface PostgresStoreConfig {
  /** postgres://USER[:PASSWORD]@HOST[:PORT]/DB[?…] */
  url: string;
  /** The KEK every replica shares: CA, JWT and HMAC private keys are stored under it. */
  keys: KeyEncryptor;
  /** Apply pending migrations (under the migration lock); false: refuse a database without controller state. */
  create: boolean;
  /** The store failed a request (it answered 503 UNAVAILABLE); reported at most every 10 s. Also idle connections lost. */
  onOutage?: (message: string) => void;
  /** Every store operation that failed for an outage (the metrics count them). */
  onStoreError?: () => void;
  /** Listen for other replicas' changes (the running controller); else `changes` is never live. */
  listen?: boolean;
  /** Pool size (default 10). */
  poolMax?: number;
}

export interface PostgresStoreHandle {
  store: Store;
  tasks: TaskStore;
  cas: CaStore;
  jwtKeys: JwtKeyStore;
  changes: ChangeFeed;
  pool: pg.Pool;
  /** Stops the change feed, waits for batched writes, closes the pool. */
  close(): Promise<void>;
}

export async function openPostgresStore(config: PostgresStoreConfig): Promise<PostgresStoreHandle> {
  const where = redactStoreUrl(config.url);
  const pool = createPostgresPool(config.url, { max: config.poolMax, onIdleError: config.onOutage });
  try {
    await prepareSchema(pool, config.create, where);
  } catch (e) {
    await pool.end().catch(() => undefined);
    throw e;
  }
  const postgres = new PostgresStore(pool, config.keys);
  const report = config.onOutage;
  const count = config.onStoreError;
  const store = failClosed<Store>(postgres, isPostgresOutage, report, count);
  const tasks = failClosed<TaskStore>(new PostgresTaskStore(pool), isPostgresOutage, report, count);
  const cas = failClosed<CaStore>(new PostgresCaStore(pool, config.keys), isPostgresOutage, report, count);
  const jwtKeys = failClosed<JwtKeyStore>(new PostgresJwtKeyStore(pool, config.keys), isPostgresOutage, report, count);
  let changes: ChangeFeed;
  if (config.listen) {
    const feed = new PostgresChangeFeed({ url: config.url, onError: config.onOutage });
    // Start live when the database lets us; a feed still connecting only means reading the store per request.
    await feed.waitLive(CONNECT_TIMEOUT_MS);
    changes = feed;
  } else {
    changes = new NeverLiveChangeFeed();
  }
  let closing: Promise<void> | undefined;
  return {
    store,
    tasks,
    cas,
    jwtKeys,
    changes,
    pool,
    close() {
      closing ??= (async () => {
        await changes.close();
        await postgres.close();
      })();
      return closing;
    },
  };
}

async function prepareSchema(pool: pg.Pool, create: boolean, where: string): Promise<void> {
  try {
    if (create) {
      await migratePostgres(pool);
      return;
    }
    const version = await schemaVersion(pool);
    if (version === 0) throw new Error(`no controller state in ${where} (start a controller on it first, or run \`tether controller migrate\`)`);
    if (version > LATEST_SCHEMA_VERSION) throw new SchemaTooNewError(version, LATEST_SCHEMA_VERSION);
    if (version < LATEST_SCHEMA_VERSION) {
      throw new Error(`the schema in ${where} is at version ${version}, this tether needs ${LATEST_SCHEMA_VERSION}: run \`tether controller migrate\``);
    }
  } catch (e) {
    if (isPostgresOutage(e)) throw new Error(`cannot reach PostgreSQL at ${where}: ${(e as Error).message}`, { cause: e });
    throw e;
  }
}
