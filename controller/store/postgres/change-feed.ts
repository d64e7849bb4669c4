/**
 * Changes committed by any replica, as PostgreSQL notifications on CHANGE_CHANNEL,
 * received on a dedicated connection (not from the pool: a LISTEN belongs to its
 * session). `live()` holds only while that connection is up and listening; when it is
 * lost the feed reconnects with backoff (100 ms doubling to 2 s) and fires `onResync`
 * once it listens again — notifications sent meanwhile are gone, so caches must drop
 * what they hold. A connection can also die silently (a network partition sends no
 * FIN): a probe query every second that is not answered within two marks the feed not
 * live at once and replaces the connection.
 */
import pg from "pg";
import { CHANGE_CHANNEL, decodeChange, type Change, type ChangeFeed } from "../changes.ts";
import { clientConfig } from "./pool.ts";

export interface PostgresChangeFeedOptions {
  url: string;
  /** Connection problems, for the log (reported once per outage, then once when back). */
  onError?: (message: string) => void;
  /** Default 100 ms, doubling up to maxBackoffMs. */
  minBackoffMs?: number;
  /** Default 2 s. */
  maxBackoffMs?: number;
  /** Default 250 ms. */
  probeIntervalMs?: number;
  /** A probe unanswered this long drops the connection and reconnects (default 2 s). */
  probeTimeoutMs?: number;
  /**
   * The feed counts as live only while a probe was answered within this long (default
   * 3 probe intervals): notifications committed before a probe was sent arrive before
   * its answer, so this bounds how stale a cache can be on a connection that died
   * silently — under the 1 s in which a revocation must reach every replica.
   */
  maxSilenceMs?: number;
}

export class PostgresChangeFeed implements ChangeFeed {
  private readonly subscribers = new Set<(c: Change) => void>();
  private readonly resyncs = new Set<() => void>();
  private readonly liveWaiters = new Set<() => void>();
  private client: pg.Client | undefined;
  private listening = false;
  /** When the listening connection last answered (connected, or a probe). */
  private lastAnswerAt = 0;
  private closed = false;
  private backoffMs: number;
  private reconnectTimer: NodeJS.Timeout | undefined;
  private probeTimer: NodeJS.Timeout | undefined;
  private failing = false;
  private readonly o: Required<Omit<PostgresChangeFeedOptions, "onError">> & Pick<PostgresChangeFeedOptions, "onError">;

  constructor(options: PostgresChangeFeedOptions) {
    this.o = { minBackoffMs: 100, maxBackoffMs: 2_000, probeIntervalMs: 250, probeTimeoutMs: 2_000, maxSilenceMs: 3 * (options.probeIntervalMs ?? 250), ...options };
    this.backoffMs = this.o.minBackoffMs;
    void this.connect();
  }

  live(): boolean {
    return this.listening && Date.now() - this.lastAnswerAt <= this.o.maxSilenceMs;
  }

  subscribe(fn: (c: Change) => void): () => void {
    this.subscribers.add(fn);
    return () => void this.subscribers.delete(fn);
  }

  onResync(fn: () => void): () => void {
    this.resyncs.add(fn);
    return () => void this.resyncs.delete(fn);
  }

  /** Resolves true once the feed is live (at once when it is), false after `timeoutMs`. */
  waitLive(timeoutMs: number): Promise<boolean> {
    if (this.listening) return Promise.resolve(true);
    return new Promise((resolve) => {
      const done = (ok: boolean) => {
        clearTimeout(timer);
        this.liveWaiters.delete(onLive);
        resolve(ok);
      };
      const onLive = () => done(true);
      const timer = setTimeout(() => done(false), timeoutMs);
      this.liveWaiters.add(onLive);
    });
  }

  /** The backend pid of the listening connection (tests terminate it), when live. */
  async backendPid(): Promise<number | undefined> {
    if (!this.client || !this.listening) return undefined;
    const r = await this.client.query<{ pid: number }>(`SELECT pg_backend_pid() AS pid`);
    return r.rows[0]?.pid;
  }

  async close(): Promise<void> {
    this.closed = true;
    this.listening = false;
    clearTimeout(this.reconnectTimer);
    clearInterval(this.probeTimer);
    const client = this.client;
    this.client = undefined;
    await client?.end().catch(() => undefined);
  }

  private async connect(): Promise<void> {
    if (this.closed) return;
    const client = new pg.Client({ ...clientConfig(this.o.url, "tether-changes"), query_timeout: undefined, statement_timeout: undefined });
    this.client = client;
    // Every error event is handled: an unhandled one would end the process.
    client.on("error", (e) => this.lost(client, e));
    client.on("end", () => this.lost(client, new Error("the listening connection ended")));
    client.on("notification", (m) => {
      if (client !== this.client || m.channel !== CHANGE_CHANNEL || m.payload === undefined) return;
      const change = decodeChange(m.payload);
      if (change) for (const fn of [...this.subscribers]) this.call(() => fn(change));
    });
    try {
      await client.connect();
      await client.query(`LISTEN ${CHANGE_CHANNEL}`);
    } catch (e) {
      this.lost(client, e);
      return;
    }
    if (client !== this.client) return; // lost (or closed) while connecting
    this.listening = true;
    this.lastAnswerAt = Date.now();
    this.backoffMs = this.o.minBackoffMs;
    if (this.failing) this.o.onError?.("change feed listening again");
    this.failing = false;
    this.probeTimer = setInterval(() => this.probe(client), this.o.probeIntervalMs);
    this.probeTimer.unref();
    for (const fn of [...this.liveWaiters]) fn();
    for (const fn of [...this.resyncs]) this.call(fn);
  }

  /** The connection answers within probeTimeoutMs, or it is treated as lost. */
  private probe(client: pg.Client): void {
    let answered = false;
    const timer = setTimeout(() => {
      if (!answered) this.lost(client, new Error(`no answer to a probe within ${this.o.probeTimeoutMs} ms`));
    }, this.o.probeTimeoutMs);
    timer.unref();
    client.query("SELECT 1").then(
      () => {
        answered = true;
        clearTimeout(timer);
        if (client === this.client) this.lastAnswerAt = Date.now();
      },
      (e: unknown) => {
        answered = true;
        clearTimeout(timer);
        this.lost(client, e);
      },
    );
  }

  private lost(client: pg.Client, e: unknown): void {
    if (client !== this.client) return; // an older connection, already replaced
    this.client = undefined;
    this.listening = false;
    clearInterval(this.probeTimer);
    client.end().catch(() => undefined);
    if (this.closed) return;
    if (!this.failing) this.o.onError?.(`change feed lost its PostgreSQL connection (${e instanceof Error ? e.message : String(e)}); reconnecting`);
    this.failing = true;
    const delay = this.backoffMs;
    this.backoffMs = Math.min(this.backoffMs * 2, this.o.maxBackoffMs);
    this.reconnectTimer = setTimeout(() => void this.connect(), delay);
    this.reconnectTimer.unref();
  }

  private call(fn: () => void): void {
    try {
      fn();
    } catch (e) {
      this.o.onError?.(`change feed subscriber failed: ${e instanceof Error ? e.message : String(e)}`);
    }
  }
}

/** The feed of a process that does not listen: never live, so callers read the store every time. */
export class NeverLiveChangeFeed implements ChangeFeed {
  live(): boolean {
    return false;
  }
  subscribe(): () => void {
    return () => undefined;
  }
  onResync(): () => void {
    return () => undefined;
  }
  async close(): Promise<void> {}
}
