/**
 * Versioned schema migrations for the PostgreSQL store. Migration 1 is the whole schema
 * SQLite reaches through its migrations 1..8, in PostgreSQL types: times BIGINT unix ms,
 * keys BYTEA (encrypted under the KEK), JSON documents TEXT exactly as written (so payloads
 * and labels read back byte for byte; dispatch casts the label maps to jsonb), identifiers
 * COLLATE "C" (byte order, whatever the database's locale, as SQLite compares).
 *
 * All pending migrations run in ONE transaction under a fixed advisory lock, so replicas
 * starting together migrate once and a failed migration leaves nothing behind. A database
 * whose schema is newer than this code knows is refused.
 */
import type pg from "pg";
import { acquire, ignore } from "./pool.ts";

export interface PostgresMigration {
  version: number;
  name: string;
  sql: string;
}

/** pg_advisory_xact_lock key of the migration run ("tether" + 1). */
export const MIGRATION_LOCK_KEY = 0x7465746865720001n;

export const postgresMigrations: readonly PostgresMigration[] = [
  {
    version: 1,
    name: "the controller's state: executors, tokens, nonces, tasks and their dispatch index, the CA set, JWT keys, settings",
    sql: `
      CREATE TABLE enrollment_tokens (
        seq          BIGINT GENERATED ALWAYS AS IDENTITY,
        id           TEXT COLLATE "C" PRIMARY KEY,
        token_hash   TEXT COLLATE "C" NOT NULL UNIQUE,
        created_at   BIGINT NOT NULL,
        expires_at   BIGINT NOT NULL,
        max_uses     BIGINT NOT NULL,
        uses         BIGINT NOT NULL DEFAULT 0,
        revoked_at   BIGINT,
        labels       TEXT NOT NULL DEFAULT '{}'
      );
      CREATE INDEX enrollment_tokens_created ON enrollment_tokens (created_at, seq);

      CREATE TABLE executors (
        seq                    BIGINT GENERATED ALWAYS AS IDENTITY,
        id                     TEXT COLLATE "C" PRIMARY KEY,
        name                   TEXT NOT NULL,
        labels                 TEXT NOT NULL DEFAULT '{}',
        capacity               BIGINT NOT NULL,
        epoch                  BIGINT NOT NULL,
        status                 TEXT NOT NULL CHECK (status IN ('ready', 'draining')),
        cert_fp                TEXT COLLATE "C" NOT NULL,
        cert_issued_at         BIGINT NOT NULL,
        cert_expires_at        BIGINT NOT NULL,
        prev_cert_fp           TEXT COLLATE "C",
        prev_cert_grace_until  BIGINT,
        cert_confirmed         BOOLEAN NOT NULL DEFAULT true,
        cert_ca_id             TEXT COLLATE "C",
        hmac_key_enc           BYTEA NOT NULL,
        prev_hmac_key_enc      BYTEA,
        prev_hmac_until        BIGINT,
        created_at             BIGINT NOT NULL,
        last_seen_at           BIGINT,
        revoked_at             BIGINT,
        drain                  BOOLEAN NOT NULL DEFAULT false,
        enrollment_token_id    TEXT COLLATE "C",
        trust_bundle_version   BIGINT
      );
      CREATE INDEX executors_created ON executors (created_at, seq);

      -- The replay store: one row per (executor, nonce) inside its retention window.
      CREATE TABLE nonces (
        executor_id  TEXT COLLATE "C" NOT NULL,
        nonce        TEXT COLLATE "C" NOT NULL,
        expires_at   BIGINT NOT NULL,
        PRIMARY KEY (executor_id, nonce)
      );
      CREATE INDEX nonces_expires_at ON nonces (expires_at);

      CREATE TABLE api_tokens (
        id            TEXT COLLATE "C" PRIMARY KEY,
        name          TEXT NOT NULL,
        role          TEXT NOT NULL CHECK (role IN ('admin', 'operator', 'viewer')),
        token_hash    TEXT COLLATE "C" NOT NULL UNIQUE,
        created_at    BIGINT NOT NULL,
        created_by    TEXT NOT NULL,
        expires_at    BIGINT,
        revoked_at    BIGINT,
        last_used_at  BIGINT,
        last_used_ip  TEXT
      );
      CREATE INDEX api_tokens_role ON api_tokens (role, revoked_at);

      -- seq is submission order: "oldest first" for dispatch, newest first for listings.
      CREATE TABLE tasks (
        seq               BIGINT GENERATED ALWAYS AS IDENTITY UNIQUE,
        id                TEXT COLLATE "C" PRIMARY KEY,
        kind              TEXT NOT NULL,
        payload           TEXT NOT NULL,
        selector          TEXT NOT NULL DEFAULT '{}',
        selector_size     BIGINT NOT NULL DEFAULT 0,
        timeout_s         BIGINT NOT NULL,
        max_attempts      BIGINT NOT NULL,
        attempts          BIGINT NOT NULL DEFAULT 0,
        status            TEXT NOT NULL,
        created_at        BIGINT NOT NULL,
        updated_at        BIGINT NOT NULL,
        finished_at       BIGINT,
        lease_id          TEXT COLLATE "C" UNIQUE,
        executor_id       TEXT COLLATE "C",
        epoch             BIGINT,
        lease_expires_at  BIGINT,
        cancel_requested  BOOLEAN NOT NULL DEFAULT false,
        result            TEXT,
        error             TEXT,
        submitted_by      TEXT
      );
      CREATE INDEX tasks_plain_queue ON tasks (status, selector_size, seq);
      CREATE INDEX tasks_status ON tasks (status, seq);
      CREATE INDEX tasks_executor ON tasks (executor_id, status);
      CREATE INDEX tasks_leased ON tasks (lease_expires_at) WHERE status = 'leased';

      -- The dispatch index (dispatch.ts): the (key, value) pairs of the selectors of queued
      -- tasks, each with its task's selector size, kept in step with the status by triggers.
      CREATE TABLE task_selector_pairs (
        key            TEXT COLLATE "C" NOT NULL,
        value          TEXT COLLATE "C" NOT NULL,
        task_id        TEXT COLLATE "C" NOT NULL,
        selector_size  BIGINT NOT NULL,
        PRIMARY KEY (key, value, task_id)
      );
      CREATE FUNCTION tasks_pairs_sync() RETURNS trigger LANGUAGE plpgsql AS $fn$
      BEGIN
        IF TG_OP IN ('UPDATE', 'DELETE') AND OLD.status = 'queued' AND (TG_OP = 'DELETE' OR NEW.status <> 'queued') THEN
          DELETE FROM task_selector_pairs p USING jsonb_each_text(OLD.selector::jsonb) j
            WHERE p.key = j.key AND p.value = j.value AND p.task_id = OLD.id;
        END IF;
        IF TG_OP IN ('INSERT', 'UPDATE') AND NEW.status = 'queued' AND (TG_OP = 'INSERT' OR OLD.status <> 'queued') THEN
          INSERT INTO task_selector_pairs (key, value, task_id, selector_size)
            SELECT j.key, j.value, NEW.id, NEW.selector_size FROM jsonb_each_text(NEW.selector::jsonb) j
            ON CONFLICT DO NOTHING;
        END IF;
        RETURN NULL;
      END $fn$;
      CREATE TRIGGER tasks_pairs_insert AFTER INSERT ON tasks FOR EACH ROW WHEN (NEW.status = 'queued') EXECUTE FUNCTION tasks_pairs_sync();
      CREATE TRIGGER tasks_pairs_status AFTER UPDATE OF status ON tasks FOR EACH ROW
        WHEN ((OLD.status = 'queued') <> (NEW.status = 'queued')) EXECUTE FUNCTION tasks_pairs_sync();
      CREATE TRIGGER tasks_pairs_delete AFTER DELETE ON tasks FOR EACH ROW WHEN (OLD.status = 'queued') EXECUTE FUNCTION tasks_pairs_sync();
      -- A selector never changes after submission; refuse it so the pairs cannot drift.
      CREATE FUNCTION tasks_selector_fixed() RETURNS trigger LANGUAGE plpgsql AS $fn$
      BEGIN
        RAISE EXCEPTION 'a task selector cannot change';
      END $fn$;
      CREATE TRIGGER tasks_selector_fixed BEFORE UPDATE OF selector, selector_size ON tasks FOR EACH ROW
        WHEN (NEW.selector IS DISTINCT FROM OLD.selector OR NEW.selector_size IS DISTINCT FROM OLD.selector_size)
        EXECUTE FUNCTION tasks_selector_fixed();

      -- The JWT key ring: at most one active and one next key (partial unique indexes).
      CREATE TABLE jwt_keys (
        kid              TEXT COLLATE "C" PRIMARY KEY,
        state            TEXT NOT NULL CHECK (state IN ('next', 'active', 'retired')),
        public_key       BYTEA NOT NULL,
        private_key_enc  BYTEA NOT NULL,
        created_at       BIGINT NOT NULL,
        signs_from       BIGINT NOT NULL,
        activated_at     BIGINT,
        retired_at       BIGINT
      );
      CREATE UNIQUE INDEX jwt_keys_one_active ON jwt_keys (state) WHERE state = 'active';
      CREATE UNIQUE INDEX jwt_keys_one_next ON jwt_keys (state) WHERE state = 'next';

      -- The CA set (PROTOCOL §7.1/§7.5): at most one active and one prepared CA; the
      -- certificates they issued go with them; the bundle version is one row, which every
      -- change of the set locks first.
      CREATE TABLE cas (
        id                     TEXT COLLATE "C" PRIMARY KEY,
        cert_pem               TEXT NOT NULL,
        fingerprint            TEXT COLLATE "C" NOT NULL UNIQUE,
        key_type               TEXT NOT NULL CHECK (key_type IN ('ed25519', 'p256')),
        state                  TEXT NOT NULL CHECK (state IN ('prepared', 'active', 'retired')),
        not_before             BIGINT NOT NULL,
        not_after              BIGINT NOT NULL,
        created_at             BIGINT NOT NULL,
        activated_at           BIGINT,
        retired_at             BIGINT,
        added_in_version       BIGINT NOT NULL,
        cross_cert_pem         TEXT,
        last_issued_not_after  BIGINT NOT NULL DEFAULT 0,
        private_key_enc        BYTEA NOT NULL,
        crl_number             BIGINT NOT NULL DEFAULT 0
      );
      CREATE UNIQUE INDEX cas_one_active ON cas (state) WHERE state = 'active';
      CREATE UNIQUE INDEX cas_one_prepared ON cas (state) WHERE state = 'prepared';
      CREATE TABLE certificates (
        ca_id        TEXT COLLATE "C" NOT NULL REFERENCES cas (id) ON DELETE CASCADE,
        serial       TEXT COLLATE "C" NOT NULL,
        executor_id  TEXT COLLATE "C",
        not_after    BIGINT NOT NULL,
        issued_at    BIGINT NOT NULL,
        PRIMARY KEY (ca_id, serial)
      );
      CREATE INDEX certificates_executor ON certificates (executor_id, not_after);
      CREATE TABLE trust_bundle (
        singleton  INTEGER PRIMARY KEY CHECK (singleton = 1),
        version    BIGINT NOT NULL
      );
      INSERT INTO trust_bundle (singleton, version) VALUES (1, 0);

      CREATE TABLE controller_settings (
        name        TEXT COLLATE "C" PRIMARY KEY,
        value       TEXT NOT NULL,
        updated_at  BIGINT NOT NULL
      );
    `,
  },
];

