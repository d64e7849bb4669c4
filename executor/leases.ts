/**
 * The lease loop (PROTOCOL §3.3): while the daemon lets it take work and a slot is
 * free, long-poll `POST …/leases`, run each lease with the handler of its kind,
 * and report `…/complete` or `…/fail`. The daemon drives it through the WorkSource
 * seam (work.ts): heartbeats list what it holds, `cancel_leases` cancels, an epoch
 * change or a revocation drops everything, SIGTERM drains.
 *
 *   held lease ── handler runs ──► reporting ──► forgotten
 *        │ cancel / drop: the handler is aborted (its work killed), nothing is reported
 *        │ drain timeout: the handler is aborted, the lease is failed retryable (hand-back)
 *
 * A 409 STALE_LEASE on a report means the controller took the lease back
 * (reclaimed, cancelled, old epoch): it is logged and forgotten, never retried.
 *
 * A report that meets a network error or a 503 is retried until an answer comes,
 * to whichever controller replica is current by then (the daemon fails over): a
 * replica dying with the report in flight loses no result. Nor does it make a
 * second completion: when the first attempt did reach the dead replica, the
 * lease is no longer held and the retry gets STALE_LEASE — the controller fences
 * by (executor, epoch, lease) in its shared store, so the repeat changes nothing.
 */
import { TetherError, ErrorCode } from "../shared/errors.ts";
import { MAX_EXECUTOR_BODY_BYTES, MAX_LEASE_WAIT_S, MAX_LEASES_PER_POLL, paths } from "../shared/protocol.ts";
// Types only: the wire schemas (TypeBox) are the controller's; the daemon never loads them.
import type { Lease, LeasesResponse } from "../shared/wire/executor.ts";
import { Backoff, DEFAULT_BACKOFF, type BackoffOptions, type Random } from "./backoff.ts";
import { isAbortError, latch, raceAbort, sleep, Trigger } from "./timers.ts";
import { isFailure, type TaskHandler, type TaskOutcome } from "./handlers/types.ts";
import type { DropReason, WorkContext, WorkSource } from "./work.ts";

/** Client-side timeout of a poll beyond its wait_s. */
const POLL_MARGIN_MS = 15_000;
/** A failure's `error` text is cut to this many characters. */
const MAX_ERROR_CHARS = 8 * 1024;

export interface LeaseWorkSourceOptions {
  handlers: readonly TaskHandler[];
  /** `wait_s` of each poll, 0..30 (default 30). */
  waitS?: number;
  /** Backoff after a poll the controller refused (network errors are retried by the daemon's reactions). */
  backoff?: BackoffOptions;
  random?: Random;
  /**
   * After the drain timeout: how long the hand-back (stopping the handlers and
   * failing their leases as retryable) may take before the rest is left to the
   * controller's lease expiry. Covers the handlers' SIGTERM→SIGKILL grace.
   */
  handbackBudgetMs?: number;
  /** Polls that come back empty sooner than this are spaced out to it (a controller ignoring wait_s must not make us spin). */
  minEmptyPollMs?: number;
}

interface Entry {
  lease: Lease;
  /** Aborts the handler (cancel, drop, hand-back). */
  ctl: AbortController;
  /** Aborts the report in flight (cancel, drop, hand-back budget spent). */
  reportCtl: AbortController;
  state: "running" | "reporting";
  /** Cancelled or dropped: no longer listed, never reported. */
  forgotten: boolean;
  /** Stopped by the drain timeout: reported as a retryable failure. */
  handback: boolean;
  done?: Promise<void>;
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === "object" && !Array.isArray(v);
}

export class LeaseWorkSource implements WorkSource {
  private ctx?: WorkContext;
  private readonly handlers = new Map<string, TaskHandler>();
  private readonly waitS: number;
  private readonly backoffOpts: BackoffOptions;
  private readonly random: Random;
  private readonly handbackBudgetMs: number;
  private readonly minEmptyPollMs: number;
  /** Leases held (listed in heartbeats), by id. */
  private readonly byId = new Map<string, Entry>();
  /** Every entry whose handler or report has not finished (forgotten ones included): what occupies a slot. */
  private readonly live = new Set<Entry>();
  private readonly wake = new Trigger();
  private accepting = true;
  /** drain() has begun: no poll may start again. */
  private stopping = false;
  private pollCtl?: AbortController;
  /** Bumped by drop(): a poll answer that started before a drop belongs to the old epoch. */
  private generation = 0;
  private loopDone?: Promise<void>;

