/** Abortable sleeps and races, the AbortError test, a wake-up trigger and a one-shot latch for the daemon's loops. */

export function abortError(): Error {
  const e = new Error("the executor is stopping");
  e.name = "AbortError";
  return e;
}

/** Whether `e` is an abort: ours (`abortError()`), fetch/undici's, or a DOMException's. */
export function isAbortError(e: unknown): boolean {
  return (e as Error | undefined)?.name === "AbortError";
}

/** A promise opened once from outside: `open()` resolves `done` (later calls do nothing). */
export function latch(): { done: Promise<void>; open(): void } {
  let open = () => {};
  const done = new Promise<void>((resolve) => (open = resolve));
  return { done, open };
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

/** `p`, or an AbortError as soon as `signal` aborts (whatever `p` does later is ignored). */
export function raceAbort<T>(p: Promise<T>, signal: AbortSignal): Promise<T> {
  p.catch(() => {});
  if (signal.aborted) return Promise.reject(abortError());
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(abortError());
    signal.addEventListener("abort", onAbort, { once: true });
    p.then(
      (v) => {
        signal.removeEventListener("abort", onAbort);
        resolve(v);
      },
      (e) => {
        signal.removeEventListener("abort", onAbort);
        reject(e);
      },
    );
  });
}
