/** Versioned schema migrations, applied in order, each in its own transaction. */
import type Database from "better-sqlite3";

export interface Migration {
  version: number;
  name: string;
  sql: string;
}

export const migrations: Migration[] = [
  {
    version: 1,
    name: "executors, enrollment tokens, replay store",
    sql: `
      CREATE TABLE enrollment_tokens (
        id          TEXT PRIMARY KEY,
        token_hash  TEXT NOT NULL UNIQUE,
        created_at  INTEGER NOT NULL,
        expires_at  INTEGER NOT NULL,
        max_uses    INTEGER NOT NULL,
        uses        INTEGER NOT NULL DEFAULT 0,
        revoked_at  INTEGER,
        labels      TEXT NOT NULL DEFAULT '{}'
      );
      CREATE TABLE executors (
        id                    TEXT PRIMARY KEY,
        name                  TEXT NOT NULL,
        labels                TEXT NOT NULL DEFAULT '{}',
        capacity              INTEGER NOT NULL,
        epoch                 INTEGER NOT NULL,
        status                TEXT NOT NULL,
        cert_fp               TEXT NOT NULL,
        cert_issued_at        INTEGER NOT NULL,
        cert_expires_at       INTEGER NOT NULL,
        prev_cert_fp          TEXT,
        prev_cert_grace_until INTEGER,
        hmac_key_enc          BLOB NOT NULL,
        created_at            INTEGER NOT NULL,
        last_seen_at          INTEGER,
        revoked_at            INTEGER,
        drain                 INTEGER NOT NULL DEFAULT 0,
        enrollment_token_id   TEXT
      );
      CREATE TABLE nonces (
        executor_id TEXT NOT NULL,
        nonce       TEXT NOT NULL,
        expires_at  INTEGER NOT NULL,
        PRIMARY KEY (executor_id, nonce)
      ) WITHOUT ROWID;
      CREATE INDEX nonces_expires_at ON nonces (expires_at);
    `,
  },
  {
    version: 2,
    name: "operator API tokens",
    sql: `
      CREATE TABLE api_tokens (
        id            TEXT PRIMARY KEY,
        name          TEXT NOT NULL,
        role          TEXT NOT NULL CHECK (role IN ('admin', 'operator', 'viewer')),
        token_hash    TEXT NOT NULL UNIQUE,
        created_at    INTEGER NOT NULL,
        created_by    TEXT NOT NULL,
        expires_at    INTEGER,
        revoked_at    INTEGER,
        last_used_at  INTEGER,
        last_used_ip  TEXT
      );
      CREATE INDEX api_tokens_role ON api_tokens (role, revoked_at);
    `,
  },
  {
    version: 3,
    name: "tasks and their leases",
    sql: `
      CREATE TABLE tasks (
        id                TEXT PRIMARY KEY,
        kind              TEXT NOT NULL,
        payload           TEXT NOT NULL,
        selector          TEXT NOT NULL DEFAULT '{}',
        timeout_s         INTEGER NOT NULL,
        max_attempts      INTEGER NOT NULL,
        attempts          INTEGER NOT NULL DEFAULT 0,
        status            TEXT NOT NULL,
        created_at        INTEGER NOT NULL,
        updated_at        INTEGER NOT NULL,
        finished_at       INTEGER,
        lease_id          TEXT UNIQUE,
        executor_id       TEXT,
        epoch             INTEGER,
        lease_expires_at  INTEGER,
        cancel_requested  INTEGER NOT NULL DEFAULT 0,
        result            TEXT,
        error             TEXT,
        submitted_by      TEXT
      );
      CREATE INDEX tasks_queue ON tasks (status, created_at);
      CREATE INDEX tasks_executor ON tasks (executor_id, status);
    `,
  },
  {
    version: 4,
    name: "dispatch index: selector pairs of queued tasks",
    // Matching moves into SQL (see dispatch.ts). A task with an empty selector is found
    // through (status, selector_size); one with a selector through its (key, value) pairs,
    // which exist only while it is queued — triggers keep them in step with its status.
    // Each pair row carries its task's selector_size, so a match is counted from this
    // table alone and only tasks that match are read.
    sql: `
      ALTER TABLE tasks ADD COLUMN selector_size INTEGER NOT NULL DEFAULT 0;
      UPDATE tasks SET selector_size = (SELECT COUNT(*) FROM json_each(tasks.selector));
      CREATE INDEX tasks_plain_queue ON tasks (status, selector_size);
      CREATE TABLE task_selector_pairs (
        key            TEXT NOT NULL,
        value          TEXT NOT NULL,
        task_id        TEXT NOT NULL,
        selector_size  INTEGER NOT NULL,
        PRIMARY KEY (key, value, task_id)
      ) WITHOUT ROWID;
      INSERT INTO task_selector_pairs (key, value, task_id, selector_size)
        SELECT j.key, j.value, t.id, t.selector_size FROM tasks t, json_each(t.selector) j WHERE t.status = 'queued';
      CREATE TRIGGER tasks_pairs_insert AFTER INSERT ON tasks WHEN NEW.status = 'queued' BEGIN
        INSERT OR IGNORE INTO task_selector_pairs (key, value, task_id, selector_size) SELECT key, value, NEW.id, NEW.selector_size FROM json_each(NEW.selector);
      END;
      CREATE TRIGGER tasks_pairs_queued AFTER UPDATE OF status ON tasks
        WHEN NEW.status = 'queued' AND OLD.status <> 'queued' BEGIN
        INSERT OR IGNORE INTO task_selector_pairs (key, value, task_id, selector_size) SELECT key, value, NEW.id, NEW.selector_size FROM json_each(NEW.selector);
      END;
      CREATE TRIGGER tasks_pairs_unqueued AFTER UPDATE OF status ON tasks
        WHEN OLD.status = 'queued' AND NEW.status <> 'queued' BEGIN
        DELETE FROM task_selector_pairs WHERE (key, value, task_id) IN (SELECT key, value, OLD.id FROM json_each(OLD.selector));
      END;
      CREATE TRIGGER tasks_pairs_deleted AFTER DELETE ON tasks WHEN OLD.status = 'queued' BEGIN
        DELETE FROM task_selector_pairs WHERE (key, value, task_id) IN (SELECT key, value, OLD.id FROM json_each(OLD.selector));
      END;
      -- A selector never changes after submission; refuse it so the pairs cannot drift.
      CREATE TRIGGER tasks_selector_fixed BEFORE UPDATE OF selector, selector_size ON tasks
        WHEN NEW.selector IS NOT OLD.selector OR NEW.selector_size IS NOT OLD.selector_size BEGIN
        SELECT RAISE(ABORT, 'a task selector cannot change');
      END;
    `,
  },
  {
    version: 5,
    name: "whether the current certificate has been used",
    // Until a request is made with a rotated certificate, the previous one may still rotate
    // credentials (a daemon that crashed before receiving the new one recovers); after, only
    // the current one may (PROTOCOL §7.4, docs/protocol.md). Existing rows count as used.
    sql: `ALTER TABLE executors ADD COLUMN cert_confirmed INTEGER NOT NULL DEFAULT 1;`,
  },
];

/**
 * Applies the migrations not yet recorded, each in its own write transaction. Safe
 * when several processes open one database at once: each re-checks inside the lock.
 */
export function migrate(db: Database.Database, list: readonly Migration[] = migrations): void {
  db.exec(`CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at INTEGER NOT NULL)`);
  const isApplied = db.prepare<[number], 1>(`SELECT 1 FROM schema_migrations WHERE version = ?`).pluck();
  const record = db.prepare<[number, string, number]>(`INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)`);
  for (const m of list) {
    if (isApplied.get(m.version)) continue;
    db.transaction(() => {
      if (isApplied.get(m.version)) return;
      db.exec(m.sql);
      record.run(m.version, m.name, Date.now());
    }).immediate();
  }
}
