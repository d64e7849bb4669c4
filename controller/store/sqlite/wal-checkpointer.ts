/**
 * WAL checkpoints off the event loop. SQLite's automatic checkpoint runs inside
 * whichever COMMIT crosses the threshold (1,000 pages by default) and includes an
 * fsync: at 1,000 heartbeats/s that is several 10–60 ms stalls of the controller's
 * only thread every second, which every request in flight waits out. Here a worker
 * thread with its own connection runs PASSIVE checkpoints on a timer instead (they
 * never block readers or the writer); the controller's connection keeps a much
 * higher automatic threshold only as a backstop in case this thread falls behind.
 * When the controller is idle the same thread truncates the WAL to zero bytes.
 *
 * The worker is plain JavaScript (eval) so it needs no TypeScript loader, and it
 * loads better-sqlite3 by absolute path so it works from any working directory.
 */
import { createRequire } from "node:module";
import { Worker } from "node:worker_threads";

const WORKER_SOURCE = `
const { parentPort, workerData } = require("node:worker_threads");
const Database = require(workerData.sqlite);
const db = new Database(workerData.path);
db.pragma("busy_timeout = " + workerData.busyTimeoutMs);
db.pragma("synchronous = NORMAL");
// The WAL file never shrinks by itself: once it has been fully checkpointed and no
// write came for truncateWhenIdleMs, a TRUNCATE checkpoint empties it. Everything is
// already in the database then, so it holds the write lock only for the truncation.
let lastLog = -1;
let quietSince = Date.now();
const timer = setInterval(() => {
  try {
    const r = db.pragma("wal_checkpoint(PASSIVE)")[0];
    const now = Date.now();
    if (r.log !== lastLog || r.checkpointed !== r.log) quietSince = now;
    lastLog = r.log;
    if (r.log > 0 && r.checkpointed === r.log && now - quietSince >= workerData.truncateWhenIdleMs) {
      db.pragma("wal_checkpoint(TRUNCATE)");
      lastLog = -1;
      quietSince = now;
    }
  } catch (e) {
    parentPort.postMessage({ error: String(e && e.message || e) });
  }
}, workerData.intervalMs);
parentPort.on("message", (m) => {
  if (m !== "stop") return;
  clearInterval(timer);
  try { db.pragma("wal_checkpoint(PASSIVE)"); } catch {}
  db.close();
  parentPort.postMessage({ stopped: true });
  parentPort.close();
});
`;

/** Pages the controller's own connection may let the WAL reach before it checkpoints itself. */
export const BACKSTOP_AUTOCHECKPOINT_PAGES = 20_000;

export interface CheckpointSchedule {
  intervalMs: number;
  /** Default 30 s. */
  truncateWhenIdleMs?: number;
  busyTimeoutMs: number;
}

export class WalCheckpointer {
  private readonly worker: Worker;
  private stopped = false;

  constructor(dbPath: string, schedule: CheckpointSchedule, onError: (message: string) => void) {
    const sqlite = createRequire(import.meta.url).resolve("better-sqlite3");
    const workerData = { sqlite, path: dbPath, ...schedule, truncateWhenIdleMs: schedule.truncateWhenIdleMs ?? 30_000 };
    this.worker = new Worker(WORKER_SOURCE, { eval: true, workerData });
    this.worker.unref();
    this.worker.on("message", (m: { error?: string }) => {
      if (m.error) onError(m.error);
    });
    this.worker.on("error", (e) => onError(e.message));
  }

  /** Runs a last checkpoint and closes the worker's connection. */
  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    const done = new Promise<void>((resolve) => {
      const timer = setTimeout(() => void this.worker.terminate().then(() => resolve()), 10_000);
      this.worker.once("exit", () => {
        clearTimeout(timer);
        resolve();
      });
    });
    this.worker.postMessage("stop");
    await done;
  }
}
