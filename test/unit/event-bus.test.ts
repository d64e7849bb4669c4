/** The event bus (controller/domain/events.ts): ordered delivery, bounded queues, a slow subscriber dropped. */
import { describe, expect, it } from "vitest";
import { EventBus, MAX_QUEUED_EVENTS, type BusEvent } from "../../controller/domain/events.ts";

const tick = () => new Promise((resolve) => setImmediate(resolve));

describe("EventBus", () => {
  it("delivers in order, asynchronously, to every subscriber", async () => {
    const bus = new EventBus();
    const a: BusEvent[] = [];
    const b: BusEvent[] = [];
    bus.subscribe((e) => a.push(e), () => undefined);
    bus.subscribe((e) => b.push(e), () => undefined);
    bus.emit("executor.revoked", { executor_id: "ex_1" }, Date.UTC(2026, 0, 1));
    bus.emit("jwt_key.rotated", { kid: "k2", previous_kid: "k1" });
    expect(a).toEqual([]); // publishing never runs a subscriber inline
    await tick();
    expect(a.map((e) => e.event)).toEqual(["executor.revoked", "jwt_key.rotated"]);
    expect(a[0]).toEqual({ event: "executor.revoked", at: "2026-01-01T00:00:00Z", data: { executor_id: "ex_1" } });
    expect(b).toEqual(a);
  });

  it("drops a subscriber that falls MAX_QUEUED_EVENTS behind, and keeps the others", async () => {
    const bus = new EventBus();
    let dropped = 0;
    const fast: BusEvent[] = [];
    bus.subscribe(() => undefined, () => dropped++);
    for (let i = 0; i <= MAX_QUEUED_EVENTS; i++) {
      bus.emit("executor.revoked", { executor_id: `ex_${i}` });
      if (i === 0) bus.subscribe((e) => fast.push(e), () => dropped += 100);
      if (i % 100 === 0) await tick(); // the second one keeps up
    }
    await tick();
    expect(dropped).toBe(0);
    const slow: BusEvent[] = [];
    let slowDropped = 0;
    bus.subscribe((e) => slow.push(e), () => slowDropped++);
    for (let i = 0; i < MAX_QUEUED_EVENTS + 5; i++) bus.emit("executor.revoked", { executor_id: `ex_${i}` });
    await tick();
    expect(slowDropped).toBe(1);
    expect(slow).toEqual([]);
    expect(bus.size).toBe(0); // every subscriber here fell behind in that burst
  });

  it("drops a subscriber whose delivery throws (its transport is backed up), once", async () => {
    const bus = new EventBus();
    let drops = 0;
    bus.subscribe(() => {
      throw new Error("full");
    }, () => drops++);
    bus.emit("executor.revoked", { executor_id: "a" });
    bus.emit("executor.revoked", { executor_id: "b" });
    await tick();
    expect(drops).toBe(1);
    expect(bus.size).toBe(0);
  });
});
