/**
 * The opening gate's arithmetic (controller/http/opening-gate.ts), on a fake clock with
 * stand-in sockets: at most `max` connections opening, the rest opened in arrival order,
 * nothing read before its turn, a connection that waited too long closed unhandled (and
 * none refused before it did), and nothing left behind on close.
 */
import { describe, expect, it } from "vitest";
import type { Socket } from "node:net";
import { OPENING_SLOT_MS, OpeningGate } from "../../controller/http/opening-gate.ts";

let port = 10_000;
function fakeSocket() {
  const s = { remoteAddress: "127.0.0.1", remotePort: port++, destroyed: false, paused: false,
    pause() { s.paused = true; }, destroy() { s.destroyed = true; } };
  return s;
}
type Fake = ReturnType<typeof fakeSocket>;

function setup(max: number, queueMs = 5_000) {
  let now = 0;
  const opened: Fake[] = [];
  let refused = 0;
  const gate = new OpeningGate({ maxConnectionsOpening: max, openingQueueMs: queueMs }, (s) => opened.push(s as unknown as Fake), () => refused++, () => now);
  return { gate, opened, refusedCount: () => refused, advance: (ms: number) => (now += ms), arrive: (s = fakeSocket()) => (gate.arrive(s as unknown as Socket), s) };
}

describe("the opening gate", () => {
  it("opens at most `max` at once; the rest wait unread and open in arrival order as slots free", () => {
    const g = setup(2);
    const [a, b, c, d] = [g.arrive(), g.arrive(), g.arrive(), g.arrive()];
    expect(g.opened).toEqual([a, b]);
    expect([a.paused, c.paused, d.paused]).toEqual([false, true, true]);
    expect(g.gate.stats).toEqual({ opening: 2, queued: 2, refused: 0 });
    g.gate.release(b);
    expect(g.opened).toEqual([a, b, c]);
    g.gate.release(b); // twice: nothing more
    expect(g.opened).toHaveLength(3);
    g.gate.release(a);
    expect(g.opened).toEqual([a, b, c, d]);
    expect(g.gate.stats).toEqual({ opening: 2, queued: 0, refused: 0 });
  });

  it("skips connections closed while queued, and closes unhandled one that waited longer than the queue time", () => {
    const g = setup(1, 1_000);
    const a = g.arrive();
    const gone = g.arrive();
    const late = g.arrive();
    gone.destroyed = true;
    g.advance(1_001);
    const fresh = g.arrive();
    g.gate.release(a);
    expect(g.opened).toEqual([a, fresh]);
    expect([late.destroyed, g.refusedCount(), g.gate.stats.refused]).toEqual([true, 1, 1]);
  });

  it("never refuses a connection for the length of the queue: a client waits its turn (its TLS handshake timeout is the limit)", () => {
    const g = setup(2, 1_000);
    const first = [g.arrive(), g.arrive()];
    const queued = Array.from({ length: 500 }, () => g.arrive());
    expect(g.gate.stats).toEqual({ opening: 2, queued: 500, refused: 0 });
    expect(queued.every((s) => s.paused && !s.destroyed)).toBe(true);
    g.advance(999); // the oldest waited just under the queue time: opened
    for (const s of first) g.gate.release(s);
    expect(g.opened.slice(2)).toEqual(queued.slice(0, 2));
    expect(g.gate.stats.refused).toBe(0);
  });

  it("a slot is released after OPENING_SLOT_MS whatever the client does (an idle connection cannot block the gate)", async () => {
    const { vi } = await import("vitest");
    vi.useFakeTimers();
    try {
      const g = setup(1);
      g.arrive();
      const waiting = g.arrive();
      vi.advanceTimersByTime(OPENING_SLOT_MS - 1);
      expect(g.opened).not.toContain(waiting);
      vi.advanceTimersByTime(1);
      expect(g.opened).toContain(waiting);
    } finally {
      vi.useRealTimers();
    }
  });

  it("a socket that closed before its handshake ended (no address any more) still frees its slot by its timer", async () => {
    const { vi } = await import("vitest");
    vi.useFakeTimers();
    try {
      const g = setup(1);
      const gone = g.arrive();
      const waiting = g.arrive();
      // Node reads a socket's peer address from its handle: once closed, it is undefined.
      Object.assign(gone, { remoteAddress: undefined, remotePort: undefined });
      g.gate.release(gone);
      expect(g.opened).not.toContain(waiting);
      vi.advanceTimersByTime(OPENING_SLOT_MS);
      expect(g.opened).toContain(waiting);
      expect(g.gate.stats.opening).toBe(1);
    } finally {
      vi.useRealTimers();
    }
  });

  it("takes the waiting sources in turn: one source's many connections cannot hold up another's", () => {
    const g = setup(1);
    const from = (address: string) => Object.assign(fakeSocket(), { remoteAddress: address });
    const first = g.arrive(from("10.0.0.1"));
    const flood = [g.arrive(from("10.0.0.1")), g.arrive(from("10.0.0.1")), g.arrive(from("10.0.0.1"))];
    const other = g.arrive(from("10.0.0.2"));
    const v6 = [g.arrive(from("2001:db8::1")), g.arrive(from("2001:db8::2"))]; // one /64: one source
    for (let i = 0; i < 6; i++) g.gate.release(g.opened[g.opened.length - 1]!);
    expect(g.opened).toEqual([first, flood[0], other, v6[0], flood[1], v6[1], flood[2]]);
  });

  it("on close: queued connections are closed, new ones refused", () => {
    const g = setup(1);
    g.arrive();
    const queued = g.arrive();
    g.gate.close();
    expect(queued.destroyed).toBe(true);
    const after = g.arrive();
    expect(after.destroyed).toBe(true);
    expect(g.opened).toHaveLength(1);
  });
});
