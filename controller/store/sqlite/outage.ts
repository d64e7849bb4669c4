/**
 * Which SQLite failures are an outage of the store (503 UNAVAILABLE, controller/store/
 * unavailable.ts) rather than a bug: the database locked past the busy timeout, the
 * disk full, I/O errors, a file that cannot be opened or is damaged. A constraint
 * violation or an SQL error stays what it is.
 */
import Database from "better-sqlite3";

const OUTAGE = /^SQLITE_(BUSY|LOCKED|FULL|IOERR|CANTOPEN|READONLY|PROTOCOL|NOMEM|CORRUPT|NOTADB)(_|$)/;

export function isSqliteOutage(e: unknown): boolean {
  return e instanceof Database.SqliteError && OUTAGE.test(e.code);
}
