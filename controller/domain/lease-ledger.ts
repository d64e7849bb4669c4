/**
 * What the executor lifecycle needs from work dispatch, as an interface injected when
 * the controller is composed (context.ts): the executor service tells the ledger about
 * heartbeats, epoch changes and revocations, and never knows how leases are kept.
 */
export interface LeaseLedger {
  /** Extends the leases a heartbeat lists; returns those the executor must stop. */
  heartbeat(executorId: string, epoch: number, leaseIds: string[], nowMs: number): Promise<string[]>;
  /** The executor re-registered at `newEpoch`: leases held under older epochs go back to the queue. */
  epochChanged(executorId: string, newEpoch: number): Promise<void>;
  /** The executor was revoked: its leases go back to the queue. */
  revoked(executorId: string): Promise<void>;
}
