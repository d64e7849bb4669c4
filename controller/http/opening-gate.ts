/**
 * Opening connections a bounded number at a time, in arrival order (docs/security.md
 * "Network bounds, TLS and error shapes"; docs/protocol.md "When the controller is
 * saturated").
 *
 * Without it, thousands of executors reconnecting at once (a controller restart) are all
 * handshaken together: the event loop takes every ClientHello, then every client's second
 * flight, then every first request, so nobody finishes before everybody is nearly done —
 * past the clients' timeouts they all give up at once, their retries arrive while the
 * abandoned handshakes are still being computed, and the controller burns its CPU on work
 * nobody waits for. Here at most `maxConnectionsOpening` connections are *opening* (TLS
 * handshake, at most OPENING_SLOT_MS); later ones wait unread — their ClientHello stays in
 * the kernel — and are opened as slots free: the oldest connection of each source (an IPv4
 * address, an IPv6 /64) in turn, so one source's many connections cannot hold up the
 * others. A connection's first request is served as soon as its handshake is done, between
 * the handshakes of the ones after it. No connection is refused for the length of the
 * queue (a refusal is a reset the client backs off from, seconds it then sleeps while the
 * controller may be idle); one that waited longer than `openingQueueMs` is closed
 * unhandled when its turn comes — its client, which gives a TLS handshake 30 s
 * (executor/client.ts), would soon give up on it anyway. The connection caps
 * (network-bounds.ts) bound how many wait.
 *
 * A slot is held for at most OPENING_SLOT_MS, so a client that connects and then says
 * nothing (or trickles its handshake) holds one only that long. Connections that finished
 * their handshake are not counted: keep-alive traffic never waits here.
 */
import type { Server } from "node:https";
import type { Socket } from "node:net";
import type { FastifyBaseLogger } from "fastify";
import { sourceKey } from "../domain/source-address.ts";

/** The longest one opening counts against the gate (a handshake takes milliseconds). */
export const OPENING_SLOT_MS = 2_000;

export interface OpeningBounds {
  /** Connections in their TLS handshake at once; 0: no gate. */
  maxConnectionsOpening: number;
  /** The longest a new connection waits for its turn before it is closed unhandled. */
  openingQueueMs: number;
}

export interface OpeningGateStats {
  opening: number;
  queued: number;
  /** Closed before TLS since the start: they waited longer than `openingQueueMs`. */
  refused: number;
}

/** The peer's address and port: one TCP connection, whether seen as the raw socket or as its TLS socket. */
const connectionKey = (s: { remoteAddress?: string; remotePort?: number }) => `${s.remoteAddress}|${s.remotePort}`;

export class OpeningGate {
  /** Connections holding a slot, by connection key: when the slot was taken, and the timer that ends it. */
  private readonly opening = new Map<string, NodeJS.Timeout>();
  /** Waiting connections, one queue per source (an IPv4 address, an IPv6 /64), taken in turn. */
  private readonly waiting = new Map<string, Fifo<{ socket: Socket; at: number }>>();
  /** The source whose connection goes next, among those waiting (round robin). */
  private turn: string[] = [];
  private turnIndex = 0;
  private queued = 0;
  private refusedCount = 0;
  private closed = false;

  constructor(
    private readonly b: OpeningBounds,
    /** Hands the connection to TLS (Node's own connection listeners). */
    private readonly open: (socket: Socket) => void,
    private readonly onRefused: () => void = () => undefined,
    private readonly now: () => number = Date.now,
  ) {}

  get stats(): OpeningGateStats {
    return { opening: this.opening.size, queued: this.queued, refused: this.refusedCount };
  }

  arrive(socket: Socket): void {
    if (this.closed) return void socket.destroy();
    if (this.opening.size < this.b.maxConnectionsOpening && this.queued === 0) return this.start(socket);
    socket.pause(); // nothing is read before its turn
    const source = socket.remoteAddress === undefined ? "?" : sourceKey(socket.remoteAddress);
    let q = this.waiting.get(source);
    if (!q) {
      this.waiting.set(source, (q = new Fifo()));
      this.turn.push(source);
    }
    q.push({ socket, at: this.now() });
    this.queued++;
  }

