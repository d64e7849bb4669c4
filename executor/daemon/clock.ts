/**
 * The controller's clock as this executor knows it: the offset (server − local)
 * measured from heartbeat answers or CLOCK_SKEW errors. A large offset is
 * corrected (requests are signed with the controller's time) and warned about;
 * the renewal planner reads it to convert the controller's timestamps.
 */
import type { Logger } from "pino";
import { measureClockOffset } from "../renew-timing.ts";

/** |offset| at or above which the signing clock is corrected (server_time has 1 s precision). */
export const SKEW_CORRECT_MS = 2_000;
/** |offset| above which the daemon warns even without a CLOCK_SKEW answer. */
export const SKEW_WARN_MS = 30_000;
/** How often an unprompted skew warning may repeat. */
const SKEW_WARN_EVERY_MS = 600_000;

export class ControllerClock {
  private offset = 0;
  private lastWarnAt = 0;

  constructor(
    private readonly d: {
      log: Logger;
      now: () => number;
      /** Called when the correction changes (the client signs with local time + this). */
      onCorrection: (offsetMs: number) => void;
    },
  ) {}

  /** The correction in use: server − local (ms), 0 while the clocks agree closely enough. */
  get offsetMs(): number {
    return this.offset;
  }

  /** A successful answer's `server_time`, stamped between `sentAtMs` and `receivedAtMs`. */
  measured(serverTime: string, sentAtMs: number, receivedAtMs: number): void {
    const offset = measureClockOffset(serverTime, sentAtMs, receivedAtMs);
    if (offset !== undefined) this.note(offset, false);
  }

  /** An offset measured from a response or a CLOCK_SKEW error (`fromError`: always warn). */
  note(offsetMs: number, fromError: boolean): void {
    const correct = Math.abs(offsetMs) >= SKEW_CORRECT_MS;
    const next = correct ? offsetMs : 0;
    const now = this.d.now();
    if (fromError || (Math.abs(offsetMs) > SKEW_WARN_MS && now - this.lastWarnAt > SKEW_WARN_EVERY_MS)) {
      this.lastWarnAt = now;
      this.d.log.warn(
        { event: "clock_skew", offset_ms: offsetMs, correcting: correct },
        `this host's clock is ${Math.abs(offsetMs / 1000).toFixed(1)} s ${offsetMs > 0 ? "behind" : "ahead of"} the controller's; signing with the controller's time — fix the clock (NTP)`,
      );
    }
    if (next !== this.offset) {
      this.offset = next;
      this.d.onCorrection(next);
    }
  }
}
