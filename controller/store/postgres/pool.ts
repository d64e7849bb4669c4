/**
 * The connection pool every PostgreSQL store of one process shares, and the two ways
 * the stores use it: one statement (`run`) or one transaction (`inTransaction`), both
 * retried a few times when PostgreSQL aborts them for a serialization failure or a
 * deadlock (nothing was written then). Connection failures are never retried here: a
 * COMMIT that lost its connection may have happened, so the caller gets a 503.
 */
import pg from "pg";
import { CHANGE_CHANNEL } from "../changes.ts";
import { isPostgresOutage, isRetryable } from "./outage.ts";

const INT8_OID = 20;

/**
 * BIGINT (times in unix ms, counters, count(*)) arrives as a JS number — for this pool's
 * clients only, never through pg's global parsers, which other code may rely on.
 */
export const int8AsNumber: pg.CustomTypesConfig = {
  getTypeParser: ((oid: number, format?: "text" | "binary") =>
    oid === INT8_OID && format !== "binary" ? (v: string) => Number(v) : pg.types.getTypeParser(oid, format)) as pg.CustomTypesConfig["getTypeParser"],
};

export const CONNECT_TIMEOUT_MS = 5_000;
export const STATEMENT_TIMEOUT_MS = 10_000;

export interface PoolOptions {
  /** Connections at most (default 10). */
  max?: number;
  /** An idle connection died (the pool drops it and opens another when needed). */
  onIdleError?: (message: string) => void;
  applicationName?: string;
}

/** The client settings every connection of the store uses (the change feed's too). */
export function clientConfig(url: string, applicationName = "tether-controller"): pg.ClientConfig {
  return {
    connectionString: url,
    types: int8AsNumber,
    connectionTimeoutMillis: CONNECT_TIMEOUT_MS,
    // The server cancels a statement first (57014); the client gives up a little later
    // on a server that does not answer at all.
    statement_timeout: STATEMENT_TIMEOUT_MS,
    query_timeout: STATEMENT_TIMEOUT_MS + 2_000,
    // A transaction left open by a bug must not hold its locks forever.
    idle_in_transaction_session_timeout: 30_000,
    keepAlive: true,
    keepAliveInitialDelayMillis: 10_000,
    application_name: applicationName,
    // Short OLTP statements only: JIT compilation (on by default, triggered by cost estimates
    // such as the dispatch query's) costs more than whole statements take.
    options: "-c jit=off",
  };
}

export function createPostgresPool(url: string, o: PoolOptions = {}): pg.Pool {
  const pool = new pg.Pool({ ...clientConfig(url, o.applicationName), max: o.max ?? 10, idleTimeoutMillis: 30_000 });
  // Without a listener an idle client's connection error would crash the process.
  pool.on("error", (e) => o.onIdleError?.(`PostgreSQL connection lost: ${e.message}`));
  return pool;
}

const ATTEMPTS = 4;

/** Runs `work` again (with a short jittered pause) when PostgreSQL aborted it as a serialization failure or deadlock. */
export async function retrying<T>(work: () => Promise<T>): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await work();
    } catch (e) {
      if (attempt >= ATTEMPTS || !isRetryable(e)) throw e;
      await new Promise((r) => setTimeout(r, 5 * attempt + Math.random() * 20));
    }
  }
}

/** What a transaction body is given: a connection inside BEGIN … COMMIT. */
export type Tx = Pick<pg.PoolClient, "query">;

/**
 * Failing to get a connection at all — refused, timed out, the database not accepting
 * connections, credentials refused, the pool closed — is always an outage, whatever the
 * server's SQLSTATE said (08001: unable to establish a connection; the cause keeps it).
 */
export class NoConnectionError extends Error {
  readonly code = "08001";
  constructor(cause: unknown) {
    super(`no connection to PostgreSQL: ${cause instanceof Error ? cause.message : String(cause)}`, { cause });
    this.name = "NoConnectionError";
  }
}

export async function acquire(pool: pg.Pool): Promise<pg.PoolClient> {
  try {
    return await pool.connect();
  } catch (e) {
    throw new NoConnectionError(e);
  }
}

/** Between statements nobody listens on a checked-out client: a dying connection must not crash the process. */
export const ignore = (): void => undefined;

/** One statement (an implicit transaction of its own). */
export function run<R extends pg.QueryResultRow = pg.QueryResultRow>(pool: pg.Pool, text: string, values?: unknown[], name?: string): Promise<pg.QueryResult<R>> {
  return retrying(async () => {
    const client = await acquire(pool);
    client.on("error", ignore);
    let failure: Error | undefined;
    try {
      // A name makes it a prepared statement on each pooled connection: parsed and planned once there.
      return await (name === undefined ? client.query<R>(text, values) : client.query<R>({ name, text, values }));
    } catch (e) {
      // A statement error leaves the connection usable; the pool drops one that is not.
      if (isPostgresOutage(e)) failure = e as Error;
      throw e;
    } finally {
      client.removeListener("error", ignore);
      client.release(failure);
    }
  });
}

/**
 * BEGIN, `body`, COMMIT on one pooled connection (READ COMMITTED: each statement sees what
 * committed before it started, so a check made after taking a lock sees the lock holder's
 * writes). Any other error rolls back.
 */
export function inTransaction<T>(pool: pg.Pool, body: (tx: Tx) => Promise<T>): Promise<T> {
  return retrying(async () => {
    const client = await acquire(pool);
    client.on("error", ignore);
    let discard: Error | undefined;
    try {
      await client.query("BEGIN");
      const out = await body(client);
      await client.query("COMMIT");
      return out;
    } catch (e) {
      // A connection that failed or timed out is dropped (the server rolls back what it
      // held): a ROLLBACK would only queue behind a statement that may never answer.
      if (isPostgresOutage(e)) discard = e as Error;
      else {
        try {
          await client.query("ROLLBACK");
        } catch (rollbackError) {
          discard = rollbackError instanceof Error ? rollbackError : new Error(String(rollbackError));
        }
      }
      throw e;
    } finally {
      client.removeListener("error", ignore);
      client.release(discard);
    }
  });
}

/** `SELECT pg_notify(…)` for a change, inside the caller's transaction (delivered on COMMIT). */
export const NOTIFY_SQL = `SELECT pg_notify('${CHANGE_CHANNEL}', $1)`;
/** The notify call for use inside a larger statement, payload in parameter `$n`. */
export const notifyCall = (n: number) => `pg_notify('${CHANGE_CHANNEL}', $${n}::text)`;