  constructor(opts: LeaseWorkSourceOptions) {
    for (const h of opts.handlers) {
      if (this.handlers.has(h.kind)) throw new Error(`two handlers for task kind "${h.kind}"`);
      this.handlers.set(h.kind, h);
    }
    this.waitS = Math.max(0, Math.min(MAX_LEASE_WAIT_S, Math.floor(opts.waitS ?? MAX_LEASE_WAIT_S)));
    this.backoffOpts = opts.backoff ?? DEFAULT_BACKOFF;
    this.random = opts.random ?? Math.random;
    this.handbackBudgetMs = opts.handbackBudgetMs ?? 10_000;
    this.minEmptyPollMs = opts.minEmptyPollMs ?? 1_000;
  }

  /** The context given to start(); the poll loop and lease handling only run after it. */
  private get started(): WorkContext {
    if (!this.ctx) throw new Error("the lease loop has not been started");
    return this.ctx;
  }

  /** Task kinds this executor runs. */
  get kinds(): string[] {
    return [...this.handlers.keys()];
  }

  start(ctx: WorkContext): void {
    if (this.ctx) return;
    this.ctx = ctx;
    if (this.handlers.size === 0) {
      // Taking leases it cannot run would only fail other people's tasks.
      ctx.log.info({ event: "work.none" }, "no task handlers (no --allow-command): this executor takes no tasks");
      return;
    }
    ctx.log.info({ event: "work.accepting", kinds: this.kinds, capacity: ctx.capacity }, `taking tasks of kind ${this.kinds.join(", ")} (up to ${ctx.capacity} at once)`);
    this.loopDone = this.loop();
  }

  setAccepting(accepting: boolean): void {
    if (this.accepting === accepting) return;
    this.accepting = accepting;
    // A poll already waiting is left to finish (≤ wait_s): giving it up could strand a lease
    // the controller grants in that instant. What it brings is run; no new poll starts.
    this.wake.fire();
  }

  leaseIds(): string[] {
    return [...this.byId.keys()];
  }

  running(): number {
    let n = 0;
    for (const e of this.byId.values()) if (e.state === "running") n++;
    return n;
  }

  cancel(leaseIds: string[]): void {
    for (const id of leaseIds) {
      const e = this.byId.get(id);
      if (!e) continue; // finished meanwhile, or never ours
      this.ctx?.log.info(
        { event: "lease.cancelled", lease_id: id, task_id: e.lease.task_id, state: e.state },
        `lease ${id} (task ${e.lease.task_id}) is no longer ours (cancelled or reclaimed): stopping it, not reporting`,
      );
      this.forget(e);
    }
  }

  drop(reason: DropReason): void {
    this.generation++;
    this.pollCtl?.abort();
    const n = this.byId.size;
    for (const e of [...this.byId.values()]) this.forget(e);
    if (n > 0) this.ctx?.log.warn({ event: "leases.dropped", reason, count: n }, `dropping ${n} lease(s) (${reason}): their work is stopped and not reported`);
  }

  async drain(signal: AbortSignal): Promise<void> {
    this.setAccepting(false);
    // Stopping cannot wait for a long poll: give it up. (The controller was told "draining"
    // first; a lease it still granted in that instant comes back when its expiry passes.)
    this.stopping = true;
    this.pollCtl?.abort();
    if (!this.ctx) return;
    const log = this.ctx.log;
    let budgetTimer: NodeJS.Timeout | undefined;
    const budget = latch();
    const handBack = () => {
      const running = [...this.byId.values()].filter((e) => e.state === "running");
      if (running.length) log.warn({ event: "leases.handing_back", count: running.length }, `drain timeout: handing back ${running.length} running lease(s)`);
      for (const e of running) {
        e.handback = true;
        e.ctl.abort();
      }
      budgetTimer = setTimeout(() => {
        for (const e of this.live) {
          e.forgotten = true;
          e.ctl.abort();
          e.reportCtl.abort();
        }
        budget.open();
      }, this.handbackBudgetMs);
    };
    if (signal.aborted) handBack();
    else signal.addEventListener("abort", handBack, { once: true });
    try {
      while (this.live.size > 0) {
        const left = [...this.live].map((e) => e.done);
        const r = await Promise.race([Promise.all(left).then(() => "done" as const), budget.done.then(() => "budget" as const)]);
        if (r === "budget") {
          if (this.live.size) log.warn({ event: "leases.abandoned", count: this.live.size }, `left ${this.live.size} lease(s) to the controller's expiry`);
          break;
        }
      }
    } finally {
      signal.removeEventListener("abort", handBack);
      clearTimeout(budgetTimer);
    }
  }

  /** Resolves when the poll loop has ended (after the daemon stopped). */
  async stopped(): Promise<void> {
    await this.loopDone;
  }

  // ─── the poll loop ────────────────────────────────────────────────────

