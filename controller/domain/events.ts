/**
 * The live event bus (PROTOCOL §10.1): what the domain services publish for operators
 * watching the fleet. Events carry ids, names, labels, statuses and times only — never
 * a token, a key, a certificate, a task payload or a result. Knows nothing of HTTP.
 *
 * Each subscriber has a bounded queue drained asynchronously: one that falls
 * MAX_QUEUED_EVENTS behind is dropped (its `onDrop` runs), never buffered without limit.
 * Publishing never waits for a subscriber and never throws.
 *
 * The bus is per process. `publish` takes an already-built event, so another source
 * (a PostgreSQL NOTIFY listener carrying another replica's events) can feed the same
 * subscribers later through `publish` without the services knowing.
 */
import { rfc3339 } from "../../shared/time.ts";
import type { ExecutorLiveness, TaskStatus } from "../../shared/wire/operator.ts";

export interface EventData {
  "executor.registered": { executor_id: string; name: string; labels: Record<string, string>; epoch: number; status: ExecutorLiveness };
  "executor.status": { executor_id: string; status: ExecutorLiveness; previous: ExecutorLiveness | null; drain?: boolean };
  "executor.revoked": { executor_id: string };
  /**
   * One task (task_id set), or several put back in the queue at once (revocation,
   * re-registration, reclaim: `count` set, no ids — the store reports a count only;
   * `status` null when they did not all end the same way).
   */
  "task.updated":
    | { task_id: string; kind?: string; status: TaskStatus; attempts?: number; executor_id: string | null }
    | { task_id: null; count: number; status: TaskStatus | null; reason: string; executor_id: string | null };
  "ca.rotated": { phase: "prepared" | "activated"; ca_id: string; fingerprint_sha256: string; trust_bundle_version?: number };
  "jwt_key.rotated": { kid: string; previous_kid: string | null };
}

export type EventName = keyof EventData;
export const EVENT_NAMES: readonly EventName[] = ["executor.registered", "executor.status", "executor.revoked", "task.updated", "ca.rotated", "jwt_key.rotated"];

export interface BusEvent<N extends EventName = EventName> {
  event: N;
  /** RFC 3339. */
  at: string;
  data: EventData[N];
}

/** Events one subscriber may have waiting before it is dropped. */
export const MAX_QUEUED_EVENTS = 256;

export interface Subscription {
  close(): void;
}

interface Subscriber {
  deliver: (e: BusEvent) => void;
  onDrop: () => void;
  queue: BusEvent[];
  scheduled: boolean;
  closed: boolean;
}

/** What a domain service needs to publish: nothing else of the bus. */
export interface EventSink {
  emit<N extends EventName>(name: N, data: EventData[N], now?: number): void;
}

export const noEvents: EventSink = { emit: () => undefined };

export class EventBus implements EventSink {
  private readonly subscribers = new Set<Subscriber>();

  constructor(private readonly maxQueued = MAX_QUEUED_EVENTS) {}

  emit<N extends EventName>(name: N, data: EventData[N], now = Date.now()): void {
    this.publish({ event: name, at: rfc3339(now), data } as BusEvent);
  }

  /** Hands an event to every subscriber's queue; a subscriber whose queue is full is dropped. */
  publish(e: BusEvent): void {
    for (const s of this.subscribers) {
      if (s.queue.length >= this.maxQueued) {
        this.drop(s);
        continue;
      }
      s.queue.push(e);
      if (!s.scheduled) {
        s.scheduled = true;
        setImmediate(() => this.drain(s));
      }
    }
  }

  /**
   * `deliver` is called once per event, in order; it must not block (a WebSocket send).
   * `onDrop` runs once if the subscriber falls too far behind, or when `deliver` throws
   * (how a transport says its own buffer is full).
   */
  subscribe(deliver: (e: BusEvent) => void, onDrop: () => void): Subscription {
    const s: Subscriber = { deliver, onDrop, queue: [], scheduled: false, closed: false };
    this.subscribers.add(s);
    return { close: () => this.remove(s) };
  }

  /** Subscribers now (tests, metrics). */
  get size(): number {
    return this.subscribers.size;
  }

  private drop(s: Subscriber): void {
    if (s.closed) return;
    this.remove(s);
    try {
      s.onDrop();
    } catch {
      // a subscriber's failure is its own
    }
  }

  private remove(s: Subscriber): void {
    s.closed = true;
    s.queue.length = 0;
    this.subscribers.delete(s);
  }

  private drain(s: Subscriber): void {
    s.scheduled = false;
    while (!s.closed && s.queue.length > 0) {
      const e = s.queue.shift() as BusEvent;
      try {
        s.deliver(e);
      } catch {
        this.drop(s);
      }
    }
  }
}
