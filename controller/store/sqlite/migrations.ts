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
  {
    version: 6,
    name: "rotating HMAC keys, adoption of the trust bundle, the JWT key ring",
    // The previous HMAC key stays accepted for the grace window after a rotation (PROTOCOL
    // §7.4); what bundle version each executor holds, and which CA issued its certificate
    // (§7.2); the JWT signing keys, private halves encrypted under the KEK like HMAC keys.
    // At most one active and one next key: partial unique indexes make that a constraint.
    sql: `
      ALTER TABLE executors ADD COLUMN prev_hmac_key_enc BLOB;
      ALTER TABLE executors ADD COLUMN prev_hmac_until INTEGER;
      ALTER TABLE executors ADD COLUMN trust_bundle_version INTEGER;
      ALTER TABLE executors ADD COLUMN cert_ca_id TEXT;
      CREATE TABLE jwt_keys (
        kid              TEXT PRIMARY KEY,
        state            TEXT NOT NULL CHECK (state IN ('next', 'active', 'retired')),
        public_key       BLOB NOT NULL,
        private_key_enc  BLOB NOT NULL,
        created_at       INTEGER NOT NULL,
        signs_from       INTEGER NOT NULL,
        activated_at     INTEGER,
        retired_at       INTEGER
      );
      CREATE UNIQUE INDEX jwt_keys_one_active ON jwt_keys (state) WHERE state = 'active';
      CREATE UNIQUE INDEX jwt_keys_one_next ON jwt_keys (state) WHERE state = 'next';
    `,
  },
  {
    version: 7,
    name: "the CA set: CAs, the certificates they issued, the trust bundle version",
    // PROTOCOL §7.1/§7.5. Private keys encrypted under the KEK (AAD `ca:<id>`). At most one
    // active and one prepared CA: partial unique indexes make that a constraint. Issued
    // certificates feed the CRLs and tell when a retired CA may leave the bundle; they go
    // with their CA. The bundle version is one row.
    sql: `
      CREATE TABLE cas (
        id                     TEXT PRIMARY KEY,
        cert_pem               TEXT NOT NULL,
        fingerprint            TEXT NOT NULL UNIQUE,
        key_type               TEXT NOT NULL CHECK (key_type IN ('ed25519', 'p256')),
        state                  TEXT NOT NULL CHECK (state IN ('prepared', 'active', 'retired')),
        not_before             INTEGER NOT NULL,
        not_after              INTEGER NOT NULL,
        created_at             INTEGER NOT NULL,
        activated_at           INTEGER,
        retired_at             INTEGER,
        added_in_version       INTEGER NOT NULL,
        cross_cert_pem         TEXT,
        last_issued_not_after  INTEGER NOT NULL DEFAULT 0,
        private_key_enc        BLOB NOT NULL,
        crl_number             INTEGER NOT NULL DEFAULT 0
      );
      CREATE UNIQUE INDEX cas_one_active ON cas (state) WHERE state = 'active';
      CREATE UNIQUE INDEX cas_one_prepared ON cas (state) WHERE state = 'prepared';
      CREATE TABLE certificates (
        ca_id        TEXT NOT NULL REFERENCES cas (id) ON DELETE CASCADE,
        serial       TEXT NOT NULL,
        executor_id  TEXT,
        not_after    INTEGER NOT NULL,
        issued_at    INTEGER NOT NULL,
        PRIMARY KEY (ca_id, serial)
      ) WITHOUT ROWID;
      CREATE INDEX certificates_executor ON certificates (executor_id, not_after);
      CREATE TABLE trust_bundle (
        singleton  INTEGER PRIMARY KEY CHECK (singleton = 1),
        version    INTEGER NOT NULL
      );
      INSERT INTO trust_bundle (singleton, version) VALUES (1, 0);
    `,
  },
  {
    version: 8,
    name: "the running controller's settings, for other processes on the data dir",
    // A CLI command on the data dir (\`tether ca rotate\`, \`executors list\`…) must act with the
    // controller's --ca-ttl, --jwt-ttl, heartbeat interval…, not with its own defaults.
    sql: `CREATE TABLE controller_settings (name TEXT PRIMARY KEY, value TEXT NOT NULL, updated_at INTEGER NOT NULL);`,
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
