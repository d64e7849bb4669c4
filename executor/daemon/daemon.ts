/**
 * The executor daemon: gets an identity (enroll with a token, or reuse the saved
 * one and re-register at epoch + 1), then runs two loops until stopped —
 *
 *   heartbeat  every `next_heartbeat_s` (±10 %), reporting ready/draining and the work held;
 *   renewal    the JWT at ~2/3 of its life, the certificate at ~2/3 of its life with a
 *              fresh key; both times come from the controller's hints when it sent them.
 *
 * Every controller answer goes through one reaction table (reaction-runner.ts):
 * renew, re-register, re-enroll, warn about the clock, retry with a new nonce,
 * back off, or stop with an exit code (../exit-codes.ts). Credential changes
 * (renew / rotate / re-register / re-enroll) run one at a time (credentials.ts).
 * The trust bundle (trust.ts) is adopted from heartbeat, renew and re-register
 * answers. With several `--controller` URLs the client sends each request to the
 * current one and the reactions fail over (../endpoints.ts). This file only
 * composes the parts and owns start, stop and drain.
 */
import type { Logger } from "pino";
import { rfc3339 } from "../../shared/time.ts";
import { DEFAULT_BACKOFF } from "../backoff.ts";
import { ExecutorClient } from "../client.ts";
import { ControllerEndpoints } from "../endpoints.ts";
import { DaemonExit, ExitCode } from "../exit-codes.ts";
import { IdentityStore, IdentityStoreError } from "../identity-store.ts";
import { acquireStateLock, StateLockError, type StateLock } from "../state-lock.ts";
import { isAbortError, latch, sleep } from "../timers.ts";
import { NoWork, type WorkCallOptions, type WorkContext, type WorkSource } from "../work.ts";
import { ControllerClock } from "./clock.ts";
import { CredentialOps } from "./credentials.ts";
import { Enrollment } from "./enrollment.ts";
import { Heartbeat } from "./heartbeat.ts";
import { Identity } from "./identity.ts";
import { heartbeatLoop, renewalLoop, type LoopDeps } from "./loops.ts";
import { readToken, type DaemonDeps, type DaemonOptions } from "./options.ts";
import { DEFAULT_UNTRUSTED, ReactionRunner } from "./reaction-runner.ts";
import { RenewalPlanner } from "./renewal-plan.ts";
import { RunState } from "./run-state.ts";
import { TrustBundle } from "./trust.ts";
import type { DaemonMetrics, DaemonView, TaskResult } from "../metrics.ts";
import type { MetricsListener } from "../../shared/metrics-http.ts";
import { TetherError, ErrorCode } from "../../shared/errors.ts";

export { tokenFileReader, type DaemonDeps, type DaemonOptions } from "./options.ts";
export type { DropReason } from "../work.ts";

/** How long a stop waits for the `draining` heartbeat to be answered. */
const DRAIN_HEARTBEAT_TIMEOUT_MS = 5_000;

export class ExecutorDaemon {
  readonly store: IdentityStore;
  readonly client: ExecutorClient;
  private readonly log: Logger;
  private readonly work: WorkSource;
  private readonly state = new RunState();
  private readonly drainCtl = new AbortController();
  private readonly identity: Identity;
  private readonly planner: RenewalPlanner;
  private readonly reactions: ReactionRunner;
  private readonly creds: CredentialOps;
  private readonly enrollment: Enrollment;
  private readonly heartbeat: Heartbeat;
  private readonly loopDeps: Omit<LoopDeps, "wake">;
  private readonly now: () => number;
  /** `--metrics-listen` (PROTOCOL §9.1): told what happens; serves /metrics while run() runs. */
  private readonly metrics?: DaemonMetrics;
  private fatal?: DaemonExit;
  private exit?: DaemonExit;
  /** Opened by shutdown() or a terminal error: run() stops the loops. */
  private readonly stopRequest = latch();

