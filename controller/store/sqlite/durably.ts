import type Database from "better-sqlite3";

/**
 * A write that an answer stands on is synced at its COMMIT even though the connection
 * runs synchronous=NORMAL (docs/security.md): the pragma is raised around it.
 */
export function durably<T>(db: Database.Database, write: () => T): T {
  db.pragma("synchronous = FULL");
  try {
    return write();
  } finally {
    db.pragma("synchronous = NORMAL");
  }
}
