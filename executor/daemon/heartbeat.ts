/**
 * One heartbeat: report ready/draining, the work held and the trust bundle version
 * held (with the reactions applied), then act on the answer — clock offset, renewal
 * hints, the operator's drain flag, leases to cancel, a newer trust bundle to fetch.
 * The heartbeat loop (loops.ts) decides when.
 */
import type { Logger } from "pino";
import type { HeartbeatResponse } from "../../shared/wire/executor.ts";
import type { CallResult, ExecutorClient } from "../client.ts";
import type { WorkSource } from "../work.ts";
import type { ControllerClock } from "./clock.ts";
import type { CredentialOps } from "./credentials.ts";
import type { Identity } from "./identity.ts";
import type { ReactionRunner } from "./reaction-runner.ts";
import type { RenewalPlanner } from "./renewal-plan.ts";
import type { RunState } from "./run-state.ts";
import type { TrustBundle } from "./trust.ts";
import type { DaemonObserver } from "../metrics.ts";

export class Heartbeat {
  private readySeen = false;

  constructor(
    private readonly d: {
      log: Logger;
      capacity: number;
      client: ExecutorClient;
      work: WorkSource;
      identity: Identity;
      creds: CredentialOps;
      clock: ControllerClock;
      planner: RenewalPlanner;
      reactions: ReactionRunner;
      run: RunState;
      trust: TrustBundle;
      observer?: DaemonObserver;
    },
  ) {}

  /** Sends one heartbeat and applies the answer; returns the controller's `next_heartbeat_s`. */
  async beat(): Promise<number> {
    const { run, work } = this.d;
    let announcedShutdown = false;
    const res = await this.d.reactions.run("heartbeat", () => {
      const draining = run.shuttingDown || run.operatorDrain;
      announcedShutdown = run.shuttingDown;
      return this.d.client.heartbeat(
        {
          status: draining ? "draining" : "ready", running: work.running(), capacity: this.d.capacity, leases: work.leaseIds(),
          trust_bundle_version: this.d.trust.version,
        },
        { signal: run.signal },
      );
    }, { onFailure: (code) => this.d.observer?.heartbeatFailed(code) });
    if (announcedShutdown) run.announceDraining();
    this.d.creds.contact(res);
    this.apply(res);
    this.d.observer?.heartbeatSucceeded();
    // Reported from the next heartbeat on; a failed fetch is retried then.
    await this.d.trust.controllerVersion(res.data.trust_bundle_version);
    return res.data.next_heartbeat_s;
  }

  private apply(res: CallResult<HeartbeatResponse>): void {
    const { log, identity, run, work } = this.d;
    const hb = res.data;
    const id = identity.executorId;
    if (!this.readySeen) {
      this.readySeen = true;
      log.info({ event: "ready", executor_id: id, epoch: identity.epoch }, `executor ${id} is ${run.shuttingDown ? "draining" : "ready"}`);
    }
    log.debug({ event: "heartbeat", executor_id: id, next_heartbeat_s: hb.next_heartbeat_s }, "heartbeat");
    this.d.clock.measured(hb.server_time, res.sentAtMs, res.receivedAtMs);
    this.d.planner.applyHints(hb, res, identity.session?.jwt);
    if (hb.drain !== run.operatorDrain) {
      run.operatorDrain = hb.drain;
      if (!run.shuttingDown) work.setAccepting(!hb.drain);
      log.info({ event: hb.drain ? "drain.requested" : "drain.cleared", executor_id: id }, hb.drain ? "the controller asks this executor to drain: no new work" : "drain cleared: taking work again");
    }
    if (hb.cancel_leases?.length) work.cancel(hb.cancel_leases);
  }
}
