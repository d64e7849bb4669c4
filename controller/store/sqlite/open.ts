/** Opens the embedded SQLite store in a controller's data dir. */
import { existsSync } from "node:fs";
import { join } from "node:path";
import { ensurePrivateDir } from "../../../shared/secure-fs.ts";
import { KeyEncryptor } from "../key-encryption.ts";
import type { StoreBackground, StoreHandle } from "../open-store.ts";
import { DB_FILE, SqliteStore } from "./sqlite-store.ts";
import { SqliteTaskStore } from "./sqlite-task-store.ts";
import { BACKSTOP_AUTOCHECKPOINT_PAGES, WalCheckpointer } from "./wal-checkpointer.ts";

export async function openSqliteStore(config: { dataDir: string; create: boolean; background?: StoreBackground }): Promise<StoreHandle> {
  const path = join(config.dataDir, DB_FILE);
  if (!config.create && !existsSync(path)) {
    throw new Error(`no controller state in ${config.dataDir} (start the controller there first, or pass the right --data-dir)`);
  }
  ensurePrivateDir(config.dataDir);
  const store = new SqliteStore(path, KeyEncryptor.loadOrCreate(config.dataDir));
  const tasks = new SqliteTaskStore(store.db);
  let checkpointer: WalCheckpointer | undefined;
  if (config.background) {
    // WAL checkpoints (with their fsync) move off the event loop; see wal-checkpointer.ts.
    store.db.pragma(`wal_autocheckpoint = ${BACKSTOP_AUTOCHECKPOINT_PAGES}`);
    checkpointer = new WalCheckpointer(path, config.background.checkpointIntervalMs, config.background.onError);
  }
  return {
    store,
    tasks,
    async close() {
      await checkpointer?.stop();
      await store.close();
    },
  };
}