  private async loop(): Promise<void> {
    const ctx = this.started;
    const backoff = new Backoff(this.backoffOpts, this.random);
    while (!ctx.signal.aborted) {
      try {
        while (!(this.accepting && !this.stopping && this.live.size < ctx.capacity)) await sleep(60_000, ctx.signal, this.wake);
        const max = Math.min(MAX_LEASES_PER_POLL, ctx.capacity - this.live.size);
        const gen = this.generation;
        const ctl = new AbortController();
        this.pollCtl = ctl;
        const t0 = Date.now();
        let res: LeasesResponse;
        try {
          res = await raceAbort(
            ctx.call<LeasesResponse>("POST", paths.leases(ctx.executorId()), { max, wait_s: this.waitS }, { signal: ctl.signal, timeoutMs: this.waitS * 1000 + POLL_MARGIN_MS }),
            ctl.signal,
          );
        } finally {
          if (this.pollCtl === ctl) this.pollCtl = undefined;
        }
        backoff.reset();
        const leases = this.validLeases(res);
        if (gen !== this.generation) {
          if (leases.length) ctx.log.warn({ event: "leases.discarded", count: leases.length }, "leases granted before the held work was dropped are not run (the controller requeues them)");
          continue;
        }
        if (leases.length > max) ctx.log.warn({ event: "leases.over_max", max, got: leases.length }, `asked for at most ${max} leases, got ${leases.length}; running them all`);
        for (const l of leases) this.begin(l);
        const elapsed = Date.now() - t0;
        if (leases.length === 0 && elapsed < this.minEmptyPollMs && this.waitS > 0) await sleep(this.minEmptyPollMs - elapsed, ctx.signal);
      } catch (e) {
        if (ctx.signal.aborted) return;
        if (isAbortError(e)) continue; // our own poll given up (drain, drop): re-check and go on
        const d = backoff.next();
        const code = e instanceof TetherError ? e.code : "UNEXPECTED";
        ctx.log.warn({ event: "leases.poll_failed", code, delay_ms: d, err: (e as Error)?.message }, `polling for leases failed (${code}: ${(e as Error)?.message}); retrying in ${d} ms`);
        await sleep(d, ctx.signal).catch(() => {});
      }
    }
  }

  private validLeases(res: LeasesResponse): Lease[] {
    const list: unknown = (res as { leases?: unknown })?.leases;
    if (!Array.isArray(list)) throw new TetherError(200, "INVALID_RESPONSE", "the leases answer has no leases array");
    const out: Lease[] = [];
    for (const l of list as unknown[]) {
      const lease = l as Partial<Lease>;
      if (!isPlainObject(l) || typeof lease.lease_id !== "string" || lease.lease_id.length === 0) {
        this.started.log.error({ event: "lease.malformed" }, "the controller sent a lease without a lease_id; ignoring it");
        continue;
      }
      if (this.byId.has(lease.lease_id)) {
        this.started.log.warn({ event: "lease.duplicate", lease_id: lease.lease_id }, `lease ${lease.lease_id} is already held; ignoring the repeat`);
        continue;
      }
      out.push({
        lease_id: lease.lease_id,
        task_id: typeof lease.task_id === "string" ? lease.task_id : "",
        kind: typeof lease.kind === "string" ? lease.kind : "",
        payload: lease.payload,
        expires_at: typeof lease.expires_at === "string" ? lease.expires_at : "",
      });
    }
    return out;
  }

  // ─── one lease ────────────────────────────────────────────────────────

  private begin(lease: Lease): void {
    const e: Entry = { lease, ctl: new AbortController(), reportCtl: new AbortController(), state: "running", forgotten: false, handback: false };
    this.byId.set(lease.lease_id, e);
    this.live.add(e);
    e.done = this.runEntry(e)
      .catch((err) => this.started.log.error({ event: "lease.internal_error", lease_id: lease.lease_id, err: (err as Error)?.message }, "lease handling failed"))
      .finally(() => {
        this.live.delete(e);
        if (this.byId.get(lease.lease_id) === e) this.byId.delete(lease.lease_id);
        this.wake.fire();
      });
  }

  private forget(e: Entry): void {
    e.forgotten = true;
    if (this.byId.get(e.lease.lease_id) === e) this.byId.delete(e.lease.lease_id);
    e.ctl.abort();
    e.reportCtl.abort();
  }

