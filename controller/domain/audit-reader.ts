/**
 * Reads the tail of `audit.log` for `GET /api/v1/audit`: the last `limit` events at
 * or after `since`, newest last. The file is read backwards in chunks, so the cost
 * follows what is returned, not the size of the log.
 */
import { open } from "node:fs/promises";
import { join } from "node:path";
import { AUDIT_FILE } from "./audit.ts";

import { AUDIT_DEFAULT_LIMIT, AUDIT_MAX_LIMIT, type AuditEvent } from "../../shared/wire/operator.ts";
/**
 * The CLI and the controller append to the same file, so neighbouring lines can be
 * out of time order by a little; scanning stops only this far before `since`.
 */
const ORDER_SLACK_MS = 60_000;
const CHUNK = 64 * 1024;


export async function readAuditEvents(dataDir: string, opts: { since?: number; limit?: number } = {}): Promise<AuditEvent[]> {
  const limit = Math.min(Math.max(opts.limit ?? AUDIT_DEFAULT_LIMIT, 1), AUDIT_MAX_LIMIT);
  const since = opts.since;
  let fh;
  try {
    fh = await open(join(dataDir, AUDIT_FILE), "r");
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT") return [];
    throw e;
  }
  const newestFirst: AuditEvent[] = [];
  try {
    let pos = (await fh.stat()).size;
    let carry: Buffer = Buffer.alloc(0);
    let done = false;
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
    while (pos > 0 && !done) {
      const n = Math.min(CHUNK, pos);
      pos -= n;
      const buf = Buffer.alloc(n);
      await fh.read(buf, 0, n, pos);
      const chunk = Buffer.concat([buf, carry]);
      let end = chunk.length;
      for (let i = chunk.length - 1; i >= 0; i--) {
        if (chunk[i] !== 0x0a) continue;
        if (!take(chunk.subarray(i + 1, end))) {
          done = true;
          break;
        }
        end = i;
      }
      carry = chunk.subarray(0, end);
      if (!done && pos === 0 && !take(carry)) done = true;
    }
  } finally {
    await fh.close();
  }
  return newestFirst.reverse();
}
