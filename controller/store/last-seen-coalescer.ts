/**
 * Heartbeats mostly say "still here": the same status and trust-bundle version as the
 * last one, only a later time. Writing each of those costs a row update per request,
 * while liveness is judged at 3 and 6 heartbeat intervals (controller/domain/liveness.ts).
 * So a running controller writes a heartbeat through at once only when it changes what
 * this process last wrote for that executor (its status or bundle version, or the first
 * heartbeat this process sees); a plain refresh of `last_seen_at` is deferred for at most
 * `deferMs`, and further refreshes of the same executor meanwhile merge into it.
 *
 * What that means for readers (docs/protocol.md "Heartbeat writes"): reads through this
 * process's store flush first, so the API answers exactly; another process (the CLI,
 * another replica) may see `last_seen_at` up to `deferMs` old, never a stale status or
 * bundle version written by this process. Nonces are not touched here: they stay
 * durable before each answer. A deferred write that fails is kept and retried with the
 * next tick; a crash loses at most `deferMs` of refreshes, which the next heartbeat
 * repairs.
 */
import type { ExecutorRunStatus } from "./types.ts";

export interface HeartbeatRecord {
  status: ExecutorRunStatus;
  now: number;
  version: number | null;
}

interface Deferred extends HeartbeatRecord {
  /** Written no later than this (epoch ms). */
  due: number;
}

/** Rows written per tick at most, so a tick never holds the event loop for long. */
const MAX_PER_TICK = 500;

export interface LastSeenCoalescerOptions {
  /** A refresh waits at most this long (ms). */
  deferMs: number;
  /** How often due refreshes are written (ms). */
  tickMs: number;
  /** Writes one heartbeat (the store's recordHeartbeat: those of one turn share one commit). */
  write: (id: string, h: HeartbeatRecord) => Promise<void>;
  /** A batch of deferred writes failed (called once per batch; they are retried). */
  onError?: (e: unknown) => void;
}

export class LastSeenCoalescer {
  /** What this process last wrote (or has deferred) per executor: status and version decide write-through. */
  private readonly written = new Map<string, { status: ExecutorRunStatus; version: number | null }>();
  /** Insertion order is due order: an entry keeps its place (and due time) when refreshed again. */
  private readonly deferred = new Map<string, Deferred>();
  private timer: NodeJS.Timeout | undefined;
  private flushing: Promise<void> | undefined;

  constructor(private readonly opts: LastSeenCoalescerOptions) {}

  /** Resolves once the heartbeat is written (a change) or deferred (a refresh). */
  record(id: string, h: HeartbeatRecord): Promise<void> {
    const last = this.written.get(id);
    if (!last || last.status !== h.status || (h.version !== null && h.version !== last.version)) {
      // A change: written now, carrying the latest time (a deferred refresh of it is superseded).
      this.deferred.delete(id);
      this.written.set(id, { status: h.status, version: h.version ?? last?.version ?? null });
      return this.opts.write(id, h).catch((e) => {
        // Not written: the next heartbeat of this executor must try again.
        this.written.delete(id);
        throw e;
      });
    }
    const pending = this.deferred.get(id);
    if (pending) pending.now = Math.max(pending.now, h.now);
    else {
      this.deferred.set(id, { ...h, version: last.version, due: Date.now() + this.opts.deferMs });
      this.timer ??= setInterval(() => void this.writeDue(), this.opts.tickMs).unref();
    }
    return Promise.resolve();
  }

  /** How many refreshes wait (for tests and metrics). */
  pending(): number {
    return this.deferred.size;
  }

  /** Writes every deferred refresh now (before a read of executors, and at close). */
  async flush(): Promise<void> {
    while (this.flushing) await this.flushing;
    if (this.deferred.size > 0) await this.writeBatch(Number.POSITIVE_INFINITY, Number.POSITIVE_INFINITY);
  }

  /** Stops the timer and writes what is deferred. */
  async close(): Promise<void> {
    await this.flush();
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
  }

  private async writeDue(): Promise<void> {
    if (this.flushing) return;
    await this.writeBatch(Date.now(), MAX_PER_TICK);
    if (this.deferred.size === 0 && this.timer) {
      clearInterval(this.timer);
      this.timer = undefined;
    }
  }

  private async writeBatch(dueBy: number, max: number): Promise<void> {
    const batch: [string, Deferred][] = [];
    for (const entry of this.deferred) {
      if (entry[1].due > dueBy || batch.length >= max) break;
      batch.push(entry);
    }
    for (const [id] of batch) this.deferred.delete(id);
    const run = (async () => {
      const results = await Promise.allSettled(batch.map(([id, h]) => this.opts.write(id, h)));
      let failure: unknown;
      results.forEach((r, i) => {
        if (r.status === "fulfilled") return;
        failure ??= r.reason;
        const [id, h] = batch[i]!;
        // Kept for the next tick unless something newer replaced it meanwhile (a change
        // written through since carries a later time and must not be undone).
        const newer = this.deferred.get(id);
        if (newer) newer.now = Math.max(newer.now, h.now);
        else if (this.written.get(id)?.status === h.status) this.deferred.set(id, h);
      });
      // Once per batch, not per row: an outage fails them all (and the store reports outages itself).
      if (failure !== undefined) this.opts.onError?.(failure);
    })();
    this.flushing = run;
    try {
      await run;
    } finally {
      this.flushing = undefined;
    }
  }
}
