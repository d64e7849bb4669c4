/**
 * The executor daemon's metrics (PROTOCOL §9.1), served with `--metrics-listen` on a
 * plain-HTTP listener of their own. The daemon's parts report what happens through the
 * DaemonObserver seam (heartbeat answered or failed, a renewal done or failed, a task's
 * result reported); the gauges read the daemon's state when scraped. Loaded only when
 * metrics are on (the CLI imports it lazily), so `tether executor status` stays light.
 *
 * Labels are bounded: renewal kinds and results and task results are fixed sets, and a
 * heartbeat failure's code — which comes from the controller's answer or the network —
 * must look like a code, with at most 32 distinct ones ("OTHER" beyond).
 */
import { Counter, Gauge, type Registry } from "prom-client";
import { boundedLabel, newRegistry } from "../shared/prom-registry.ts";
import { serveMetrics, type ListenAddress, type MetricsListener } from "../shared/metrics-http.ts";

export type RenewalKind = "jwt" | "certificate" | "reregister";
export type RenewalResult = "success" | "failure";
/** How a task this executor ran ended, as reported to the controller. */
export type TaskResult = "succeeded" | "failed" | "stale";

/** What the daemon's parts report (every method optional to call: the daemon runs without metrics too). */
export interface DaemonObserver {
  /** A heartbeat was answered 200. */
  heartbeatSucceeded(): void;
  /** One heartbeat attempt failed (it is retried): the controller's error code or the network's. */
  heartbeatFailed(code: string): void;
  /** A credential operation ended (success) or one of its attempts failed (failure; it is retried). */
  renewal(kind: RenewalKind, result: RenewalResult): void;
  /** A lease's outcome was reported (complete → succeeded, fail → failed) or refused as stale. */
  taskReported(result: TaskResult): void;
}

/** The daemon's state the gauges read when scraped. */
export interface DaemonView {
  /** An identity is in use, the daemon takes work (not stopping, not drained by the operator) and its certificate is valid. */
  usable(): boolean;
  certExpiresAtMs(): number | undefined;
  jwtExpiresAtMs(): number | undefined;
}

/** What the daemon is handed (DaemonDeps.metrics): the observer, and the listener it starts and stops. */
export interface DaemonMetrics extends DaemonObserver {
  serve(view: DaemonView, onError: (e: unknown) => void): Promise<MetricsListener>;
}

const RENEWAL_KINDS: RenewalKind[] = ["jwt", "certificate", "reregister"];
const TASK_RESULTS: TaskResult[] = ["succeeded", "failed", "stale"];

export class ExecutorMetrics implements DaemonMetrics {
  readonly registry: Registry = newRegistry();
  private readonly renewals = new Counter({
    name: "tether_executor_renewals_total",
    help: "Credential operations by kind (jwt, certificate, reregister): successes, and failed attempts (each retried).",
    labelNames: ["kind", "result"] as const, registers: [this.registry],
  });
  private readonly heartbeatFailures = new Counter({
    name: "tether_executor_heartbeat_failures_total", help: "Heartbeat attempts that failed, by error code (the controller's, or the network's).",
    labelNames: ["code"] as const, registers: [this.registry],
  });
  private readonly tasks = new Counter({
    name: "tether_executor_tasks_total", help: "Tasks this executor ran whose outcome it reported: succeeded, failed, or stale (the controller had taken the lease back).",
    labelNames: ["result"] as const, registers: [this.registry],
  });
  private readonly code = boundedLabel(32);
  /** The last heartbeat was answered: the controller sees this executor as live. */
  private heartbeatOk = false;

  constructor(private readonly at: ListenAddress) {
    for (const kind of RENEWAL_KINDS) for (const result of ["success", "failure"]) this.renewals.labels(kind, result).inc(0);
    for (const result of TASK_RESULTS) this.tasks.labels(result).inc(0);
  }

  heartbeatSucceeded(): void {
    this.heartbeatOk = true;
  }
  heartbeatFailed(code: string): void {
    this.heartbeatOk = false;
    this.heartbeatFailures.labels(this.code(code)).inc();
  }
  renewal(kind: RenewalKind, result: RenewalResult): void {
    this.renewals.labels(kind, result).inc();
  }
  taskReported(result: TaskResult): void {
    this.tasks.labels(result).inc();
  }

  /** Adds the gauges over `view` and serves /metrics. */
  serve(view: DaemonView, onError: (e: unknown) => void): Promise<MetricsListener> {
    const registers = [this.registry];
    const ready: Gauge = new Gauge({
      name: "tether_executor_ready",
      help: "1 while the executor holds a valid identity, takes work and its last heartbeat was answered; else 0.",
      registers,
      collect: () => ready.set(view.usable() && this.heartbeatOk ? 1 : 0),
    });
    /** An expiry in unix seconds, or no sample before there is an identity. */
    const expiry = (name: string, help: string, read: () => number | undefined) => {
      const g: Gauge = new Gauge({
        name, help, registers,
        collect: () => {
          const ms = read();
          if (ms === undefined) g.remove({});
          else g.set(Math.floor(ms / 1000));
        },
      });
      g.remove({});
    };
    expiry("tether_executor_cert_expiry_timestamp_seconds", "When the executor's certificate expires (unix seconds).", () => view.certExpiresAtMs());
    expiry("tether_executor_jwt_expiry_timestamp_seconds", "When the executor's JWT expires (unix seconds).", () => view.jwtExpiresAtMs());
    return serveMetrics(this.registry, this.at, onError);
  }
}
