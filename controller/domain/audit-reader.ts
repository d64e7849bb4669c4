/**
 * Reads the tail of the audit trail for `GET /api/v1/audit`: the last `limit` events
 * at or after `since`, newest last. Each file is read backwards in chunks, starting
 * with audit.log and going on into the rotated files (audit.log.1, .2, …) while more
 * is wanted, so the cost follows what is returned, not the size of the trail.
 */
import { open, type FileHandle } from "node:fs/promises";
import { join } from "node:path";
import { auditFileName } from "./audit.ts";

import { AUDIT_DEFAULT_LIMIT, AUDIT_MAX_LIMIT, type AuditEvent } from "../../shared/wire/operator.ts";
/**
 * The CLI and the controller append to the same file, so neighbouring lines can be
 * out of time order by a little; scanning stops only this far before `since`.
 */
const ORDER_SLACK_MS = 60_000;
const CHUNK = 64 * 1024;
/** Rotated files are looked for up to this index (the cap's file count is far below). */
const MAX_ROTATED = 1000;

/** Feeds `take` the file's lines, last first, until it returns false; false when it did. */
async function readBackwards(fh: FileHandle, take: (line: Buffer) => boolean): Promise<boolean> {
  let pos = (await fh.stat()).size;
  let carry: Buffer = Buffer.alloc(0);
  while (pos > 0) {
    const n = Math.min(CHUNK, pos);
    pos -= n;
    const buf = Buffer.alloc(n);
    await fh.read(buf, 0, n, pos);
    const chunk = Buffer.concat([buf, carry]);
    let end = chunk.length;
    for (let i = chunk.length - 1; i >= 0; i--) {
      if (chunk[i] !== 0x0a) continue;
      if (!take(chunk.subarray(i + 1, end))) return false;
      end = i;
    }
    carry = chunk.subarray(0, end);
  }
  return take(carry);
}

async function openIfExists(path: string): Promise<FileHandle | undefined> {
  try {
    return await open(path, "r");
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw e;
  }
}

export async function readAuditEvents(dataDir: string, opts: { since?: number; limit?: number } = {}): Promise<AuditEvent[]> {
  const limit = Math.min(Math.max(opts.limit ?? AUDIT_DEFAULT_LIMIT, 1), AUDIT_MAX_LIMIT);
  const since = opts.since;
  const newestFirst: AuditEvent[] = [];
  /** Returns false when scanning should stop. */
  const take = (line: Buffer): boolean => {
    if (line.length === 0) return true;
    let ev: AuditEvent;
    try {
      ev = JSON.parse(line.toString("utf8"));
    } catch {
      return true; // a torn or foreign line: skip it
    }
    if (!ev || typeof ev !== "object" || typeof ev.time !== "string") return true;
    const t = Date.parse(ev.time);
    if (since !== undefined && Number.isFinite(t) && t < since) return t >= since - ORDER_SLACK_MS;
    newestFirst.push(ev);
    return newestFirst.length < limit;
  };
  // A rotation while we read renames a file we have read to the next index: skip it by inode.
  const seen = new Set<number>();
  for (let i = 0; i <= MAX_ROTATED; i++) {
    const fh = await openIfExists(join(dataDir, auditFileName(i)));
    if (!fh) {
      if (i === 0) continue; // no current file (yet, or just rotated): the rotated ones may exist
      break;
    }
    try {
      const { ino } = await fh.stat();
      if (seen.has(ino)) continue;
      seen.add(ino);
      if (!(await readBackwards(fh, take))) break;
    } finally {
      await fh.close();
    }
  }
  return newestFirst.reverse();
}
