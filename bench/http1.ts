/**
 * A minimal HTTP/1.1 client over one TLS connection, for the load generator only.
 * One request in flight at a time (no pipelining), keep-alive, responses framed by
 * content-length (or chunked, or read-until-close). It exists because a full HTTP
 * client per simulated executor (10,000 of them) would make the generator, not the
 * controller, the bottleneck; it is not a general-purpose client.
 */
import { connect as netConnect } from "node:net";
import { connect, type SecureContext, type TLSSocket } from "node:tls";

export interface Res {
  status: number;
  headers: Record<string, string>;
  body: string;
}

export class TransportError extends Error {
  constructor(
    message: string,
    readonly code: string,
  ) {
    super(message);
    this.name = "TransportError";
  }
}

interface Pending {
  resolve(r: Res): void;
  reject(e: Error): void;
  deadline: number;
}

const CRLFCRLF = Buffer.from("\r\n\r\n");

export interface ConnectOptions {
  port: number;
  host?: string;
  servername?: string;
  secureContext: SecureContext;
  /** The TCP connection must be made this soon… */
  timeoutMs: number;
  /** …and the whole TLS handshake this soon (default: timeoutMs), as the daemon's client (executor/tls-sessions.ts CONNECT_TIMEOUTS). */
  handshakeTimeoutMs?: number;
  /** A TLS session from an earlier connection to resume (as the daemon's client does, executor/client.ts). */
  session?: Buffer;
  /** Each session (TLS 1.3 ticket) the server sends on this connection. */
  onSession?: (session: Buffer) => void;
}

/**
 * Opens a TLS connection; resolves once the handshake is done. The TCP connection comes
 * first and TLS is set up on it only once it is made: a refused or timed-out connect —
 * thousands a second while a restarted controller is down — then costs the generator a
 * bare socket, not a TLS socket with its session parsed (which saturated the generator's
 * threads in the 10,000-executor restart storm; a real daemon makes one attempt at a time).
 */
export function openConnection(opts: ConnectOptions): Promise<Conn> {
  return new Promise((resolve, reject) => {
    let settled = false;
    let socket: TLSSocket | undefined;
    const tcp = netConnect({ host: opts.host ?? "127.0.0.1", port: opts.port });
    const handshakeMs = Math.max(opts.timeoutMs, opts.handshakeTimeoutMs ?? opts.timeoutMs);
    const timer = setTimeout(() => fail(new TransportError(`TLS handshake not done after ${handshakeMs} ms`, "HANDSHAKE_TIMEOUT")), handshakeMs);
    const tcpTimer = setTimeout(() => fail(new TransportError(`TCP connect timed out after ${opts.timeoutMs} ms`, "CONNECT_TIMEOUT")), opts.timeoutMs);
    const fail = (e: Error) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      clearTimeout(tcpTimer);
      socket?.destroy();
      tcp.destroy();
      reject(e instanceof TransportError ? e : new TransportError(e.message, (e as NodeJS.ErrnoException).code ?? "CONNECT_ERROR"));
    };
    tcp.once("error", fail);
    tcp.once("connect", () => {
      clearTimeout(tcpTimer);
      if (settled) return;
      tcp.removeListener("error", fail);
      const tls = connect({ socket: tcp, servername: opts.servername ?? "localhost", secureContext: opts.secureContext, session: opts.session });
      socket = tls;
      if (opts.onSession) tls.on("session", opts.onSession);
      tls.once("error", fail);
      tls.once("close", () => fail(new TransportError("connection closed during the handshake", "CLOSED")));
      tls.once("secureConnect", () => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        tls.removeListener("error", fail);
        resolve(new Conn(tls));
      });
    });
  });
}

export class Conn {
  private buf: Buffer | null = null;
  private pending: Pending | null = null;
  private closed = false;
  /** Called once when the connection closes (by either side). */
  onClose: (() => void) | null = null;

  constructor(readonly socket: TLSSocket) {
    socket.setNoDelay(true);
    socket.on("data", (d: Buffer) => this.onData(d));
    socket.on("error", () => socket.destroy());
    socket.on("close", () => {
      this.closed = true;
      const p = this.pending;
      this.pending = null;
      // A response framed by connection close ends here.
      if (p) {
        const res = this.buf ? this.parseUntilClose(this.buf) : undefined;
        if (res) p.resolve(res);
        else p.reject(new TransportError("connection closed before the response", "CLOSED"));
      }
      this.buf = null;
      this.onClose?.();
    });
  }

  get isOpen(): boolean {
    return !this.closed && !this.socket.destroyed;
  }

  get busy(): boolean {
    return this.pending !== null;
  }

