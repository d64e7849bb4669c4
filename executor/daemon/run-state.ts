/**
 * What the daemon's parts share for one run: the stop signal, the two wake-ups and
 * the few flags that say where the run is. The daemon creates it and hands it to
 * each part (with the log, clock and random source the part uses), so no part
 * reaches into another's fields.
 */
import { latch, Trigger } from "../timers.ts";

export class RunState {
  private readonly stopCtl = new AbortController();
  /** Aborted when the daemon stops for good: every sleep and request of every part ends. */
  readonly signal: AbortSignal = this.stopCtl.signal;
  /** Re-plan the renewals (credentials or hints changed). */
  readonly renewWake = new Trigger();
  /** Heartbeat now (shutdown, a rotated certificate to confirm, a new identity). */
  readonly heartbeatWake = new Trigger();
  /** An identity is in use and the loops run. */
  established = false;
  /** SIGTERM/SIGINT received: heartbeats say `draining`. */
  shuttingDown = false;
  /** The controller asked this executor to drain (heartbeat `drain: true`). */
  operatorDrain = false;
  private readonly announced = latch();
  /** Resolves once a heartbeat made after the shutdown began has been answered. */
  readonly drainingAnnounced: Promise<void> = this.announced.done;

  stop(): void {
    this.stopCtl.abort();
  }

  announceDraining(): void {
    this.announced.open();
  }
}
