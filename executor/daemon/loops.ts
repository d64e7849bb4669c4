/**
 * The daemon's two loops and their pacing:
 *
 *   heartbeat  every `next_heartbeat_s` (±10 %); after a failure that got past the
 *              reactions, a backoff owned by the loop (consecutive failures grow to
 *              the cap, with jitter; a success resets it);
 *   renewal    sleeps until the next credential is due (or the plan changes), renews it,
 *              and backs off when a renewed credential is due again at once.
 *
 * `sleep` is injectable so a test can drive a loop on a fake clock.
 */
import type { Logger } from "pino";
import { Backoff, heartbeatDelay, type BackoffOptions, type Random } from "../backoff.ts";
import { delayUntil } from "../renew-timing.ts";
import { sleep as realSleep, type Trigger } from "../timers.ts";
import type { RenewalPlanner } from "./renewal-plan.ts";

export interface LoopDeps {
  random: Random;
  backoff: BackoffOptions;
  /** The daemon's stop signal. */
  signal: AbortSignal;
  /** Re-plan / act now. */
  wake: Trigger;
  /** A failure got out of the step: true when the loop must end (stopping, or a terminal error). */
  onError(e: unknown, loop: string): boolean;
  sleep?: typeof realSleep;
}

/** Heartbeats until stopped. `beat` sends one and returns the controller's next interval (s). */
export async function heartbeatLoop(d: LoopDeps & { beat(): Promise<number> }): Promise<void> {
  const sleep = d.sleep ?? realSleep;
  const failures = new Backoff(d.backoff, d.random);
  let delay = 0;
  for (;;) {
    try {
      await sleep(delay, d.signal, d.wake);
      const nextS = await d.beat();
      failures.reset();
      delay = heartbeatDelay(nextS, d.random);
    } catch (e) {
      if (d.onError(e, "heartbeat")) return;
      delay = failures.next();
    }
  }
}

/** Renews the JWT and the certificate when the planner says they are due, until stopped. */
export async function renewalLoop(
  d: LoopDeps & {
    log: Logger;
    now: () => number;
    planner: Pick<RenewalPlanner, "next" | "dueAt">;
    /** Renews the certificate (`cert`) or the JWT, with the reactions applied. */
    renew(cert: boolean): Promise<void>;
  },
): Promise<void> {
  const sleep = d.sleep ?? realSleep;
  const tooSoon = new Backoff(d.backoff, d.random);
  for (;;) {
    try {
      const next = d.planner.next();
      const wait = next ? delayUntil(next.atMs, d.now()) : 60_000;
      if (!next || wait > 0) {
        await sleep(wait, d.signal, d.wake);
        continue; // re-plan: hints or credentials may have changed
      }
      await d.renew(next.cert);
      // The credential just renewed being due again at once (a clock far off) must not spin.
      if (d.planner.dueAt(next.cert, d.now())) {
        const delay = tooSoon.next();
        d.log.warn({ event: "renewal.due_again", delay_ms: delay }, "the renewed credential is already due for renewal; check the clocks");
        await sleep(delay, d.signal);
      } else tooSoon.reset();
    } catch (e) {
      if (d.onError(e, "renewal")) return;
      await sleep(tooSoon.next(), d.signal).catch(() => {});
    }
  }
}
