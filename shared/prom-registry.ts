/**
 * A Prometheus registry with the client library's process and Node.js metrics
 * (process_cpu_seconds_total, process_resident_memory_bytes, nodejs_eventloop_lag_seconds,
 * …) — less the three gauges whose `_total` names `promtool check metrics` refuses
 * (a `_total` suffix is for counters): their twins without the suffix stay.
 */
import { collectDefaultMetrics, Registry } from "prom-client";

const LINT_FAILURES = ["nodejs_active_handles_total", "nodejs_active_requests_total", "nodejs_active_resources_total"];

export function newRegistry(): Registry {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  for (const name of LINT_FAILURES) registry.removeSingleMetric(name);
  return registry;
}

/** Label values a peer can influence (an error code from an answer) are kept to this shape, else "OTHER". */
const CODE = /^[A-Z][A-Z0-9_]{0,63}$/;

/**
 * Bounds a label taken from outside: a well-formed code, and at most `max` distinct ones
 * in a process's life; anything else is "OTHER". A peer cannot grow the series without end.
 */
export function boundedLabel(max: number): (value: string) => string {
  const seen = new Set<string>();
  return (value) => {
    if (!CODE.test(value)) return "OTHER";
    if (seen.has(value)) return value;
    if (seen.size >= max) return "OTHER";
    seen.add(value);
    return value;
  };
}
