/**
 * A store that cannot be read or written is an outage, never a refusal (PROTOCOL §5):
 * whatever a backend cannot do for a reason of its own (SQLite: locked past the busy
 * timeout, disk full, I/O error; later PostgreSQL down) reaches the caller as one
 * error, 503 UNAVAILABLE with Retry-After. The server's single error handler answers
 * it as it is, in a route or inside a guard — so an outage is never a 401/403, and
 * never a success.
 */
import { ErrorCode, TetherError } from "../../shared/errors.ts";

/** What the 503 tells clients to wait; the executor daemon backs off at least this much. */
export const STORE_RETRY_AFTER_S = 5;

export function storeUnavailable(cause?: unknown): TetherError {
  const e = new TetherError(503, ErrorCode.UNAVAILABLE, "the controller's store is unavailable; retry later", {
    headers: { "retry-after": String(STORE_RETRY_AFTER_S) },
  });
  e.cause = cause;
  return e;
}

/** Outages are reported at most this often (a flood of failing requests is one story). */
const REPORT_EVERY_MS = 10_000;

/**
 * The backend with every method's outage errors turned into `storeUnavailable()`,
 * thrown or rejected alike; other errors (bugs, constraint violations) pass unchanged.
 * `count` hears of every outage error (the metrics' tether_store_errors_total), `report`
 * of some (the log).
 */
export function failClosed<T extends object>(
  backend: T,
  isOutage: (e: unknown) => boolean,
  report?: (message: string) => void,
  count?: () => void,
): T {
  let lastReport = 0;
  let unreported = 0;
  const convert = (e: unknown): never => {
    if (!isOutage(e)) throw e;
    count?.();
    const now = Date.now();
    if (report && now - lastReport >= REPORT_EVERY_MS) {
      report(`${(e as Error).message}${unreported ? ` (and ${unreported} more store failures since the last report)` : ""}`);
      lastReport = now;
      unreported = 0;
    } else unreported++;
    throw storeUnavailable(e);
  };
  const wrapped = new Map<PropertyKey, unknown>();
  return new Proxy(backend, {
    get(target, prop) {
      const value: unknown = Reflect.get(target, prop);
      if (typeof value !== "function") return value;
      let w = wrapped.get(prop);
      if (!w) {
        w = (...args: unknown[]): unknown => {
          try {
            const r: unknown = value.apply(target, args);
            return r instanceof Promise ? r.catch(convert) : r;
          } catch (e) {
            return convert(e);
          }
        };
        wrapped.set(prop, w);
      }
      return w;
    },
  });
}
