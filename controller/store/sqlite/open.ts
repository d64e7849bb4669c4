/**
 * Opens the embedded SQLite store in a controller's data dir. The database files hold
 * task payloads and encrypted keys: they are created 0600 (SQLite gives the -wal and
 * -shm files the mode of the database file), and older ones are brought to 0600.
 */
import { chmodSync, closeSync, existsSync, openSync } from "node:fs";
import { join } from "node:path";
import { ensurePrivateDir } from "../../../shared/secure-fs.ts";
import { KeyEncryptor } from "../key-encryption.ts";
import type { StoreBackground, StoreConfig, StoreHandle } from "../open-store.ts";
import { failClosed } from "../unavailable.ts";
import { isSqliteOutage } from "./outage.ts";
import { DB_FILE, DEFAULT_BUSY_TIMEOUT_MS, SqliteStore } from "./sqlite-store.ts";
import { SqliteTaskStore } from "./sqlite-task-store.ts";
import { SqliteCaStore } from "./ca-store.ts";
import { SqliteJwtKeyStore } from "./jwt-key-store.ts";
import { BACKSTOP_AUTOCHECKPOINT_PAGES, WalCheckpointer } from "./wal-checkpointer.ts";
import { DataVersionFeed } from "./data-version-feed.ts";

/** The database and the files SQLite keeps beside it. */
export const DB_FILES = [DB_FILE, `${DB_FILE}-wal`, `${DB_FILE}-shm`];

function restrictDatabaseFiles(dataDir: string): void {
  closeSync(openSync(join(dataDir, DB_FILE), "a", 0o600));
  for (const f of DB_FILES) {
    const path = join(dataDir, f);
    if (existsSync(path)) chmodSync(path, 0o600);
  }
}

export async function openSqliteStore(
  config: Pick<StoreConfig, "dataDir" | "create" | "busyTimeoutMs" | "background">,
): Promise<Omit<StoreHandle, "duties">> {
  const path = join(config.dataDir, DB_FILE);
  if (!config.create && !existsSync(path)) {
    throw new Error(`no controller state in ${config.dataDir} (start the controller there first, or pass the right --data-dir)`);
  }
  ensurePrivateDir(config.dataDir);
  restrictDatabaseFiles(config.dataDir);
  const busyTimeoutMs = config.busyTimeoutMs ?? DEFAULT_BUSY_TIMEOUT_MS;
  const keys = KeyEncryptor.loadOrCreate(config.dataDir);
  const sqlite = new SqliteStore(path, keys, busyTimeoutMs);
  const background: StoreBackground | undefined = config.background;
  const report = background?.onOutage;
  const count = background?.onStoreError;
  const store = failClosed(sqlite, isSqliteOutage, report, count);
  const tasks = failClosed(new SqliteTaskStore(sqlite.db), isSqliteOutage, report, count);
  const cas = failClosed(new SqliteCaStore(sqlite.db, keys), isSqliteOutage, report, count);
  const jwtKeys = failClosed(new SqliteJwtKeyStore(sqlite.db, keys), isSqliteOutage, report, count);
  let checkpointer: WalCheckpointer | undefined;
  if (background) {
    // WAL checkpoints (with their fsync) move off the event loop; see wal-checkpointer.ts.
    sqlite.db.pragma(`wal_autocheckpoint = ${BACKSTOP_AUTOCHECKPOINT_PAGES}`);
    checkpointer = new WalCheckpointer(path, {
      intervalMs: background.checkpointIntervalMs, truncateWhenIdleMs: background.truncateWhenIdleMs, busyTimeoutMs,
    }, background.onError);
  }
  return {
    store,
    tasks,
    cas,
    jwtKeys,
    // Other processes' commits (the CLI on --data-dir) show up here (data-version-feed.ts).
    changes: new DataVersionFeed(sqlite.db),
    async close() {
      await checkpointer?.stop();
      await sqlite.close();
    },
  };
}
