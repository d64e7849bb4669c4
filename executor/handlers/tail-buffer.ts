/**
 * The last `capacity` bytes of a stream, in a fixed ring: memory stays bounded
 * whatever a command prints. `total` counts every byte seen.
 */
export class TailBuffer {
  private buf?: Buffer;
  private pos = 0;
  private full = false;
  total = 0;

  constructor(readonly capacity: number) {
    if (!Number.isSafeInteger(capacity) || capacity < 1) throw new RangeError("capacity must be a positive integer");
  }

  push(chunk: Buffer): void {
    const n = chunk.length;
    if (n === 0) return;
    this.total += n;
    const cap = this.capacity;
    this.buf ??= Buffer.allocUnsafe(cap);
    if (n >= cap) {
      chunk.copy(this.buf, 0, n - cap);
      this.pos = 0;
      this.full = true;
      return;
    }
    const first = Math.min(n, cap - this.pos);
    chunk.copy(this.buf, this.pos, 0, first);
    if (first < n) {
      chunk.copy(this.buf, 0, first);
      this.pos = n - first;
      this.full = true;
    } else {
      this.pos += first;
      if (this.pos === cap) {
        this.pos = 0;
        this.full = true;
      }
    }
  }

  /** Whether bytes were dropped from the front. */
  get truncated(): boolean {
    return this.total > this.capacity;
  }

  bytes(): Buffer {
    if (!this.buf) return Buffer.alloc(0);
    if (!this.full) return Buffer.from(this.buf.subarray(0, this.pos));
    return Buffer.concat([this.buf.subarray(this.pos), this.buf.subarray(0, this.pos)]);
  }

  /** The tail as UTF-8 (invalid sequences become U+FFFD; a character cut at the front is skipped). */
  text(): string {
    return tailText(this.bytes(), this.truncated);
  }
}

/** UTF-8 text of `b`; when `cut`, leading continuation bytes of a character split at the front are skipped. */
export function tailText(b: Buffer, cut = true): string {
  let start = 0;
  if (cut) while (start < b.length && start < 3 && (b[start]! & 0xc0) === 0x80) start++;
  return b.subarray(start).toString("utf8");
}

/** The last at most `maxBytes` UTF-8 bytes of `s`, cut on a character boundary. */
export function lastBytes(s: string, maxBytes: number): string {
  const b = Buffer.from(s, "utf8");
  if (b.length <= maxBytes) return s;
  return tailText(b.subarray(b.length - Math.max(0, maxBytes)));
}
