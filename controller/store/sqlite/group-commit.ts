/**
 * Group commit for the writes every heartbeat makes (its nonce, its last-seen time):
 * they are queued and run together in one transaction at the end of the current
 * event-loop turn, and each caller's promise settles only after that COMMIT — so a
 * nonce is durable before the request it belongs to is answered, exactly as with one
 * transaction per write, at a fraction of the cost under load (one WAL commit per
 * batch instead of per write). No transaction stays open between turns, so the other
 * store methods and other processes (the CLI) see no difference.
 */
import type Database from "better-sqlite3";

interface QueuedWrite {
  run: () => unknown;
  resolve: (value: unknown) => void;
  reject: (error: unknown) => void;
}

type Outcome = { ok: true; value: unknown } | { ok: false; error: unknown };

export class GroupCommit {
  private queue: QueuedWrite[] = [];
  private scheduled = false;

  constructor(private readonly db: Database.Database) {}

  write<T>(run: () => T): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      // The queue holds writes of several result types; each caller gets back what its own `run` returned.
      // (No wrapper closure: this runs twice per heartbeat.)
      this.queue.push({ run, resolve: resolve as (value: unknown) => void, reject });
      if (!this.scheduled) {
        this.scheduled = true;
        setImmediate(() => this.flush());
      }
    });
  }

  /** Commits what is queued now; also called before the connection closes. */
  flush(): void {
    this.scheduled = false;
    const batch = this.queue;
    if (batch.length === 0) return;
    this.queue = [];
    const results: Outcome[] = [];
    try {
      this.db.transaction(() => {
        for (const w of batch) {
          try {
            results.push({ ok: true, value: w.run() });
          } catch (error) {
            results.push({ ok: false, error }); // that statement alone is undone by SQLite
          }
        }
      }).immediate();
    } catch (e) {
      for (const w of batch) w.reject(e);
      return;
    }
    batch.forEach((w, i) => {
      const r = results[i];
      if (r?.ok) w.resolve(r.value);
      else w.reject(r?.error);
    });
  }
}
