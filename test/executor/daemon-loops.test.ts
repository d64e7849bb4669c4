/**
 * The daemon's loops driven on a fake clock: `sleep` is injected and records each
 * delay, `random` is fixed, the step is a plain function. Pins the pacing the
 * reactions cannot see: a failure that gets past them (say, an answer the daemon
 * cannot use) must not make the heartbeat loop retry at a constant rate.
 */
import { describe, expect, it } from "vitest";
import { heartbeatLoop } from "../../executor/daemon/loops.ts";
import { abortError, isAbortError, Trigger } from "../../executor/timers.ts";

/** Runs the heartbeat loop over `outcomes` (one per beat) and returns the delay before each beat. */
async function heartbeatDelays(outcomes: ("ok" | "fail")[]): Promise<number[]> {
  const delays: number[] = [];
  let beats = 0;
  const errors: unknown[] = [];
  await heartbeatLoop({
    random: () => 0.5,
    backoff: { baseMs: 100, capMs: 400, factor: 2 },
    signal: new AbortController().signal,
    wake: new Trigger(),
    // The fake clock: no time passes; after the last scripted beat the daemon "stops".
    sleep: async (ms) => {
      if (delays.push(ms) > outcomes.length) throw abortError();
      return "timeout";
    },
    beat: async () => {
      if (outcomes[beats++] === "fail") throw new TypeError("the heartbeat answer is unusable");
      return 2; // next_heartbeat_s
    },
    onError: (e) => {
      errors.push(e);
      return isAbortError(e);
    },
  });
  expect(beats).toBe(outcomes.length);
  expect(errors.filter((e) => !isAbortError(e))).toHaveLength(outcomes.filter((o) => o === "fail").length);
  return delays.slice(0, outcomes.length);
}

describe("heartbeat loop pacing", () => {
  it("one backoff owned by the loop: consecutive failures grow to the cap with jitter, a success resets it", async () => {
    // Equal jitter with random 0.5 is 3/4 of the step: 100 → 75, 200 → 150, 400 (the cap) → 300.
    const delays = await heartbeatDelays(["fail", "fail", "fail", "fail", "ok", "fail", "fail", "ok"]);
    expect(delays).toEqual([
      0, //         the first beat goes at once
      75, //        after failure 1
      150, //       after failure 2
      300, //       after failure 3: the cap
      300, //       after failure 4: stays at the cap
      2000, //      after a success: the controller's interval (2 s, jitter 0 at random 0.5)
      75, //        the backoff starts over
      150,
    ]);
  });

  it("a loop of successes beats at the controller's interval", async () => {
    expect(await heartbeatDelays(["ok", "ok", "ok"])).toEqual([0, 2000, 2000]);
  });
});
