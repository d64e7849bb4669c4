/**
 * TLS connections to the controller, as a given identity (no client certificate, an
 * executor's, a forged one) from a given loopback source address. Well-formed
 * requests reuse keep-alive connections; raw (byte-mutated) requests get a
 * connection of their own, which is thrown away afterwards.
 */
import { connect as netConnect } from "node:net";
import { connect, type TLSSocket } from "node:tls";
import { parseAll, type HttpResponse } from "./http1.ts";

export interface Identity {
  /** Pool key: one per distinct certificate + source address. */
  key: string;
  cert?: { certPem: string; keyPem: string };
  /** A loopback source address (127.0.0.0/8), so per-address limits see many clients. */
  localAddress?: string;
  /** Offer at most TLS 1.2 (the contract's minimum) instead of 1.3. */
  tls12?: boolean;
}

export type Outcome =
  | { kind: "responses"; responses: HttpResponse[]; /** bytes after the last response that do not parse */ garbage?: string; closed: boolean }
  | {
      kind: "no-response";
      how: "closed" | "error" | "timeout";
      error?: string;
      /** The TLS handshake itself failed. */
      tls: boolean;
      /** Raw: nothing came back before the fuzzer half-closed (Node then drops a request still in progress). */
      afterHalfClose?: boolean;
    };

interface Conn {
  socket: TLSSocket;
  lastUsed: number;
}

/** Idle keep-alive connections older than this are not reused (the server may be closing them). */
const MAX_IDLE_MS = 2_000;
const MAX_IDLE_PER_KEY = 2;

export class Transport {
  private readonly idle = new Map<string, Conn[]>();
  private readonly open = new Set<TLSSocket>();
  private readonly sweeper: NodeJS.Timeout;
  connections = 0;

  constructor(
    readonly host: string,
    readonly port: number,
    private readonly caPem: string,
  ) {
    // Idle connections are closed by us, early: the fuzzer must not be what fills a per-address connection cap.
    this.sweeper = setInterval(() => {
      for (const [key, list] of this.idle) {
        const keep = list.filter((c) => !c.socket.destroyed && Date.now() - c.lastUsed < MAX_IDLE_MS);
        for (const c of list) if (!keep.includes(c)) c.socket.destroy();
        if (keep.length) this.idle.set(key, keep);
        else this.idle.delete(key);
      }
    }, 500);
    this.sweeper.unref();
  }

  private connect(id: Identity, timeoutMs: number): Promise<{ ok: true; socket: TLSSocket } | { ok: false; error: string }> {
    return new Promise((resolve) => {
      this.connections++;
      const tcp = netConnect({ host: this.host, port: this.port, localAddress: id.localAddress });
      const socket = connect({
        socket: tcp, host: this.host, ca: this.caPem, ...(id.tls12 ? { maxVersion: "TLSv1.2" as const } : {}),
        ...(id.cert ? { cert: id.cert.certPem, key: id.cert.keyPem } : {}),
      });
      tcp.once("error", (e) => socket.destroy(e));
      this.open.add(socket);
      socket.once("close", () => this.open.delete(socket));
      const timer = setTimeout(() => {
        socket.destroy();
        resolve({ ok: false, error: "TLS handshake timed out" });
      }, timeoutMs);
      socket.once("secureConnect", () => {
        clearTimeout(timer);
        resolve({ ok: true, socket });
      });
      socket.once("error", (e) => {
        clearTimeout(timer);
        socket.destroy();
        resolve({ ok: false, error: e.message });
      });
    });
  }

  /**
   * One request and its one response. A reused connection that closes before any byte
   * came back is retried once on a new connection (the server may have been closing it).
   */
  async exchange(id: Identity, bytes: Buffer, opts: { head: boolean; timeoutMs: number }): Promise<Outcome> {
    const pooled = this.takeIdle(id.key);
    if (pooled) {
      const r = await this.roundTrip(pooled, bytes, opts, true);
      if (r.kind !== "no-response" || r.how === "timeout") return this.settle(id.key, pooled, r);
    }
    const c = await this.connect(id, opts.timeoutMs);
    if (!c.ok) return { kind: "no-response", how: "error", error: c.error, tls: true };
    const conn = { socket: c.socket, lastUsed: Date.now() };
    return this.settle(id.key, conn, await this.roundTrip(conn, bytes, opts, true));
  }

