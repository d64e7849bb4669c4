/**
 * The controller's gauges, computed when scraped (prom-client `collect()`): executors by
 * liveness, tasks by status and nonces held — one store query per family, whatever the
 * size of the fleet — and the trust bundle from the CA set this process holds (no query),
 * plus adoption of a prepared CA (the query `GET /api/v1/ca` makes).
 *
 * A family whose query fails is reported empty (its samples left out, never a false 0)
 * while the others and the counters are still served with 200: an outage must not blind
 * the scrape that would show it. The failure is counted in tether_store_errors_total by
 * the store as it happens — visible from the next scrape, since a scrape reads its
 * counters while its gauges are still querying.
 */
import { Gauge, type Registry } from "prom-client";
import { ErrorCode, TetherError } from "../../shared/errors.ts";
import type { CaView } from "../../shared/wire/operator.ts";
import type { ControllerContext } from "../context.ts";
import type { ExecutorCounts, TaskCounts } from "../store/counts.ts";

/** Where the gauges read from (a ControllerContext, or a stand-in in a test). */
export interface GaugeSources {
  executorCounts(): Promise<ExecutorCounts>;
  taskCounts(): Promise<TaskCounts>;
  nonceCount(): Promise<number>;
  /** The CA set with adoption, as `GET /api/v1/ca` reports it (one query). */
  trustStatus(): Promise<{ cas: CaView[] }>;
  /** The CA set as this process holds it (reloaded within a second of any change): no query. */
  trustLoaded(): { version: number; cas: { fingerprint: string; state: string; notAfter: number }[] };
}

/**
 * How long a counted number of nonces is reused. Counting them reads the whole replay
 * store (millions of rows under load: ~0.1 s of CPU on the controller's own thread with
 * SQLite); it changes only by inserts and the pruning every minute, and the gauge is for
 * trends, so scrapes more frequent than this cost nothing more.
 */
export const NONCE_COUNT_REUSE_MS = 60_000;

/** `read` at most once per `ms`; a failed read is not kept. */
function reusedFor<T>(ms: number, read: () => Promise<T>): () => Promise<T> {
  let last: { at: number; value: Promise<T> } | undefined;
  return () => {
    const now = Date.now();
    if (!last || now - last.at >= ms) {
      const value = read();
      const entry = { at: now, value };
      last = entry;
      value.catch(() => {
        if (last === entry) last = undefined;
      });
    }
    return last.value;
  };
}

export function gaugeSources(ctx: ControllerContext): GaugeSources {
  return {
    executorCounts: () => ctx.executors.counts(),
    taskCounts: () => ctx.tasks.counts(),
    nonceCount: reusedFor(NONCE_COUNT_REUSE_MS, () => ctx.store.nonceCount()),
    trustStatus: () => ctx.cas.status(),
    trustLoaded: () => ({
      version: ctx.cas.version(),
      cas: ctx.cas.records().map((r) => ({ fingerprint: r.fingerprint, state: r.state, notAfter: r.notAfter })),
    }),
  };
}

/**
 * The live executors a prepared CA waits for (what blocks its activation, PROTOCOL §7.2),
 * 0 when none is prepared. Offline and revoked executors are not counted, as for activation.
 */
export function adoptionPending(cas: CaView[]): number {
  return cas.find((c) => c.state === "prepared")?.pending.length ?? 0;
}

/** Removes every sample of a gauge: a family that could not be read shows no value rather than a false one. */
function clear(g: Gauge<string>): void {
  g.reset();
  g.remove({});
}

export function controllerGauges(registry: Registry, src: GaugeSources, onError: (family: string, err: unknown) => void): void {
  const registers = [registry];
  /** Runs one family's read; on failure the family is cleared (outages are already counted by the store). */
  const read = async (family: string, g: Gauge<string>, fill: () => Promise<void>) => {
    try {
      await fill();
    } catch (err) {
      clear(g);
      if (!(err instanceof TetherError && err.code === ErrorCode.UNAVAILABLE)) onError(family, err);
    }
  };

  const executors: Gauge<"status"> = new Gauge({
    name: "tether_executors", help: "Executors by status, as the API reports it: ready, draining, suspect, offline, revoked.",
    labelNames: ["status"] as const, registers,
    collect: () => read("tether_executors", executors, async () => {
      const counts = await src.executorCounts();
      for (const [status, n] of Object.entries(counts)) executors.labels(status).set(n);
    }),
  });
  const tasks: Gauge<"status"> = new Gauge({
    name: "tether_tasks", help: "Tasks by status: queued, leased, succeeded, failed, cancelled.",
    labelNames: ["status"] as const, registers,
    collect: () => read("tether_tasks", tasks, async () => {
      const counts = await src.taskCounts();
      for (const [status, n] of Object.entries(counts)) tasks.labels(status).set(n);
    }),
  });
  const nonces: Gauge = new Gauge({
    name: "tether_nonces_stored", help: "Request nonces held by the replay store (kept at least 600 s, pruned every minute; counted at most once a minute).",
    registers,
    collect: () => read("tether_nonces_stored", nonces, async () => nonces.set(await src.nonceCount())),
  });
  const pending: Gauge = new Gauge({
    name: "tether_ca_adoption_pending",
    help: "Live executors that do not hold the prepared CA yet (what its activation waits for); 0 when no CA is prepared.",
    registers,
    collect: () => read("tether_ca_adoption_pending", pending, async () => pending.set(adoptionPending((await src.trustStatus()).cas))),
  });
  const expiry: Gauge<"fingerprint" | "state"> = new Gauge({
    name: "tether_ca_expiry_timestamp_seconds", help: "When each CA of the trust bundle expires (unix seconds), by SHA-256 fingerprint and state.",
    labelNames: ["fingerprint", "state"] as const, registers,
    collect: () => {
      // Rebuilt each time: a CA that left the bundle, or changed state, must not linger.
      expiry.reset();
      for (const ca of src.trustLoaded().cas) expiry.labels(ca.fingerprint, ca.state).set(Math.floor(ca.notAfter / 1000));
    },
  });
  const version: Gauge = new Gauge({
    name: "tether_trust_bundle_version", help: "The trust bundle version this controller serves (PROTOCOL §7.1).",
    registers,
    collect: () => version.set(src.trustLoaded().version),
  });
}
