/**
 * The four parts of undici the executor's client uses — Agent, request, buildConnector,
 * errors — each loaded from its own module. `import … from "undici"` runs undici's
 * index.js, which also loads fetch, WebSocket, EventSource, the cache stores, the mock,
 * proxy and retry agents and every interceptor: ~110 modules and ~15 MB resident in a
 * process that uses none of them. These four are ~25 modules and ~7 MB (most of it the
 * llhttp WebAssembly parser, which any HTTP/1.1 client of undici's needs).
 *
 * They are the very module instances undici's index exports (one require cache), so
 * `instanceof errors.X` and undici's behaviour are unchanged; the types are undici's own
 * declarations. The paths are undici 7's file layout: a version that moves them fails at
 * the first import, loudly, in every daemon test (test/executor/daemon-modules.test.ts
 * checks that the daemon does not load undici's index).
 */
import { createRequire } from "node:module";
import type * as Undici from "undici";

const load = createRequire(import.meta.url);

export const Agent = load("undici/lib/dispatcher/agent.js") as typeof Undici.Agent;
export type Agent = Undici.Agent;

export const errors = load("undici/lib/core/errors.js") as typeof Undici.errors;

export const buildConnector = load("undici/lib/core/connect.js") as typeof Undici.buildConnector;
export declare namespace buildConnector {
  type BuildOptions = Undici.buildConnector.BuildOptions;
  type connector = Undici.buildConnector.connector;
  type Callback = Undici.buildConnector.Callback;
  type Options = Undici.buildConnector.Options;
}

type RequestOptions = Omit<Undici.Dispatcher.RequestOptions, "origin" | "path" | "method"> &
  Partial<Pick<Undici.Dispatcher.RequestOptions, "method">> & { dispatcher: Undici.Dispatcher };

const dispatcherRequest = load("undici/lib/api/api-request.js") as (
  this: Undici.Dispatcher,
  opts: Undici.Dispatcher.RequestOptions,
) => Promise<Undici.Dispatcher.ResponseData>;

/**
 * undici's `request(url, options)` (its index wraps the same function) for what the client
 * sends: an absolute URL and always its own `dispatcher` — never undici's global one.
 */
export function request(url: string | URL, options: RequestOptions): Promise<Undici.Dispatcher.ResponseData> {
  const { dispatcher, ...opts } = options;
  if (!dispatcher) throw new TypeError("request: a dispatcher is required");
  const u = new URL(url);
  return dispatcherRequest.call(dispatcher, { ...opts, origin: u.origin, path: `${u.pathname}${u.search}`, method: opts.method ?? "GET" });
}