export const LATEST_SCHEMA_VERSION = Math.max(...postgresMigrations.map((m) => m.version));

export class SchemaTooNewError extends Error {
  constructor(readonly found: number, readonly known: number) {
    super(`the database's schema is at version ${found}, newer than this tether knows (${known}): upgrade tether before starting it on this database`);
    this.name = "SchemaTooNewError";
  }
}

/** The applied schema version; 0 when the database holds no tether state yet. */
export async function schemaVersion(db: Pick<pg.Pool | pg.PoolClient, "query">): Promise<number> {
  const exists = await db.query<{ t: string | null }>(`SELECT to_regclass('schema_migrations')::text AS t`);
  if (!exists.rows[0]?.t) return 0;
  const r = await db.query<{ v: number | null }>(`SELECT max(version) AS v FROM schema_migrations`);
  return r.rows[0]?.v ?? 0;
}

/**
 * Applies every migration not yet recorded, in one transaction under MIGRATION_LOCK_KEY.
 * Returns the versions it applied ([] when the schema was current).
 */
export async function migratePostgres(pool: pg.Pool, list: readonly PostgresMigration[] = postgresMigrations): Promise<{ applied: number[] }> {
  const known = Math.max(0, ...list.map((m) => m.version));
  const client = await acquire(pool);
  client.on("error", ignore);
  let discard: Error | undefined;
  try {
    await client.query("BEGIN");
    try {
      await client.query(`SELECT pg_advisory_xact_lock($1)`, [MIGRATION_LOCK_KEY.toString()]);
      await client.query(`CREATE TABLE IF NOT EXISTS schema_migrations (
        version BIGINT PRIMARY KEY, name TEXT NOT NULL, applied_at BIGINT NOT NULL)`);
      const done = new Set((await client.query<{ version: number }>(`SELECT version FROM schema_migrations`)).rows.map((r) => Number(r.version)));
      const newest = Math.max(0, ...done);
      if (newest > known) throw new SchemaTooNewError(newest, known);
      const applied: number[] = [];
      for (const m of [...list].sort((x, y) => x.version - y.version)) {
        if (done.has(m.version)) continue;
        await client.query(m.sql);
        await client.query(`INSERT INTO schema_migrations (version, name, applied_at) VALUES ($1, $2, $3)`, [m.version, m.name, Date.now()]);
        applied.push(m.version);
      }
      await client.query("COMMIT");
      return { applied };
    } catch (e) {
      await client.query("ROLLBACK").catch((rollbackError: unknown) => {
        discard = rollbackError instanceof Error ? rollbackError : new Error(String(rollbackError));
      });
      throw e;
    }
  } finally {
    client.removeListener("error", ignore);
    client.release(discard);
  }
}
