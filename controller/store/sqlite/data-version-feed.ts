/**
 * The embedded store's change feed: SQLite's `PRAGMA data_version` changes whenever
 * another connection — the CLI revoking on `--data-dir`, a second process — committed
 * since this connection last asked. It says nothing about *what* changed, so a change
 * resyncs (every cache drops everything); writes through this process's own connection
 * do not move it and reach the caches as evictions (executor-cache.ts).
 *
 * `live()` asks on every call: a cache consults it before each answer from memory, so
 * a revocation committed by another process counts at the next request, exactly as a
 * read of the row would. A pragma that fails (the file is gone, the disk is broken)
 * makes the feed not live: the cache then reads the store, which fails closed (503).
 */
import type Database from "better-sqlite3";
import type { Change, ChangeFeed } from "../changes.ts";

export class DataVersionFeed implements ChangeFeed {
  private readonly version: Database.Statement<[], number>;
  private last: number;
  private readonly resync = new Set<() => void>();

  constructor(db: Database.Database) {
    this.version = db.prepare<[], number>("PRAGMA data_version").pluck();
    this.last = this.version.get()!;
  }

  live(): boolean {
    let now: number;
    try {
      now = this.version.get()!;
    } catch {
      return false;
    }
    if (now !== this.last) {
      this.last = now;
      for (const fn of this.resync) fn();
    }
    return true;
  }

  /** Nothing arrives item by item: another process's commit shows up as a resync. */
  subscribe(_fn: (c: Change) => void): () => void {
    return () => undefined;
  }

  onResync(fn: () => void): () => void {
    this.resync.add(fn);
    return () => this.resync.delete(fn);
  }

  async close(): Promise<void> {
    this.resync.clear();
  }
}
