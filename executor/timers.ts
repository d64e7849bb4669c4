/** Abortable sleeps and a wake-up trigger for the daemon's loops. */

export function abortError(): Error {
  const e = new Error("the executor is stopping");
  e.name = "AbortError";
  return e;
}

/**
 * Wakes whoever is sleeping on it (e.g. "the renewal schedule changed, re-plan").
 * A fire with nobody asleep is remembered, so the next sleep ends at once.
 */
export class Trigger {
  private readonly listeners = new Set<() => void>();
  private pending = false;
  /** Calls `fn` at the next `fire()` (at once if one is pending); returns the unsubscribe function. */
  once(fn: () => void): () => void {
    if (this.pending) {
      this.pending = false;
      queueMicrotask(fn);
      return () => {};
    }
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }
  fire(): void {
    if (this.listeners.size === 0) {
      this.pending = true;
      return;
    }
    const fns = [...this.listeners];
    this.listeners.clear();
    for (const fn of fns) fn();
  }
}

/**
 * Waits `ms`, or less when `wake` fires (resolves "woken") or `signal` aborts
 * (rejects with an AbortError). Timers are unref'd only by the caller's choice:
 * a daemon wants them to keep the process alive.
 */
export function sleep(ms: number, signal?: AbortSignal, wake?: Trigger): Promise<"timeout" | "woken"> {
  if (signal?.aborted) return Promise.reject(abortError());
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => done(() => resolve("timeout")), Math.max(0, ms));
    const onAbort = () => done(() => reject(abortError()));
    let finished = false;
    let unsubscribe = () => {};
    function done(fn: () => void) {
      if (finished) return;
      finished = true;
      clearTimeout(timer);
      signal?.removeEventListener("abort", onAbort);
      unsubscribe();
      fn();
    }
    signal?.addEventListener("abort", onAbort, { once: true });
    if (wake) unsubscribe = wake.once(() => done(() => resolve("woken")));
  });
}
