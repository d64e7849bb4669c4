/**
 * HTTP over a raw TLS (or TCP) socket, byte for byte: for what a well-behaved client
 * cannot send — broken framing, oversized headers, trickled bodies, handshakes that
 * never happen — and for reading exactly what the server wrote back.
 *
 *   const r = await rawExchange(port, "GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n");
 *   r.status; r.headers["connection"]; r.json; r.closed;   // closed: the server ended the connection
 *   const s = await openTls(port);  s.write(…);  await untilClosed(s);
 */
import { connect as tlsConnect, type ConnectionOptions, type TLSSocket } from "node:tls";
import { connect as tcpConnect, type Socket } from "node:net";

export interface RawResponse {
  /** Everything the server wrote, as text. */
  text: string;
  status?: number;
  headers: Record<string, string>;
  body: string;
  json: any;
  /** The server closed the connection (before `waitMs` ran out). */
  closed: boolean;
  /** Milliseconds from the first write to the close (or to giving up). */
  ms: number;
}

export function parseRaw(text: string): Pick<RawResponse, "status" | "headers" | "body" | "json"> {
  const end = text.indexOf("\r\n\r\n");
  const head = end < 0 ? text : text.slice(0, end);
  const body = end < 0 ? "" : text.slice(end + 4);
  const [statusLine = "", ...lines] = head.split("\r\n");
  const m = /^HTTP\/1\.[01] (\d{3})/.exec(statusLine);
  const headers: Record<string, string> = {};
  for (const l of lines) {
    const i = l.indexOf(":");
    if (i > 0) headers[l.slice(0, i).trim().toLowerCase()] = l.slice(i + 1).trim();
  }
  let json: unknown;
  try {
    json = JSON.parse(body);
  } catch {
    json = undefined;
  }
  return { status: m ? Number(m[1]) : undefined, headers, body, json };
}

/** A TLS connection to 127.0.0.1:port (handshake done), trusting anything: these tests are about the server's answers. */
export function openTls(port: number, opts: ConnectionOptions = {}): Promise<TLSSocket> {
  return new Promise((resolve, reject) => {
    const s = tlsConnect({ host: "127.0.0.1", port, servername: "localhost", rejectUnauthorized: false, ...opts }, () => resolve(s));
    s.once("error", reject);
  });
}

export function openTcp(port: number): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const s = tcpConnect(port, "127.0.0.1", () => resolve(s));
    s.once("error", reject);
  });
}

/** Collects what the server writes until it closes the connection or `waitMs` passes. */
export function untilClosed(socket: Socket, waitMs = 10_000): Promise<RawResponse> {
  const t0 = Date.now();
  return new Promise((resolve) => {
    let text = "";
    let done = false;
    const finish = (closed: boolean) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      socket.destroy();
      resolve({ text, ...parseRaw(text), closed, ms: Date.now() - t0 });
    };
    const timer = setTimeout(() => finish(false), waitMs);
    socket.on("data", (d: Buffer) => (text += d.toString("latin1")));
    socket.on("error", () => finish(true));
    socket.on("close", () => finish(true));
  });
}

/** Sends `data` on a new TLS connection and returns what came back by the time the server closed it. */
export async function rawExchange(port: number, data: string | Buffer, opts: ConnectionOptions & { waitMs?: number } = {}): Promise<RawResponse> {
  const { waitMs, ...tlsOpts } = opts;
  const s = await openTls(port, tlsOpts);
  const result = untilClosed(s, waitMs);
  s.write(data);
  return result;
}