  /** Sends one complete request (head + body bytes) and resolves with the response. */
  request(raw: string | Buffer, timeoutMs: number): Promise<Res> {
    if (!this.isOpen) return Promise.reject(new TransportError("connection is closed", "CLOSED"));
    if (this.pending) return Promise.reject(new Error("a request is already in flight on this connection"));
    return new Promise((resolve, reject) => {
      this.pending = { resolve, reject, deadline: performance.now() + timeoutMs };
      this.socket.write(raw);
    });
  }

  /** Fails the in-flight request when its deadline has passed (called from one sweep timer per worker). */
  checkTimeout(now: number): void {
    if (this.pending && now > this.pending.deadline) {
      const p = this.pending;
      this.pending = null;
      p.reject(new TransportError("request timed out", "TIMEOUT"));
      this.socket.destroy();
    }
  }

  close(): void {
    this.socket.destroy();
  }

  private onData(d: Buffer): void {
    this.buf = this.buf ? Buffer.concat([this.buf, d]) : d;
    if (!this.pending) {
      // Unsolicited bytes (e.g. a 408 before close): drop them.
      this.buf = null;
      return;
    }
    const res = this.tryParse(this.buf);
    if (res === undefined) return;
    const p = this.pending;
    this.pending = null;
    this.buf = null;
    if (res.headers.connection?.toLowerCase() === "close") this.socket.end();
    p.resolve(res);
  }

  private head(buf: Buffer): { status: number; headers: Record<string, string>; bodyStart: number } | undefined {
    const end = buf.indexOf(CRLFCRLF);
    if (end < 0) return undefined;
    const lines = buf.toString("latin1", 0, end).split("\r\n");
    const status = Number(lines[0]!.split(" ")[1]);
    const headers: Record<string, string> = {};
    for (let i = 1; i < lines.length; i++) {
      const line = lines[i]!;
      const c = line.indexOf(":");
      if (c > 0) headers[line.slice(0, c).toLowerCase()] = line.slice(c + 1).trim();
    }
    return { status, headers, bodyStart: end + 4 };
  }

  private tryParse(buf: Buffer): Res | undefined {
    const h = this.head(buf);
    if (!h) return undefined;
    const cl = h.headers["content-length"];
    if (cl !== undefined) {
      const len = Number(cl);
      if (buf.length - h.bodyStart < len) return undefined;
      return { status: h.status, headers: h.headers, body: buf.toString("utf8", h.bodyStart, h.bodyStart + len) };
    }
    if (h.headers["transfer-encoding"]?.toLowerCase().includes("chunked")) {
      const parts: Buffer[] = [];
      let at = h.bodyStart;
      for (;;) {
        const eol = buf.indexOf("\r\n", at);
        if (eol < 0) return undefined;
        const size = parseInt(buf.toString("latin1", at, eol), 16);
        if (!Number.isFinite(size)) throw new TransportError("bad chunk", "PROTOCOL");
        if (size === 0) {
          if (buf.indexOf(CRLFCRLF, eol) < 0 && buf.length < eol + 4) return undefined;
          return { status: h.status, headers: h.headers, body: Buffer.concat(parts).toString("utf8") };
        }
        if (buf.length < eol + 2 + size + 2) return undefined;
        parts.push(buf.subarray(eol + 2, eol + 2 + size));
        at = eol + 2 + size + 2;
      }
    }
    if (h.status === 204 || h.status === 304) return { status: h.status, headers: h.headers, body: "" };
    return undefined; // framed by close
  }

  private parseUntilClose(buf: Buffer): Res | undefined {
    const h = this.head(buf);
    if (!h || h.headers["content-length"] !== undefined || h.headers["transfer-encoding"] !== undefined) return undefined;
    return { status: h.status, headers: h.headers, body: buf.toString("utf8", h.bodyStart) };
  }
}

/** The bytes of one request. `headers` must not contain host or content-length. */
export function buildRequest(method: string, target: string, host: string, headers: Record<string, string>, body?: string): string {
  let head = `${method} ${target} HTTP/1.1\r\nhost: ${host}\r\n`;
  for (const k in headers) head += `${k}: ${headers[k]}\r\n`;
  if (body !== undefined) head += `content-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\n`;
  return head + "\r\n" + (body ?? "");
}

/** The wire error code of a JSON error body, or HTTP_<status>. */
export function errorCode(res: Res): string {
  try {
    const code = (JSON.parse(res.body) as { error?: { code?: unknown } }).error?.code;
    if (typeof code === "string") return code;
  } catch {
    /* not JSON */
  }
  return `HTTP_${res.status}`;
}
