/**
 * Which PostgreSQL failures are an outage of the store (503 UNAVAILABLE, controller/store/
 * unavailable.ts) rather than a bug: the server cannot be reached or dropped the
 * connection, is shutting down or starting, is out of resources, did not answer in time,
 * or kept failing a transaction on serialization or deadlock (the store retries those a
 * few times before they get here). A constraint violation or an SQL error stays what it is.
 */

/** Node socket errors meaning "no usable connection to the server". */
const SOCKET_CODES = new Set([
  "ECONNREFUSED", "ECONNRESET", "EPIPE", "ETIMEDOUT", "ECONNABORTED", "EHOSTUNREACH", "ENETUNREACH", "EHOSTDOWN",
  "ENOTFOUND", "EAI_AGAIN",
]);

/** What pg and pg-pool say when a connection is lost, times out or cannot be had. */
const DRIVER_MESSAGES = [
  /^Connection terminated/, // "… unexpectedly", "… due to connection timeout"
  /^timeout exceeded when trying to connect$/,
  /is not queryable$/, // "Client has encountered a connection error and is not queryable", "Client was closed …"
  /^Query read timeout$/,
  /^Connection timeout$/,
];

/** SQLSTATEs outside the whole-class ones (08, 53) that mean the store is unavailable now. */
const SQLSTATES = new Set([
  "57P01", // admin_shutdown (also pg_terminate_backend)
  "57P02", // crash_shutdown
  "57P03", // cannot_connect_now (starting up, recovering)
  "57P05", // idle_session_timeout
  "57014", // query_canceled: statement_timeout fired
  "55P03", // lock_not_available: lock_timeout fired
  "25006", // read_only_sql_transaction: a standby answered (failover under way)
  "40001", // serialization_failure, after the store's own retries
  "40P01", // deadlock_detected, after the store's own retries
  "58030", // io_error
  "28000", "28P01", // the server refuses this replica's credentials now
  "3D000", // the database is gone
]);

const SQLSTATE = /^[0-9A-Z]{5}$/;

export function isPostgresOutage(e: unknown, depth = 0): boolean {
  if (!(e instanceof Error) || depth > 4) return false;
  const code = (e as { code?: unknown }).code;
  if (typeof code === "string") {
    if (SOCKET_CODES.has(code)) return true;
    if (SQLSTATE.test(code) && (code.startsWith("08") || code.startsWith("53") || SQLSTATES.has(code))) return true;
  }
  if (DRIVER_MESSAGES.some((m) => m.test(e.message))) return true;
  // Node's happy-eyeballs connect reports every address it tried.
  if (e instanceof AggregateError && e.errors.some((x) => isPostgresOutage(x, depth + 1))) return true;
  return e.cause !== undefined && isPostgresOutage(e.cause, depth + 1);
}

/** Serialization failures and deadlocks abort only the transaction: it may run again. */
export function isRetryable(e: unknown): boolean {
  const code = (e as { code?: unknown } | undefined)?.code;
  return code === "40001" || code === "40P01";
}