  /**
   * Raw bytes on a connection of their own: waits for answers; when none comes, half-closes
   * so the server sees the end of a (possibly incomplete) request, and waits again.
   */
  async raw(id: Identity, bytes: Buffer, opts: { head: boolean; timeoutMs: number; nudgeMs?: number }): Promise<Outcome> {
    const c = await this.connect(id, opts.timeoutMs);
    if (!c.ok) return { kind: "no-response", how: "error", error: c.error, tls: true };
    const r = await this.roundTrip({ socket: c.socket, lastUsed: Date.now() }, bytes, opts, false);
    c.socket.destroy();
    return r;
  }

  private takeIdle(key: string): Conn | undefined {
    const list = this.idle.get(key);
    while (list?.length) {
      const conn = list.pop()!;
      if (!conn.socket.destroyed && conn.socket.writable && Date.now() - conn.lastUsed < MAX_IDLE_MS) return conn;
      conn.socket.destroy();
    }
    return undefined;
  }

  private settle(key: string, conn: Conn, r: Outcome): Outcome {
    const reusable = r.kind === "responses" && !r.closed && r.garbage === undefined && r.responses.length === 1 &&
      !/close/i.test(r.responses[0]!.headers.find(([k]) => k === "connection")?.[1] ?? "");
    if (reusable && !conn.socket.destroyed) {
      conn.lastUsed = Date.now();
      let list = this.idle.get(key);
      if (!list) this.idle.set(key, (list = []));
      list.push(conn);
      if (list.length > MAX_IDLE_PER_KEY) list.shift()!.socket.destroy();
    } else conn.socket.destroy();
    return r;
  }

  private roundTrip(conn: Conn, bytes: Buffer, opts: { head: boolean; timeoutMs: number; nudgeMs?: number }, single: boolean): Promise<Outcome> {
    const { socket } = conn;
    return new Promise((resolve) => {
      let buf = Buffer.alloc(0);
      let closed = false;
      let error: string | undefined;
      let halfClosed = false;
      let quiet: NodeJS.Timeout | undefined;
      const finish = (how?: "timeout") => {
        clearTimeout(deadline);
        clearTimeout(quiet);
        clearTimeout(nudge);
        socket.off("data", onData);
        socket.off("close", onClose);
        socket.off("error", onError);
        let parsed = parseAll(buf, { eof: closed, head: opts.head });
        // A HEAD the server could not parse is answered like any request, with a body.
        if (opts.head && (parsed.error || parsed.rest.length > 0)) {
          const asGet = parseAll(buf, { eof: closed, head: false });
          if (!asGet.error && asGet.rest.length === 0) parsed = asGet;
        }
        if (parsed.responses.length === 0) {
          if (buf.length > 0) {
            resolve({ kind: "responses", responses: [], garbage: describe(buf), closed });
          } else {
            resolve({ kind: "no-response", how: how ?? (error ? "error" : "closed"), error, tls: false, afterHalfClose: halfClosed });
          }
          return;
        }
        const garbage = parsed.rest.length > 0 && (closed || parsed.error) ? describe(parsed.rest) : undefined;
        resolve({ kind: "responses", responses: parsed.responses, closed, ...(garbage ? { garbage } : {}) });
      };
      const onData = (d: Buffer) => {
        buf = Buffer.concat([buf, d]);
        const parsed = parseAll(buf, { eof: false, head: opts.head });
        if (single && parsed.responses.length >= 1) return finish();
        // Raw: wait a little for pipelined answers after the last complete one.
        clearTimeout(quiet);
        if (parsed.responses.length >= 1) quiet = setTimeout(() => finish(), 150);
      };
      const onClose = () => {
        closed = true;
        finish();
      };
      const onError = (e: Error) => {
        error = e.message;
      };
      socket.on("data", onData);
      socket.once("close", onClose);
      socket.on("error", onError);
      const deadline = setTimeout(() => finish(halfClosed || single ? "timeout" : undefined), opts.timeoutMs);
      // Raw: when nothing came back, the request may be incomplete; end our side so the server sees EOF.
      const nudge = single ? undefined : setTimeout(() => {
        if (buf.length === 0 && !closed) {
          halfClosed = true;
          socket.end();
        }
      }, opts.nudgeMs ?? Math.min(1_000, opts.timeoutMs / 2));
      socket.write(bytes, (e) => {
        if (e) error = e.message;
      });
    });
  }

  /** Closes every connection (idle or in use). */
  destroyAll(): void {
    clearInterval(this.sweeper);
    for (const s of this.open) s.destroy();
    this.idle.clear();
  }
}

function describe(b: Buffer): string {
  const s = b.subarray(0, 300).toString("latin1");
  return JSON.stringify(s) + (b.length > 300 ? ` (+${b.length - 300} bytes)` : "");
}