  /**
   * The connection's TLS handshake is done or failed: its slot is free. A socket already
   * closed has no address any more (Node reads it from the handle): its slot is freed by
   * its OPENING_SLOT_MS timer, which kept the key.
   */
  release(conn: { remoteAddress?: string; remotePort?: number }): void {
    if (conn.remoteAddress === undefined) return;
    this.releaseKey(connectionKey(conn));
  }

  private releaseKey(key: string): void {
    const timer = this.opening.get(key);
    if (!timer) return;
    clearTimeout(timer);
    this.opening.delete(key);
    this.next();
  }

  /** Shutting down: queued connections are closed, new ones refused (a closing server waits for every socket). */
  close(): void {
    this.closed = true;
    for (const q of this.waiting.values()) for (let e = q.shift(); e; e = q.shift()) e.socket.destroy();
    this.waiting.clear();
    this.turn = [];
    this.queued = 0;
    for (const timer of this.opening.values()) clearTimeout(timer);
    this.opening.clear();
  }

  private start(socket: Socket): void {
    const key = connectionKey(socket);
    // By the key, not the socket: a closed socket no longer knows its peer's address.
    const timer = setTimeout(() => this.releaseKey(key), OPENING_SLOT_MS);
    timer.unref();
    this.opening.set(key, timer);
    try {
      this.open(socket);
    } catch {
      socket.destroy();
      this.releaseKey(key);
    }
  }

  private next(): void {
    while (this.opening.size < this.b.maxConnectionsOpening && this.queued > 0) {
      const { socket, at } = this.takeTurn();
      if (socket.destroyed) continue;
      if (this.now() - at > this.b.openingQueueMs) {
        this.refuse(socket);
        continue;
      }
      this.start(socket);
    }
  }

  /** The oldest waiting connection of the next source in turn: one source's many connections cannot hold up the others. */
  private takeTurn(): { socket: Socket; at: number } {
    if (this.turnIndex >= this.turn.length) this.turnIndex = 0;
    const source = this.turn[this.turnIndex]!;
    const q = this.waiting.get(source)!;
    const entry = q.shift()!;
    this.queued--;
    if (q.size === 0) {
      this.waiting.delete(source);
      this.turn.splice(this.turnIndex, 1);
    } else this.turnIndex++;
    return entry;
  }

  private refuse(socket: Socket): void {
    this.refusedCount++;
    this.onRefused();
    socket.destroy();
  }
}

/**
 * Puts the gate in front of `server`'s TLS: Node's connection listeners (the TLS wrapping)
 * run when a connection's turn comes. Install it before any other `connection` listener.
 */
export function gateOpenings(server: Server, b: OpeningBounds, log: FastifyBaseLogger): OpeningGate | undefined {
  if (b.maxConnectionsOpening <= 0) return undefined;
  const tlsListeners = server.listeners("connection") as ((socket: Socket) => void)[];
  server.removeAllListeners("connection");
  let lastWarnMs = 0;
  let refusedSinceWarn = 0;
  const gate = new OpeningGate(b, (socket) => {
    for (const l of tlsListeners) l.call(server, socket);
  }, () => {
    refusedSinceWarn++;
    const now = Date.now();
    if (now - lastWarnMs < 60_000) return;
    log.warn({ refused_since_last_warning: refusedSinceWarn, ...gate.stats, max_connections_opening: b.maxConnectionsOpening, opening_queue_ms: b.openingQueueMs }, "new connections closed unopened: they waited longer than opening_queue_ms for their TLS handshake");
    refusedSinceWarn = 0;
    lastWarnMs = now;
  });
  server.on("connection", (socket: Socket) => gate.arrive(socket));
  // The handshake is the work the gate bounds: once it is done (or failed) the slot is free.
  server.on("tlsClientError", (_err: Error, tlsSocket: Socket) => gate.release(tlsSocket));
  server.on("secureConnection", (tlsSocket: Socket) => gate.release(tlsSocket));
  return gate;
}

/** A first-in first-out queue with O(1) push and shift (compacted as it drains). */
class Fifo<T> {
  private items: (T | undefined)[] = [];
  private head = 0;

  get size(): number {
    return this.items.length - this.head;
  }

  push(item: T): void {
    this.items.push(item);
  }

  shift(): T | undefined {
    if (this.head >= this.items.length) return undefined;
    const item = this.items[this.head];
    this.items[this.head++] = undefined;
    if (this.head > 1024 && this.head * 2 > this.items.length) {
      this.items = this.items.slice(this.head);
      this.head = 0;
    }
    return item;
  }
}
