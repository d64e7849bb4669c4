/**
 * Duties that must run on exactly one live replica (PROTOCOL §8), held as PostgreSQL
 * session advisory locks on a connection of their own. A replica that dies loses its
 * session and with it every lock; the others try for the free ones every `retryMs`, so
 * a duty moves within one retry of the holder's death (well inside the 30 s the
 * contract allows). A replica that cannot reach the database holds nothing: a probe
 * that fails drops every duty at once, before another replica could take them over.
 */
import pg from "pg";
import { DUTIES, type Duty, type DutyLocks } from "../changes.ts";
import { clientConfig } from "./pool.ts";

/** The advisory lock key space of duties: (DUTY_LOCK_CLASS, index of the duty). */
const DUTY_LOCK_CLASS = 0x7e7e;

export interface DutyLockOptions {
  /** How often a replica probes its connection and tries for duties it does not hold (default 5 s). */
  retryMs?: number;
  /** Told when this replica gains or loses duties. */
  onChange?: (held: Duty[], reason: string) => void;
}

export class AdvisoryDutyLocks implements DutyLocks {
  private client: pg.Client | undefined;
  private readonly mine = new Set<Duty>();
  private timer: NodeJS.Timeout | undefined;
  private closed = false;
  private round: Promise<void> = Promise.resolve();
  private readonly retryMs: number;

  constructor(private readonly url: string, private readonly opts: DutyLockOptions = {}) {
    this.retryMs = opts.retryMs ?? 5000;
  }

  /** Tries for the duties once now, then every retryMs. */
  async start(): Promise<void> {
    await this.tryRound();
    this.timer = setInterval(() => {
      this.round = this.round.then(() => this.tryRound());
    }, this.retryMs);
    this.timer.unref();
  }

  holds(duty: Duty): boolean {
    return this.mine.has(duty);
  }

  held(): Duty[] {
    return DUTIES.filter((d) => this.mine.has(d));
  }

  private dropAll(reason: string): void {
    const had = this.mine.size > 0;
    this.mine.clear();
    const c = this.client;
    this.client = undefined;
    if (c) void c.end().catch(() => undefined);
    if (had) this.opts.onChange?.([], reason);
  }

  private async connect(): Promise<pg.Client> {
    const base = clientConfig(this.url, "tether-duties");
    const c = new pg.Client({
      ...base,
      connectionTimeoutMillis: Math.min(5000, this.retryMs),
      query_timeout: Math.min(5000, this.retryMs),
      // The server notices a vanished replica (and frees its locks) within ~15 s even when no FIN arrives.
      options: `${base.options ?? ""} -c tcp_keepalives_idle=5 -c tcp_keepalives_interval=2 -c tcp_keepalives_count=5`,
    });
    c.on("error", (err) => {
      if (this.client === c) this.dropAll(`duty lock connection failed: ${err.message}`);
    });
    await c.connect();
    return c;
  }

  private async tryRound(): Promise<void> {
    if (this.closed) return;
    try {
      if (!this.client) this.client = await this.connect();
      const c = this.client;
      // The probe: a replica that cannot reach the database must stop acting as the holder.
      await c.query("SELECT 1");
      const gained: Duty[] = [];
      for (const [i, duty] of DUTIES.entries()) {
        if (this.mine.has(duty)) continue;
        const r = await c.query<{ ok: boolean }>("SELECT pg_try_advisory_lock($1, $2) AS ok", [DUTY_LOCK_CLASS, i]);
        if (r.rows[0]?.ok) {
          this.mine.add(duty);
          gained.push(duty);
        }
      }
      if (this.closed) return this.dropAll("closed");
      if (gained.length) this.opts.onChange?.(this.held(), `took ${gained.join(", ")}`);
    } catch (e) {
      this.dropAll(`duty lock connection failed: ${(e as Error).message}`);
    }
  }

  async close(): Promise<void> {
    this.closed = true;
    if (this.timer) clearInterval(this.timer);
    await this.round.catch(() => undefined);
    const c = this.client;
    this.client = undefined;
    this.mine.clear();
    await c?.end().catch(() => undefined);
  }
}