  constructor(
    private readonly opts: DaemonOptions,
    deps: DaemonDeps,
  ) {
    const log = (this.log = deps.log);
    const observer = (this.metrics = deps.metrics);
    const work = (this.work = deps.work ?? new NoWork());
    const random = deps.random ?? Math.random;
    const now = (this.now = deps.now ?? Date.now);
    const backoff = opts.backoff ?? DEFAULT_BACKOFF;
    const run = this.state;
    const store = (this.store = new IdentityStore(opts.stateDir, deps.storeHook));
    const endpoints = new ControllerEndpoints([...new Set([opts.controllerUrl, ...(opts.replicaUrls ?? [])])], log);
    const client = (this.client = new ExecutorClient({ endpoints, timeoutMs: opts.requestTimeoutMs, now }));
    const token = () => readToken(opts, log);

    const clock = new ControllerClock({ log, now, onCorrection: (ms) => (client.clockOffsetMs = ms) });
    const planner = (this.planner = new RenewalPlanner({ now, random, clock, wake: run.renewWake }));
    const identity = (this.identity = new Identity({ log, store, client, caFilePem: opts.caFilePem, planner }));
    const trust = new TrustBundle({ log, client, identity, opts, signal: run.signal });
    // The remedies are credential operations and re-enrollment, built below: bound late.
    const reactions = (this.reactions = new ReactionRunner({
      log, now, random, backoff, signal: run.signal, identity, clock, endpoints, readToken: token, tokenSource: opts.tokenSource,
      untrusted: { attempts: opts.untrusted?.attempts ?? DEFAULT_UNTRUSTED.attempts, forMs: opts.untrusted?.forMs ?? DEFAULT_UNTRUSTED.forMs },
      lostTrust: (code, n) => trust.lostTrust(code, n),
      remedies: {
        renewJwt: (jwt, reason) => this.creds.renewJwt(jwt, reason),
        reregister: (epoch, reason) => this.creds.reregister(epoch, reason),
        reenroll: (t, code) => this.enrollment.reenroll(t, code),
      },
    }));
    const creds = (this.creds = new CredentialOps({ log, now, opts, store, client, work, identity, planner, reactions, run, trust, observer }));
    this.enrollment = new Enrollment({ log, now, opts, store, client, work, identity, creds, reactions, run, readToken: token });
    this.heartbeat = new Heartbeat({ log, capacity: opts.capacity, client, work, identity, creds, clock, planner, reactions, run, trust, observer });
    this.loopDeps = { random, backoff, signal: run.signal, onError: (e, loop) => this.loopError(e, loop) };
  }

  get executorId(): string | undefined {
    return this.identity.executorId;
  }

  get epoch(): number | undefined {
    return this.identity.epoch;
  }

  /** Why the daemon ended, when it ended with a non-zero code. */
  get lastExit(): DaemonExit | undefined {
    return this.exit;
  }

  /** When the next renewal is due, and whether it is the certificate's. */
  nextRenewal(): { atMs: number; cert: boolean } | undefined {
    return this.planner.next();
  }

  /**
   * Runs until SIGTERM (→ 0 after draining) or a terminal condition (→ its exit
   * code). Never throws.
   */
  async run(): Promise<number> {
    const { log, state } = this;
    let lock: StateLock | undefined;
    let metricsListener: MetricsListener | undefined;
    try {
      this.store.init();
      lock = acquireStateLock(this.opts.stateDir);
      metricsListener = await this.serveMetrics();
      const { urls } = this.client.endpoints;
      log.info(
        { event: "daemon.starting", state_dir: this.opts.stateDir, controller: urls[0], ...(urls.length > 1 ? { controllers: urls } : {}), capacity: this.opts.capacity },
        urls.length > 1 ? `executor starting (controller replicas: ${urls.join(", ")})` : "executor starting",
      );
      await this.enrollment.establish();
      state.established = true;
      this.work.start(this.workContext());
      const loops = Promise.allSettled([
        heartbeatLoop({ ...this.loopDeps, wake: state.heartbeatWake, beat: () => this.heartbeat.beat() }),
        renewalLoop({ ...this.loopDeps, wake: state.renewWake, log, now: this.now, planner: this.planner, renew: (cert) => this.renew(cert) }),
      ]);
      await this.stopRequest.done;
      if (!this.fatal) await this.drainAndStop();
      state.stop();
      await loops;
      if (this.fatal) throw this.fatal;
      await this.client.close();
      log.info({ event: "stopped", executor_id: this.executorId, exit_code: ExitCode.OK }, "executor stopped");
      return ExitCode.OK;
    } catch (e) {
      state.stop();
      if (isAbortError(e) && !this.fatal) {
        // Stopped before an identity was established.
        await this.client.close(true);
        log.info({ event: "stopped", exit_code: ExitCode.OK }, "executor stopped before it was registered");
        return ExitCode.OK;
      }
      const exit = this.fatal ?? toExit(e);
      this.exit = exit;
      if (exit.exitCode === ExitCode.REVOKED) this.identity.markRevoked(rfc3339(this.now()));
      this.work.drop(exit.exitCode === ExitCode.REVOKED ? "revoked" : "identity-lost");
      await this.client.close(true);
      log.fatal({ event: exit.event, executor_id: this.executorId, exit_code: exit.exitCode }, exit.message);
      return exit.exitCode;
    } finally {
      await metricsListener?.close();
      lock?.release();
    }
  }

  /** Starts the /metrics listener (with --metrics-listen); a port that cannot be bound ends the daemon with a clear message. */
  private async serveMetrics(): Promise<MetricsListener | undefined> {
    if (!this.metrics) return undefined;
    let listener: MetricsListener;
    try {
      listener = await this.metrics.serve(this.metricsView(), (err) => this.log.error({ event: "metrics.error", err: (err as Error)?.message }, "metrics listener error"));
    } catch (e) {
      throw new DaemonExit(ExitCode.ERROR, `--metrics-listen: cannot serve metrics (${(e as Error)?.message ?? String(e)})`, "metrics.listen_failed");
    }
    this.log.info({ event: "metrics.listening", url: listener.url }, `metrics on ${listener.url}`);
    return listener;
  }

