/** What the orchestrator (bench/run.ts) hands each load-generator thread (bench/worker.ts). */
export interface WorkerInit {
  /** file: URL of worker.ts, imported by worker-entry.mjs after registering tsx. */
  module: string;
  port: number;
  caPem: string;
  /** This worker's number and the number of workers. */
  index: number;
  workers: number;
  /** The shard: global executor indices [start, start + count). */
  start: number;
  count: number;
}
