/**
 * What one client can hold open before it has proven anything (docs/security.md "Network
 * bounds, TLS and error shapes"): connections in total and per source, and how long a
 * TLS handshake, the headers and a whole request may take. Node enforces all of them;
 * this file sizes them and wires them to the server.
 */
import type { Server } from "node:https";
import type { Socket } from "node:net";
import type { FastifyBaseLogger } from "fastify";
import { sourceKey } from "../domain/source-address.ts";

export interface NetworkBounds {
  /** Open connections in total; past it a new one is closed before TLS. 0: no cap. */
  maxConnections: number;
  /** Open connections per source (an IPv4 address, an IPv6 /64); 0: no cap (the benchmark only). */
  maxConnectionsPerAddress: number;
  /** A TLS handshake must finish this soon after the TCP connection opened. */
  tlsHandshakeTimeoutMs: number;
  /** A request's line and headers must arrive this soon (also the first request of a new connection). */
  headersTimeoutMs: number;
  /** A whole request, headers and body, must arrive this soon; answering it may take longer (long polls). */
  requestTimeoutMs: number;
  /** Body limit of POST /v1/executors/register; the other executor routes keep 64 KiB (PROTOCOL §1). */
  registerBodyLimitBytes: number;
  /** Connections in their TLS handshake at once (opening-gate.ts); later ones wait their turn. 0: no gate. */
  maxConnectionsOpening: number;
  /** The longest a new connection waits for its turn; one that waited longer is closed before TLS. */
  openingQueueMs: number;
}

/**
 * The largest legitimate /register body: a `csr_pem` at its 16,384-character schema limit
 * with CRLF line ends (≤ 248 lines, each CRLF escaped to 4 bytes: +496), a 256-character
 * token, a 64-character name, `capacity` and the JSON around them (+400) — 17,264 bytes
 * measured. Real CSRs of the accepted key types are under 1 KiB, which leaves ~16 KiB
 * for labels.
 */
export const REGISTER_BODY_LIMIT_BYTES = 16_384 + 496 + 400;

export const DEFAULT_NETWORK_BOUNDS: NetworkBounds = {
  // 10,000 executors × 2 keep-alive connections, plus operators and reconnections.
  maxConnections: 25_000,
  // Room for a NAT or an egress proxy in front of ~500 executors; one address cannot take the global cap.
  maxConnectionsPerAddress: 1_024,
  tlsHandshakeTimeoutMs: 10_000,
  headersTimeoutMs: 10_000,
  requestTimeoutMs: 15_000,
  registerBodyLimitBytes: REGISTER_BODY_LIMIT_BYTES,
  // Off: in the 10,000-executor benchmark the gate (at 64) did not shorten the restart storm
  // (48 s against 51 s without it, the same hour), and its rotation phase had 11,160 failed
  // requests (connections queued past 20 s) where the same phase without it had none — a
  // slot leak since fixed (opening-gate.ts release) but not yet measured again at that
  // scale. 64 is the value it was measured with.
  maxConnectionsOpening: 0,
  // Under the daemon's 30 s for a TLS handshake (executor/tls-sessions.ts CONNECT_TIMEOUTS), with room for the handshake itself.
  openingQueueMs: 20_000,
};

/** Options for `https.createServer` (TLS and HTTP); `requestTimeout` is fastify's own option. */
export function serverTimeouts(b: NetworkBounds) {
  return {
    handshakeTimeout: b.tlsHandshakeTimeoutMs,
    headersTimeout: b.headersTimeoutMs,
    // Node checks the header and request deadlines on this interval (default 30 s, which would stretch them).
    connectionsCheckingInterval: Math.min(1_000, Math.max(50, Math.floor(b.headersTimeoutMs / 4))),
  };
}

export function checkNetworkBounds(b: NetworkBounds): void {
  for (const name of Object.keys(DEFAULT_NETWORK_BOUNDS) as (keyof NetworkBounds)[]) {
    const v = b[name];
    const min = name.startsWith("maxConnections") ? 0 : 1; // a cap of 0 is no cap; a zero timeout or limit is a mistake
    if (!Number.isSafeInteger(v) || v < min) throw new Error(`${name} must be a whole number ≥ ${min} (got ${v})`);
  }
  if (b.requestTimeoutMs < b.headersTimeoutMs) throw new Error("requestTimeoutMs must be ≥ headersTimeoutMs");
}

/**
 * Caps open connections. Refused connections are closed at once, before TLS: a refusal
 * costs no handshake, and the client sees a closed connection (a network error to retry).
 * A warning with the count is logged at most once a minute.
 */
export function limitConnections(server: Server, b: NetworkBounds, log: FastifyBaseLogger): void {
  const refused = { total: 0, perAddress: 0, lastWarnMs: 0 };
  const note = (kind: "total" | "perAddress") => {
    refused[kind]++;
    const now = Date.now();
    if (now - refused.lastWarnMs < 60_000) return;
    log.warn({ refused_total_cap: refused.total, refused_per_address_cap: refused.perAddress, max_connections: b.maxConnections, max_connections_per_address: b.maxConnectionsPerAddress }, "connections refused at a cap");
    refused.total = refused.perAddress = 0;
    refused.lastWarnMs = now;
  };
  if (b.maxConnections > 0) {
    server.maxConnections = b.maxConnections;
    server.on("drop", () => note("total"));
  }
  if (b.maxConnectionsPerAddress <= 0) return;
  const open = new Map<string, number>();
  server.on("connection", (socket: Socket) => {
    const key = socket.remoteAddress === undefined ? undefined : sourceKey(socket.remoteAddress);
    if (key === undefined) return void socket.destroy();
    const n = (open.get(key) ?? 0) + 1;
    if (n > b.maxConnectionsPerAddress) {
      note("perAddress");
      return void socket.destroy();
    }
    open.set(key, n);
    socket.once("close", () => {
      const left = (open.get(key) ?? 1) - 1;
      if (left > 0) open.set(key, left);
      else open.delete(key);
    });
  });
}

/**
 * The listen backlog asked for: connections the kernel completes and holds until the
 * controller accepts them. Node's default (511) overflows when thousands of executors
 * reconnect at once (after a controller restart): the kernel then drops their SYNs and
 * they wait out TCP's retransmission timer (1 s, 3 s, 7 s…) towards their connect timeout
 * while the controller may be idle. Linux caps it at net.core.somaxconn (4096 by
 * default) without complaint, so a host that raises that gets the larger queue.
 */
export const LISTEN_BACKLOG = 65_535;
