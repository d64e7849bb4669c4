/**
 * Batching for the writes every executor request makes (its nonce, its heartbeat), the
 * PostgreSQL counterpart of SQLite's group commit: one batch statement is in flight at a
 * time; calls made meanwhile queue and go together in the next one. Each caller is
 * answered only after the statement carrying its write committed (so a nonce is durable
 * before the request it belongs to is answered). Under load batches grow instead of
 * round trips multiplying; when idle a call waits only for the end of the current turn.
 */
interface Pending<I, O> {
  item: I;
  resolve: (value: O) => void;
  reject: (error: unknown) => void;
}

/** Rows per statement at most: bounds the arrays sent and the locks one statement holds. */
const MAX_BATCH = 2_000;

export class Batcher<I, O> {
  private queue: Pending<I, O>[] = [];
  private running: Promise<void> | undefined;

  /** `write` answers the items of one batch, in their order, after its commit. */
  constructor(private readonly write: (items: I[]) => Promise<O[]>) {}

  submit(item: I): Promise<O> {
    return new Promise<O>((resolve, reject) => {
      this.queue.push({ item, resolve, reject });
      this.running ??= this.drain();
    });
  }

  /** Resolves once everything submitted so far has been written (or failed). */
  async flush(): Promise<void> {
    while (this.running) await this.running;
  }

  private async drain(): Promise<void> {
    // Calls made in the same turn as the first one go with it.
    await new Promise<void>((r) => setImmediate(r));
    while (this.queue.length > 0) {
      const batch = this.queue.splice(0, MAX_BATCH);
      try {
        const out = await this.write(batch.map((p) => p.item));
        batch.forEach((p, i) => p.resolve(out[i] as O));
      } catch (e) {
        for (const p of batch) p.reject(e);
      }
    }
    this.running = undefined;
  }
}