  /** What the metrics' gauges read when scraped. */
  private metricsView(): DaemonView {
    return {
      usable: () => {
        const s = this.state;
        const cert = this.identity.cert;
        return s.established && !s.signal.aborted && !s.shuttingDown && !s.operatorDrain && cert !== undefined && cert.notAfterMs > this.now();
      },
      certExpiresAtMs: () => this.identity.cert?.notAfterMs,
      jwtExpiresAtMs: () => {
        const at = this.identity.session?.jwt_expires_at;
        return at ? Date.parse(at) : undefined;
      },
    };
  }

  /**
   * SIGTERM/SIGINT: heartbeat `draining`, finish or hand back the work, exit 0.
   * A second call stops waiting for the work (it is handed back at once).
   */
  shutdown(reason: string): void {
    const { state } = this;
    if (state.shuttingDown) {
      this.log.warn({ event: "shutdown.forced", reason }, "second stop signal: handing back running work now");
      this.drainCtl.abort();
      return;
    }
    state.shuttingDown = true;
    this.log.info({ event: "shutdown.started", reason }, `stopping (${reason}): draining`);
    if (!state.established) {
      state.stop();
      this.stopRequest.open();
      return;
    }
    this.work.setAccepting(false);
    state.heartbeatWake.fire();
    this.stopRequest.open();
  }

  private renew(cert: boolean): Promise<void> {
    if (cert) return this.reactions.run("certificate renewal", () => this.creds.rotateCert());
    return this.reactions.run("JWT renewal", () => this.creds.renewJwt(undefined, "schedule"));
  }

  /** true when the loop must end. */
  private loopError(e: unknown, loop: string): boolean {
    if (this.state.signal.aborted || isAbortError(e)) return true;
    if (e instanceof DaemonExit) {
      this.fail(e);
      return true;
    }
    this.log.error({ event: "error", loop, err: (e as Error)?.message ?? String(e) }, `${loop} loop error`);
    return false;
  }

  private fail(e: DaemonExit): void {
    if (!this.fatal) this.fatal = e;
    this.state.stop();
    this.drainCtl.abort();
    this.stopRequest.open();
  }

  private async drainAndStop(): Promise<void> {
    // The draining heartbeat (bounded: an unreachable controller must not hold up the stop).
    await Promise.race([this.state.drainingAnnounced, sleep(DRAIN_HEARTBEAT_TIMEOUT_MS, this.state.signal).catch(() => {})]);
    const timer = setTimeout(() => this.drainCtl.abort(), this.opts.drainTimeoutMs);
    try {
      await this.work.drain(this.drainCtl.signal);
    } catch (e) {
      this.log.error({ event: "error", err: (e as Error)?.message }, "draining the work failed");
    } finally {
      clearTimeout(timer);
    }
  }

  /** tether_executor_tasks_total: a lease report the controller took (or refused as stale). */
  private taskReported(path: string, outcome: "ok" | "stale"): void {
    const m = LEASE_REPORT.exec(path);
    if (!m || !this.metrics) return;
    const result: TaskResult = outcome === "stale" ? "stale" : m[1] === "complete" ? "succeeded" : "failed";
    this.metrics.taskReported(result);
  }

  private workContext(): WorkContext {
    const stop = this.state.signal;
    return {
      log: this.log.child({ component: "work" }),
      executorId: () => this.identity.current.record.executor_id,
      capacity: this.opts.capacity,
      allowedCommands: this.opts.allowedCommands,
      signal: stop,
      call: async <T>(method: "POST", path: string, body: unknown, opts: WorkCallOptions = {}) => {
        const { onRetry, ...callOpts } = opts;
        const signal = callOpts.signal ? AbortSignal.any([callOpts.signal, stop]) : stop;
        try {
          const res = await this.reactions.run(`${method} ${path}`, () => this.client.call<T>(method, path, body, "jwt", { ...callOpts, signal }), { passThrough: true, onRetry });
          this.creds.contact(res);
          this.taskReported(path, "ok");
          return res.data;
        } catch (e) {
          if (e instanceof DaemonExit) this.fail(e);
          if (e instanceof TetherError && e.code === ErrorCode.STALE_LEASE) this.taskReported(path, "stale");
          throw e;
        }
      },
    };
  }
}

/** A lease report's path (PROTOCOL §3.3): `…/leases/{lease_id}/complete` or `…/fail`. */
const LEASE_REPORT = /\/leases\/[^/]+\/(complete|fail)$/;

function toExit(e: unknown): DaemonExit {
  if (e instanceof DaemonExit) return e;
  if (e instanceof StateLockError || e instanceof IdentityStoreError) return new DaemonExit(ExitCode.ERROR, e.message, "state.unusable");
  return new DaemonExit(ExitCode.ERROR, `unexpected error: ${(e as Error)?.message ?? String(e)}`, "error");
}
