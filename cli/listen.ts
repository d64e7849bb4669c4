/** HOST:PORT options (`--listen`, `--metrics-listen`): `127.0.0.1:9464`, `[::1]:9464`, `localhost:0`. */
import { UsageError } from "./args.ts";
import { info } from "./command.ts";

export function parseListen(text: string, option = "--listen"): { host: string; port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:]+)):(\d{1,5})$/.exec(text);
  const port = m ? Number(m[3]) : NaN;
  if (!m || port > 65535) throw new UsageError(`${option} expects HOST:PORT, got "${text}"`);
  return { host: m[1] ?? m[2]!, port };
}

/**
 * Whether `host` is a loopback address or name (anything else deserves a warning: /metrics has no
 * authentication). Here, not next to the listener (shared/metrics-http.ts), so that parsing the
 * option does not load node:http into a daemon that serves no metrics.
 */
export function isLoopback(host: string): boolean {
  return host === "localhost" || host === "::1" || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(host);
}

/** `--metrics-listen`, when given; a warning when it is not loopback (the listener has no authentication). */
export function metricsListenOption(text: string | undefined): { host: string; port: number } | undefined {
  if (text === undefined) return undefined;
  const at = parseListen(text, "--metrics-listen");
  if (!isLoopback(at.host)) {
    info(`warning: --metrics-listen ${text}: /metrics has no authentication; bind it to loopback or a private interface only`);
  }
  return at;
}

export const METRICS_LISTEN_HELP =
  "serve Prometheus metrics at http://HOST:PORT/metrics (plain HTTP, no authentication: keep it on loopback, e.g. 127.0.0.1:9464); off by default";
