/**
 * The `--metrics-listen` listener of the controller and the executor daemon (PROTOCOL
 * §9.1): plain HTTP, apart from the TLS API, answering `GET /metrics` with the Prometheus
 * text format and nothing else. It carries no secret and takes no input, but it is not
 * authenticated either: bind it to loopback or a private interface.
 */
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";

/** What the listener serves: a registry's exposition (prom-client's Registry fits). */
export interface Exposition {
  readonly contentType: string;
  metrics(): Promise<string>;
}

export interface ListenAddress {
  host: string;
  port: number;
}

export interface MetricsListener {
  /** http://HOST:PORT/metrics, with the port actually bound (`--metrics-listen 127.0.0.1:0`). */
  url: string;
  port: number;
  close(): Promise<void>;
}

export const METRICS_PATH = "/metrics";
/** Scrapers keep one connection or two; more are refused rather than held. */
const MAX_CONNECTIONS = 64;

export function serveMetrics(source: Exposition, at: ListenAddress, onError: (e: unknown) => void = () => {}): Promise<MetricsListener> {
  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    const path = (req.url ?? "").split("?")[0];
    if (path !== METRICS_PATH) return answer(res, 404, `not found: the only path here is ${METRICS_PATH}\n`);
    if (req.method !== "GET" && req.method !== "HEAD") return answer(res, 405, "method not allowed\n", { allow: "GET, HEAD" });
    source.metrics().then(
      (text) => answer(res, 200, req.method === "HEAD" ? "" : text, { "content-type": source.contentType }),
      (e: unknown) => {
        // Collectors report what they could on their own; reaching here is a bug, never a secret for the scraper.
        onError(e);
        answer(res, 500, "metrics could not be collected\n");
      },
    );
  });
  server.maxConnections = MAX_CONNECTIONS;
  server.headersTimeout = 10_000;
  server.requestTimeout = 30_000;
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen({ host: at.host, port: at.port }, () => {
      server.off("error", reject);
      server.on("error", onError);
      const address = server.address() as AddressInfo;
      const host = address.family === "IPv6" ? `[${address.address}]` : address.address;
      resolve({
        url: `http://${host}:${address.port}${METRICS_PATH}`,
        port: address.port,
        close: () =>
          new Promise<void>((done) => {
            server.close(() => done());
            server.closeAllConnections();
          }),
      });
    });
  });
}

function answer(res: ServerResponse, status: number, body: string, headers: Record<string, string> = {}): void {
  if (res.headersSent) return;
  res.writeHead(status, { "content-type": "text/plain; charset=utf-8", ...headers, "cache-control": "no-store" });
  res.end(body);
}