  private async runEntry(e: Entry): Promise<void> {
    const ctx = this.started;
    const { lease } = e;
    const ids = { lease_id: lease.lease_id, task_id: lease.task_id, kind: lease.kind };
    ctx.log.info({ event: "lease.received", ...ids, expires_at: lease.expires_at }, `running task ${lease.task_id} (${lease.kind}) under lease ${lease.lease_id}`);
    const handler = this.handlers.get(lease.kind);
    let outcome: TaskOutcome;
    if (!handler) {
      outcome = { error: `this executor has no handler for task kind "${lease.kind}" (it runs: ${this.kinds.join(", ") || "none"})`, retryable: false };
    } else {
      try {
        outcome = await handler.run(
          { taskId: lease.task_id, leaseId: lease.lease_id, kind: lease.kind, payload: lease.payload, expiresAt: lease.expires_at, log: ctx.log },
          e.ctl.signal,
        );
      } catch (err) {
        outcome = { error: `the "${lease.kind}" handler failed: ${(err as Error)?.message ?? String(err)}`, retryable: false };
      }
    }
    if (e.forgotten) {
      ctx.log.info({ event: "lease.stopped", ...ids }, `task ${lease.task_id} stopped; lease ${lease.lease_id} forgotten without a report`);
      return;
    }
    if (e.handback) outcome = { error: "handed back: the executor shut down before the task finished", retryable: true };
    e.state = "reporting";
    await this.report(e, checkOutcome(outcome));
  }

  private async report(e: Entry, outcome: TaskOutcome, second = false): Promise<void> {
    const ctx = this.started;
    const { lease } = e;
    const ids = { lease_id: lease.lease_id, task_id: lease.task_id, kind: lease.kind };
    const id = ctx.executorId();
    const leaseSeg = encodeURIComponent(lease.lease_id);
    const fail = isFailure(outcome);
    const path = fail ? paths.leaseFail(id, leaseSeg) : paths.leaseComplete(id, leaseSeg);
    const body = fail ? { error: outcome.error, retryable: outcome.retryable } : { result: outcome.result };
    // Whether an earlier attempt may have been delivered (a connection lost mid-request, a 5xx).
    let retried = false;
    try {
      await raceAbort(ctx.call<unknown>("POST", path, body, { signal: e.reportCtl.signal, onRetry: () => (retried = true) }), e.reportCtl.signal);
      if (fail) {
        ctx.log.info({ event: "lease.failed", ...ids, retryable: outcome.retryable, error: firstLine(outcome.error) }, `task ${lease.task_id} failed${outcome.retryable ? " (retryable)" : ""}: ${firstLine(outcome.error)}`);
      } else {
        ctx.log.info({ event: "lease.completed", ...ids }, `task ${lease.task_id} completed`);
      }
    } catch (err) {
      if (isAbortError(err)) {
        ctx.log.info({ event: "lease.report_abandoned", ...ids }, `report of lease ${lease.lease_id} abandoned (the lease was dropped or the executor is stopping)`);
        return;
      }
      if (err instanceof TetherError && err.code === ErrorCode.STALE_LEASE) {
        if (retried) {
          ctx.log.info(
            { event: "lease.stale", ...ids, after_retry: true },
            `lease ${lease.lease_id} is no longer held after a retried report: the earlier attempt most likely reached the controller before the connection failed (or it took the lease back); not reporting again`,
          );
        } else ctx.log.warn({ event: "lease.stale", ...ids }, `lease ${lease.lease_id} is stale (reclaimed or cancelled by the controller); forgetting it`);
        return;
      }
      const code = err instanceof TetherError ? err.code : "UNEXPECTED";
      if (!fail && !second && err instanceof TetherError && (err.status === 400 || err.status === 413)) {
        // The controller cannot take this result; the task must still end somewhere.
        ctx.log.warn({ event: "lease.result_refused", ...ids, code }, `the controller refused the result of task ${lease.task_id} (${code}); failing it instead`);
        await this.report(e, { error: `the controller refused the task's result (${code}: ${err.message})`, retryable: false }, true);
        return;
      }
      ctx.log.error({ event: "lease.report_failed", ...ids, code, err: (err as Error)?.message }, `could not report lease ${lease.lease_id} (${code}); the controller will reclaim it when it expires`);
    }
  }
}

function firstLine(s: string): string {
  const i = s.indexOf("\n");
  return (i === -1 ? s : s.slice(0, i)).slice(0, 200);
}

/** A handler's outcome as the wire allows it: a plain-object result that fits the body limit, or an error string and a boolean. */
function checkOutcome(o: TaskOutcome): TaskOutcome {
  if (!isPlainObject(o)) return { error: "the handler returned no outcome", retryable: false };
  if (isFailure(o)) {
    const error = typeof o.error === "string" && o.error ? o.error : "failed";
    return { error: error.length > MAX_ERROR_CHARS ? error.slice(0, MAX_ERROR_CHARS) : error, retryable: o.retryable === true };
  }
  if (!isPlainObject(o.result)) return { error: "the handler returned a result that is not an object", retryable: false };
  let size: number;
  try {
    size = Buffer.byteLength(JSON.stringify({ result: o.result }));
  } catch (e) {
    return { error: `the handler returned a result that is not JSON: ${(e as Error).message}`, retryable: false };
  }
  if (size > MAX_EXECUTOR_BODY_BYTES) return { error: `the task's result is too large to report (${size} bytes; the limit is ${MAX_EXECUTOR_BODY_BYTES})`, retryable: false };
  return o;
}
