/** Versioned schema migrations, applied in order, each in its own transaction. */
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
];
