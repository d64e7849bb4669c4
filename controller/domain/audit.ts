/**
 * The audit trail: one JSON line per security event in `audit.log`. Fields whose
 * names look like secrets are redacted before writing, and a write failure never
 * fails the request that caused the event.
 */
import { openSync, writeSync, closeSync, fchmodSync } from "node:fs";
import { join } from "node:path";

export const AUDIT_FILE = "audit.log";
const SECRET_FIELD = /(token|secret|password|passphrase|authorization|jwt|hmac|private|key|csr|signature)/i;
/** Field names that match the pattern above but hold no secret. */
const SAFE_FIELDS = new Set(["token_id", "api_token_id", "kid", "key_type", "ca_key_type"]);

export type AuditFields = Record<string, unknown>;

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
  event(event: string, fields?: AuditFields): void;
  close(): void;
}

export class FileAudit implements Audit {
  private fd: number | undefined;
  private failures = 0;

  constructor(
    dataDir: string,
    private readonly actor: string,
    private readonly onError: (e: unknown) => void = () => {},
  ) {
    try {
      this.fd = openSync(join(dataDir, AUDIT_FILE), "a", 0o600);
      fchmodSync(this.fd, 0o600);
    } catch (e) {
      this.onError(e);
    }
  }

  event(event: string, fields: AuditFields = {}): void {
    if (this.fd === undefined) return;
    try {
      const line = JSON.stringify({ time: new Date().toISOString(), event, actor: this.actor, ...redact(fields) }) + "\n";
      // O_APPEND + one write per line keeps lines whole when the CLI and the controller both append.
      writeSync(this.fd, line);
    } catch (e) {
      if (this.failures++ === 0) this.onError(e);
    }
  }

  close(): void {
    if (this.fd !== undefined) closeSync(this.fd);
    this.fd = undefined;
  }
}

/** For tests and tools that need an Audit but no file. */
export class MemoryAudit implements Audit {
  readonly events: ({ event: string } & AuditFields)[] = [];
  event(event: string, fields: AuditFields = {}): void {
    this.events.push({ event, ...redact(fields) });
  }
  close(): void {}
}
