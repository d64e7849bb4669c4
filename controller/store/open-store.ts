/**
 * The one way to open the controller's state. The caller gets the store interfaces
 * and a close; which backend serves them is this file's business alone.
 */
import { HmacKeyCache } from "./hmac-key-cache.ts";
import { openSqliteStore } from "./sqlite/open.ts";
import type { TaskStore } from "./task-types.ts";
import type { CaStore, JwtKeyStore } from "./trust-types.ts";
import type { Store } from "./types.ts";

/** How long an operation waits for another connection's lock before the store is unavailable (503). */
export { DEFAULT_BUSY_TIMEOUT_MS } from "./sqlite/sqlite-store.ts";

/** Work a long-running controller wants from its store, never a short CLI command. */
export interface StoreBackground {
  /** How often the WAL is checkpointed off the event loop (SQLite). */
  checkpointIntervalMs: number;
  /** After this long without writes the WAL is truncated to zero bytes (SQLite; default 30 s). */
  truncateWhenIdleMs?: number;
  onError: (message: string) => void;
  /** The store failed a request (it answered 503 UNAVAILABLE); reported at most every 10 s. */
  onOutage?: (message: string) => void;
}

export interface StoreConfig {
  /** The controller's data dir: holds the SQLite database and the key-encryption key. */
  dataDir: string;
  /** A shared database instead of the embedded one (`postgres://…`, PROTOCOL §8); not available yet. */
  url?: string;
  /** false: refuse when there is no state yet, and create nothing. */
  create: boolean;
  /** Default DEFAULT_BUSY_TIMEOUT_MS. */
  busyTimeoutMs?: number;
  /** Start the background duties (the running controller asks; the CLI does not). */
  background?: StoreBackground;
}

export interface StoreHandle {
  store: Store;
  tasks: TaskStore;
  /** The CA set (PROTOCOL §7.1). */
  cas: CaStore;
  /** The JWT key ring (PROTOCOL §7.3). */
  jwtKeys: JwtKeyStore;
  /** Stops the background duties, then closes the store. */
  close(): Promise<void>;
}

export async function openStore(config: StoreConfig): Promise<StoreHandle> {
  if (config.url !== undefined) throw new Error(`unsupported store ${JSON.stringify(redactUrl(config.url))}: only the embedded SQLite store exists yet`);
  const backend = await openSqliteStore(config);
  return { ...backend, store: new HmacKeyCache(backend.store) };
}

function redactUrl(url: string): string {
  return url.replace(/\/\/[^@/]*@/, "//…@");
}
