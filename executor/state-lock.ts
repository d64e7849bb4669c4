/**
 * One daemon per state dir. Two daemons sharing an identity would re-register
 * each other out of their epochs in a loop, so the second one refuses to start.
 *
 * The lock is a POSIX record lock the kernel drops when its holder exits, however it
 * exits (kill -9, a crash) and whether or not its zombie is reaped yet; no pid is
 * trusted, so a reused pid cannot block a restart and there is no "stale lock" to
 * take over (the file is never unlinked). Node has no flock/fcntl, so the lock is
 * taken through better-sqlite3, already a dependency: `<state-dir>/executor.lock` is
 * an (empty) SQLite database held in an open `BEGIN EXCLUSIVE` transaction for the
 * daemon's life. SQLite also coordinates connections within one process, where POSIX
 * locks alone would not. Unlike an abstract Unix socket it works on any POSIX system
 * and across network namespaces (containers sharing a volume).
 * Rejected: `locking_mode = EXCLUSIVE` with `busy_timeout = 0` — a loser keeps its
 * SHARED lock in that mode, and two daemons starting at once could both refuse.
 */
import Database from "better-sqlite3";
import { chmodSync, closeSync, ftruncateSync, openSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";

export const LOCK_FILE = "executor.lock";
/**
 * How long a start waits for the lock. Not for a running daemon (it never lets go):
 * two starts at the same instant can each see the other's brief SHARED lock, and
 * the wait lets exactly one of them through.
 */
const LOCK_WAIT_MS = 250;

export class StateLockError extends Error {}

export interface StateLock {
  release(): void;
}

/** Connections holding a lock: referenced here so garbage collection never closes one. */
const held = new Set<Database.Database>();

const sqliteCode = (e: unknown): string | undefined => (e instanceof Database.SqliteError ? e.code : undefined);

function tryLock(path: string): Database.Database {
  const db = new Database(path, { timeout: LOCK_WAIT_MS });
  try {
    db.pragma("journal_mode = MEMORY"); // no -journal file next to it
    db.exec("BEGIN EXCLUSIVE");
    return db;
  } catch (e) {
    db.close();
    throw e;
  }
}

/**
 * Takes the state-dir lock (the dir must exist) or throws StateLockError naming the
 * dir. Nothing else in this process may open the lock file: closing any descriptor
 * of it would drop the process's POSIX locks on it.
 */
export function acquireStateLock(dir: string): StateLock {
  const path = join(dir, LOCK_FILE);
  let db: Database.Database;
  try {
    try {
      db = tryLock(path);
    } catch (e) {
      if (sqliteCode(e) !== "SQLITE_NOTADB") throw e;
      // A pid file left by an older version (no daemon of this version holds it): empty it, keeping the inode.
      const fd = openSync(path, "r+");
      try {
        ftruncateSync(fd, 0);
      } finally {
        closeSync(fd);
      }
      db = tryLock(path);
    }
  } catch (e) {
    if (sqliteCode(e) === "SQLITE_BUSY") {
      const pid = lockHolder(path);
      throw new StateLockError(`another executor is using ${dir}; stop it first (${pid ? `pid ${pid} holds` : "lock file"} ${path})`);
    }
    throw new StateLockError(`could not lock ${dir} (${path}): ${(e as Error).message}`);
  }
  held.add(db);
  try {
    chmodSync(path, 0o600);
  } catch {
    /* cosmetic: the file holds nothing */
  }
  return {
    release() {
      if (!held.delete(db)) return;
      db.close(); // ends the transaction and drops the lock; the file stays (unlinking it would race with the next start)
    },
  };
}

/** Linux's encoding of st_dev (glibc's major()/minor()). */
function majorMinor(dev: bigint): string {
  const major = ((dev >> 8n) & 0xfffn) | ((dev >> 32n) & ~0xfffn);
  const minor = (dev & 0xffn) | ((dev >> 12n) & ~0xffn);
  return `${major.toString(16).padStart(2, "0")}:${minor.toString(16).padStart(2, "0")}`;
}

/**
 * The pid holding the lock on `path`, as the kernel reports it (/proc/locks, Linux),
 * or undefined when nobody holds it or it cannot be told. Reads only: it never takes
 * or disturbs the lock, so `tether executor status` can use it while a daemon runs.
 */
export function lockHolder(path: string): number | undefined {
  let st: { dev: bigint; ino: bigint };
  let table: string;
  try {
    st = statSync(path, { bigint: true });
    table = readFileSync("/proc/locks", "utf8");
  } catch {
    return undefined;
  }
  const file = `${majorMinor(st.dev)}:${st.ino}`;
  for (const line of table.split("\n")) {
    // "1: POSIX  ADVISORY  WRITE 4242 fe:00:2157316 1073741824 1073742335" ("->" marks a waiter)
    const m = /^\d+:\s+(\S+)\s+\S+\s+(?:READ|WRITE)\s+(\d+)\s+(\S+)\s/.exec(line);
    if (m && m[1] !== "->" && m[3] === file && Number(m[2]) > 0) return Number(m[2]);
  }
  return undefined;
}
