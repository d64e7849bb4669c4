/**
 * The daemon's TLS sessions and how its client connects (executor/client.ts uses both):
 * the latest session of each controller origin, resumed while the certificate and key
 * stay the same, and undici's connector with the daemon's connect timeouts.
 */
import type { Socket } from "node:net";
import { buildConnector, errors as undiciErrors } from "./undici.ts";

/**
 * The latest TLS session (a TLS 1.3 ticket) of each controller origin, for one client
 * certificate and key: a new connection resumes it — also after the controller
 * restarted, and on another replica sharing its ticket keys (docs/security.md "TLS session
 * resumption") — so a reconnect skips the asymmetric part of the handshake on both
 * sides. undici's own session cache holds sessions weakly (lost at the next garbage
 * collection) and would not survive a new agent; this one is held as long as the
 * certificate and key are. A resumed connection presents the certificate of the
 * handshake it resumes, so a new certificate or key always starts afresh.
 */
export class TlsSessions {
  private readonly byOrigin = new Map<string, Buffer>();
  /** More than any controller URL list; the oldest origin goes first. */
  static readonly MAX_ORIGINS = 32;

  get(origin: string): Buffer | undefined {
    return this.byOrigin.get(origin);
  }

  set(origin: string, session: Buffer): void {
    this.byOrigin.delete(origin);
    this.byOrigin.set(origin, session);
    if (this.byOrigin.size > TlsSessions.MAX_ORIGINS) this.byOrigin.delete(this.byOrigin.keys().next().value!);
  }

  delete(origin: string): void {
    this.byOrigin.delete(origin);
  }

  get size(): number {
    return this.byOrigin.size;
  }
}

/** A TLS failure a stale session might cause (not a refused, reset or timed-out connect). */
export function staleSessionFailure(e: unknown): boolean {
  const code = (e as { code?: unknown })?.code;
  return typeof code === "string" && /^ERR_(SSL|TLS)_/.test(code);
}

/**
 * How long a new connection may take: the TCP connection (a controller that is down or
 * unreachable is given up on this soon), and the whole TLS handshake (a controller that
 * accepted the connection but is opening others first — after a restart, when the whole
 * fleet reconnects at once — serves it in turn; docs/protocol.md "When the controller is
 * saturated").
 */
export const CONNECT_TIMEOUTS = { tcpMs: 10_000, tlsMs: 30_000 } as const;

/**
 * undici's connector (same TLS options, SNI and keep-alive), with the timeouts above,
 * offering the origin's latest session and keeping every new one.
 */
export function resumingConnector(tlsOptions: buildConnector.BuildOptions, sessions: TlsSessions): buildConnector.connector {
  return (opts, callback) => {
    const origin = `${opts.protocol}//${opts.servername ?? opts.hostname}|${opts.hostname}:${opts.port}`;
    const session = sessions.get(origin);
    const connect = buildConnector({ ...tlsOptions, timeout: CONNECT_TIMEOUTS.tlsMs, maxCachedSessions: 0, ...(session ? { session } : {}) });
    let tcpTimer: NodeJS.Timeout | undefined;
    // undici's connector returns the socket (its type says void).
    const socket = connect(opts, (err: Error | null, s: Socket | null) => {
      clearTimeout(tcpTimer);
      if (err || !s) {
        if (session && staleSessionFailure(err)) sessions.delete(origin);
        return callback(err ?? new Error("no socket"), null);
      }
      s.on("session", (x: Buffer) => sessions.set(origin, x));
      callback(null, s);
    }) as unknown as Socket | undefined;
    if (socket && socket.connecting) {
      tcpTimer = setTimeout(() => socket.destroy(new undiciErrors.ConnectTimeoutError(`TCP connect timed out after ${CONNECT_TIMEOUTS.tcpMs} ms`)), CONNECT_TIMEOUTS.tcpMs);
      tcpTimer.unref();
      socket.once("connect", () => clearTimeout(tcpTimer));
    }
  };
}
