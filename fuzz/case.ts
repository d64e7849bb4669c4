/** One fuzz case: the exact bytes sent, as whom, and what the oracle may accept back. */
import type { HttpResponse } from "./http1.ts";
import type { Identity } from "./transport.ts";
import type { ExecutorState } from "./world.ts";

export type Plane = "executor" | "register" | "operator" | "public" | "dev";

export interface Expectation {
  /** Why a 2xx to this request would be a guard bypass; undefined when a 2xx is allowed. */
  mustNotPass?: string;
  /** The one status the contract gives this request (besides 503/429, which any request may get). */
  status?: number;
}

export interface Case {
  n: number;
  /** The route as declared (`POST /v1/executors/:id/heartbeat`), or what a raw case started from. */
  label: string;
  plane: Plane;
  /** Every change made to an otherwise correct request, in words, for the report. */
  what: string[];
  identity: Identity;
  identityDesc: string;
  bytes: Buffer;
  /** Sent on a connection of its own and judged as raw bytes (framing may be broken). */
  raw: boolean;
  head: boolean;
  timeoutMs: number;
  /** Raw: how long to wait for an answer before half-closing (the request may be incomplete). */
  nudgeMs?: number;
  /** By response (pipelined requests get several); responses beyond the list: a 2xx is allowed. */
  expect: Expectation[];
  /** Why a 2xx would be a bypass, decided when the request is sent (revocations, expiries, stale epochs). */
  dynamic?: (sentAt: number) => string | undefined;
  /** Changes credentials when it succeeds: runs under this executor's lock. */
  lock?: ExecutorState;
  /** Updates the model after a 2xx; returns a failure message when the answer itself breaks the contract. */
  onSuccess?: (res: HttpResponse, sentAt: number) => string | undefined;
  /**
   * State the request may change, for as long as it is in flight: `start` before it is sent,
   * `end` once handled — `certain` false when the model cannot learn what happened (raw
   * bytes are not parsed back; a request without an answer may still have been served).
   */
  track?: { start(): void; end(certain: boolean): void };
  /** After any answer (e.g. remember a nonce refused for its signature); a failure message when it breaks the contract. */
  onAnswer?: (res: HttpResponse) => string | undefined;
  /** Executor plane: whose credentials (a 2xx is remembered for replay cases). */
  executorId?: string;
  /** Every credential the route needs was correct and unmodified (stats: how often handlers are reached). */
  authenticated: boolean;
}
