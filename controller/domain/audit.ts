/**
 * The audit trail: one JSON line per security event in `audit.log`. Fields whose
 * names look like secrets are redacted before writing, and a write failure never
 * fails the request that caused the event. Rejections anyone can provoke are
 * aggregated (audit-aggregate.ts) and the file is rotated at a size cap, so no
 * client can fill the disk through it.
 *
 * Two processes append to the file: the controller and CLI commands run with
 * `--data-dir`. Each line is one write(2) on an O_APPEND descriptor, so lines never
 * interleave. Only the controller rotates (rename audit.log → audit.log.1 …, then a
 * new file); every writer, before each line, checks that its descriptor is still the
 * file at `audit.log` (same inode) and reopens it when not, so a CLI command that
 * opened the file before a rotation follows it instead of writing into the renamed
 * file. A line written in the instant between that check and a rotation lands at the
 * end of audit.log.1: still in the trail, never lost.
 */
import { closeSync, fchmodSync, fstatSync, openSync, renameSync, statSync, unlinkSync, writeSync } from "node:fs";
import { join } from "node:path";
import { RejectionAggregator, type AggregationLimits, type RejectionKind } from "./audit-aggregate.ts";

export const AUDIT_FILE = "audit.log";
const SECRET_FIELD = /(token|secret|password|passphrase|authorization|jwt|hmac|private|key|csr|signature)/i;
/** Field names that match the pattern above but hold no secret. */
const SAFE_FIELDS = new Set(["token_id", "api_token_id", "kid", "key_type", "ca_key_type"]);

export type AuditFields = Record<string, unknown>;
export type { RejectionKind };

export function redact(fields: AuditFields): AuditFields {
  const out: AuditFields = {};
  for (const [k, v] of Object.entries(fields)) {
    if (SECRET_FIELD.test(k) && !SAFE_FIELDS.has(k)) out[k] = "[REDACTED]";
    else if (Array.isArray(v)) out[k] = v.map((x) => (x && typeof x === "object" && !Array.isArray(x) ? redact(x as AuditFields) : x));
    else if (v && typeof v === "object") out[k] = redact(v as AuditFields);
    else out[k] = v;
  }
  return out;
}

export interface Audit {
  /** A security event: always its own line (enrollments, revocations, tokens minted…). */
  event(event: string, fields?: AuditFields): void;
  /**
   * A rejection anyone can provoke: the first of its kind in a window is written at
   * once, repeats are counted into one line. `details` go on the first line only.
   */
  rejected(event: string, kind: RejectionKind, details?: AuditFields): void;
  close(): void;
}

/** The size cap: `maxFiles` files (audit.log and audit.log.1 … .N-1) of at most `maxBytes` each. */
export interface AuditRotation {
  maxBytes: number;
  maxFiles: number;
}

export const DEFAULT_AUDIT_ROTATION: AuditRotation = { maxBytes: 64 * 1024 * 1024, maxFiles: 5 };

export interface FileAuditOptions {
  onError?: (e: unknown) => void;
  /** Set by the controller; a CLI command appends and follows rotations but never rotates. */
  rotation?: AuditRotation;
  aggregation?: AggregationLimits;
}

/** audit.log, audit.log.1, …: the newest first. */
export function auditFileName(index: number): string {
  return index === 0 ? AUDIT_FILE : `${AUDIT_FILE}.${index}`;
}

export class FileAudit implements Audit {
  private fd: number | undefined;
  private ino = -1;
  private failures = 0;
  private closed = false;
  private readonly path: string;
  private readonly onError: (e: unknown) => void;
  private readonly aggregator: RejectionAggregator;

  constructor(
    private readonly dataDir: string,
    private readonly actor: string,
    private readonly opts: FileAuditOptions = {},
  ) {
    this.path = join(dataDir, AUDIT_FILE);
    this.onError = opts.onError ?? (() => {});
    this.aggregator = new RejectionAggregator((event, fields) => this.event(event, fields), opts.aggregation);
    try {
      this.open();
    } catch (e) {
      this.fail(e);
    }
  }

  event(event: string, fields: AuditFields = {}): void {
    if (this.closed) return;
    try {
      const line = JSON.stringify({ time: new Date().toISOString(), event, actor: this.actor, ...redact(fields) }) + "\n";
      // One write per line on an O_APPEND descriptor keeps lines whole with two writers.
      writeSync(this.current(Buffer.byteLength(line)), line);
    } catch (e) {
      this.fail(e);
    }
  }

  rejected(event: string, kind: RejectionKind, details?: AuditFields): void {
    this.aggregator.offer(event, kind, details);
  }

  close(): void {
    if (this.closed) return;
    this.aggregator.flush();
    this.closed = true;
    if (this.fd !== undefined) closeSync(this.fd);
    this.fd = undefined;
  }

  private fail(e: unknown): void {
    if (this.failures++ === 0) this.onError(e);
  }

  private open(): number {
    if (this.fd !== undefined) closeSync(this.fd);
    this.fd = undefined;
    const fd = openSync(this.path, "a", 0o600);
    fchmodSync(fd, 0o600);
    this.fd = fd;
    this.ino = fstatSync(fd).ino;
    return fd;
  }

  /** The descriptor to write `incoming` bytes to: the file at audit.log, rotated first if they would pass the cap. */
  private current(incoming: number): number {
    let st: { ino: number; size: number } | undefined;
    try {
      st = statSync(this.path);
    } catch {
      st = undefined; // deleted or moved away: start a new file
    }
    const fd = this.fd === undefined || st?.ino !== this.ino ? this.open() : this.fd;
    const rot = this.opts.rotation;
    if (!rot) return fd;
    const size = st?.ino === this.ino ? st.size : fstatSync(fd).size;
    if (size === 0 || size + incoming <= rot.maxBytes) return fd;
    this.rotate(rot);
    return this.open();
  }

  private rotate(rot: AuditRotation): void {
    const at = (i: number) => join(this.dataDir, auditFileName(i));
    const move = (from: string, to: string) => {
      try {
        renameSync(from, to);
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== "ENOENT") throw e;
      }
    };
    if (rot.maxFiles <= 1) unlinkSync(this.path);
    // The oldest is replaced (dropped) by the one before it.
    for (let i = rot.maxFiles - 1; i >= 1; i--) move(at(i - 1), at(i));
  }
}

/** For tests and tools that need an Audit but no file: every call is kept, nothing aggregated. */
export class MemoryAudit implements Audit {
  readonly events: ({ event: string } & AuditFields)[] = [];
  event(event: string, fields: AuditFields = {}): void {
    this.events.push({ event, ...redact(fields) });
  }
  rejected(event: string, kind: RejectionKind, details: AuditFields = {}): void {
    this.event(event, { ...kind, ...details });
  }
  close(): void {}
}
