/**
 * The one way to open the controller's state. The caller gets the store interfaces
 * and a close; which backend serves them is this file's business alone.
 */
import { mkdirSync } from "node:fs";
import { dirname } from "node:path";
import { ExecutorCache, type ExecutorCacheOptions } from "./executor-cache.ts";
import { openSqliteStore } from "./sqlite/open.ts";
import { openPostgresStore } from "./postgres/open.ts";
import { redactStoreUrl, storeKindOf } from "./store-url.ts";
import { AdvisoryDutyLocks } from "./postgres/duty-locks.ts";
import { KeyEncryptor } from "./key-encryption.ts";
import { fileExists } from "../../shared/secure-fs.ts";
import { SoleProcessDuties, type ChangeFeed, type Duty, type DutyLocks } from "./changes.ts";
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
  /** Every store operation that failed for an outage (the metrics count them). */
  onStoreError?: () => void;
  /** This replica gained or lost duties (PostgreSQL). */
  onDuties?: (held: Duty[], reason: string) => void;
  /** How often a replica tries for duties another one held (PostgreSQL; default 5 s). */
  dutyRetryMs?: number;
  /** Plain last-seen refreshes are written this late at most (last-seen-coalescer.ts); 0 or absent: at once. */
  deferLastSeenMs?: number;
}

export interface StoreConfig {
  /** The controller's data dir: the SQLite database and its key-encryption key (or, with `url`, this replica's own files). */
  dataDir: string;
  /** A shared database instead of the embedded one (`postgres://…`, PROTOCOL §8). */
  url?: string;
  /** The key-encryption key shared by the replicas of `url` (PROTOCOL §8). */
  kekFile?: string;
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
  /** Changes made by other replicas (PostgreSQL); nothing arrives on the embedded store. */
  changes: ChangeFeed;
  /** Which run-once duties this process holds. */
  duties: DutyLocks;
  /** Stops the background duties, then closes the store. */
  close(): Promise<void>;
}

export async function openStore(config: StoreConfig): Promise<StoreHandle> {
  const kind = storeKindOf(config.url);
  if (kind === undefined) {
    throw new Error(`unsupported store ${JSON.stringify(redactStoreUrl(config.url!))}: use sqlite (the default) or postgres://USER@HOST:PORT/DB`);
  }
  if (kind === "postgres") return openShared(config.url!, config);
  const backend = await openSqliteStore(config);
  return {
    ...backend,
    // Another process's commit moves PRAGMA data_version: checked before every answer from the cache.
    store: new ExecutorCache(backend.store, backend.changes, cacheOptions(config.background)),
    duties: new SoleProcessDuties(),
  };
}

/** Only a running controller defers heartbeat refreshes; a CLI command writes what it writes at once. */
function cacheOptions(background: StoreBackground | undefined): ExecutorCacheOptions {
  return {
    deferLastSeenMs: background?.deferLastSeenMs,
    onDeferredWriteError: background && ((e) => background.onError(`deferred heartbeat writes failed (retried): ${(e as Error)?.message ?? e}`)),
  };
}

/** A process that runs no duties (a CLI command on a shared store). */
const noDuties: DutyLocks = { holds: () => false, held: () => [], close: async () => undefined };

async function openShared(url: string, config: StoreConfig): Promise<StoreHandle> {
  const kekFile = config.kekFile;
  if (!kekFile) throw new Error("--kek-file is required with a postgres:// store: the replicas' shared key-encryption key (32 random bytes, 0600)");
  const kekExists = fileExists(kekFile);
  if (!kekExists && !config.create) throw new Error(`no key-encryption key at ${kekFile} (pass the --kek-file the replicas use)`);
  const keys = kekExists ? KeyEncryptor.fromFile(kekFile) : KeyEncryptor.generate();
  const background = config.background;
  const backend = await openPostgresStore({ url, keys, create: config.create, onOutage: background?.onOutage, onStoreError: background?.onStoreError, listen: background !== undefined });
  let duties: DutyLocks = noDuties;
  try {
    await checkKek(backend.cas, backend.jwtKeys, kekFile, kekExists);
    if (!kekExists) {
      // An empty database: this replica bootstraps it, under this new KEK.
      mkdirSync(dirname(kekFile), { recursive: true, mode: 0o700 });
      keys.writeTo(kekFile);
    }
    if (background) {
      const locks = new AdvisoryDutyLocks(url, { retryMs: background.dutyRetryMs, onChange: background.onDuties });
      await locks.start();
      duties = locks;
    }
  } catch (e) {
    await backend.close();
    throw e;
  }
  return {
    // Every writer to the shared store notifies: the auth state may be cached too (evicted within ms).
    store: new ExecutorCache(backend.store, backend.changes, cacheOptions(config.background)),
    tasks: backend.tasks,
    cas: backend.cas,
    jwtKeys: backend.jwtKeys,
    changes: backend.changes,
    duties,
    async close() {
      await duties.close();
      await backend.close();
    },
  };
}

/**
 * Opens one stored private key of each kind with the KEK: a wrong KEK is a start-up
 * error naming the file, never a second CA. Without a KEK file the database must be
 * empty (this process then creates the file); one that holds keys is refused.
 */
async function checkKek(cas: CaStore, jwtKeys: JwtKeyStore, kekFile: string, kekExists: boolean): Promise<void> {
  const bundle = await cas.trustBundle();
  const ring = await jwtKeys.jwtKeys();
  if (!kekExists && (bundle.cas.length > 0 || ring.length > 0)) {
    throw new Error(`no key-encryption key at ${kekFile}, but the database already holds keys: copy the KEK file the other replicas use (a new one could not open them)`);
  }
  try {
    if (bundle.cas[0]) await cas.caPrivateKey(bundle.cas[0].id);
    if (ring[0]) await jwtKeys.jwtPrivateKey(ring[0].kid);
  } catch (e) {
    throw new Error(`the key-encryption key in ${kekFile} cannot open the keys stored in the database (wrong --kek-file?): ${(e as Error).message}`);
  }
}

