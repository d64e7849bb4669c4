/**
 * The CA set (PROTOCOL §7.1, §7.2): the CAs of the trust bundle, loaded from the store
 * with their keys, and every step of their life — prepare (cross-signed by the active
 * CA), activate (gated on adoption), retire, remove once the last certificate a retired CA
 * signed has expired, and the automatic schedule. Every process that opens a data dir has
 * one; the running controller reloads it when another process (the CLI on the data dir)
 * changed the store, and listens for changes to re-issue its server certificate.
 * `ca.pem` in the data dir is rewritten (0644, atomically) whenever the bundle changes.
 */
import { noEvents, type EventSink } from "../events.ts";
import { X509Certificate } from "node:crypto";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { createCa, caFromDer, CA_CERT_FILE, type Ca } from "../../../certs/ca.ts";
import { crossSign } from "../../../certs/cross-sign.ts";
import { bundlePem as bundleOf } from "../../../certs/bundle.ts";
import { ErrorCode, TetherError } from "../../../shared/errors.ts";
import { fileExists, writeFileAtomic } from "../../../shared/secure-fs.ts";
import { rfc3339 } from "../../../shared/time.ts";
import type { CaView } from "../../../shared/wire/operator.ts";
import type { CaRecord, CaStore, IssuedCertificate } from "../../store/trust-types.ts";
import type { Audit, AuditFields } from "../audit.ts";
import { adoptionOf, type ReportedVersion } from "./adoption.ts";
import { bootstrapCaSet, newCaRecord, type Bootstrap, type BootstrapSettings } from "./bootstrap.ts";
import { RevocationLists } from "./crls.ts";
import { renewalJitter } from "./renewal.ts";
import { caScheduleStep } from "./schedule.ts";

export interface CaSetSettings extends BootstrapSettings {
  heartbeatIntervalSeconds: number;
}

interface Entry {
  record: CaRecord;
  ca: Ca;
  node: X509Certificate;
}

interface Snapshot {
  version: number;
  /** Version plus every CA's id and state: what a reload compares. */
  signature: string;
  entries: Entry[];
  active: Entry;
  bundlePem: string;
  caCerts: X509Certificate[];
}

export interface CaSetChange {
  version: number;
  activeChanged: boolean;
  bundleChanged: boolean;
}

const SCHEDULE: AuditFields = { via: "schedule" };

/** Another process made the step first: the schedule has nothing left to do. */
function ignoreConflict(e: unknown): void {
  if (!(e instanceof TetherError && e.code === ErrorCode.CONFLICT)) throw e;
}

/** Renewals a second the fleet is spread to after an activation (a renewal costs about as much as a registration). */
export const MOVES_PER_S = 100;

/** The window renew hints spread over after an activation: a heartbeat interval, or `executors / MOVES_PER_S` seconds when longer. */
export function moveWindowMs(executors: number, intervalMs: number): number {
  return Math.max(intervalMs, Math.ceil((executors / MOVES_PER_S) * 1000));
}

export class CaSet {
  private readonly listeners: ((c: CaSetChange) => Promise<void> | void)[] = [];
  /** Reloads and changes run one at a time. */
  private lock: Promise<unknown> = Promise.resolve();
  private readonly crls: RevocationLists;
  /** The pending list the schedule last reported as blocking, so a blocked gate is audited once per change. */
  private lastBlocked = "";
  /** How long after an activation the fleet's renewals are spread over (moveWindowMs), for the active CA it was sized for. */
  private moveWindow = { caId: "", ms: 0 };

  /** Where `ca.rotated` goes (PROTOCOL §10.1); set by the composition (context.ts). */
  events: EventSink = noEvents;

  private constructor(
    private readonly store: CaStore,
    private readonly audit: Audit,
    private readonly s: CaSetSettings,
    private snap: Snapshot,
  ) {
    this.crls = new RevocationLists(store);
  }

  /** Loads the set, bootstrapping the first CA (legacy import or a new one) when the store has none. */
  static async open(store: CaStore, audit: Audit, s: CaSetSettings, now = Date.now()): Promise<{ set: CaSet; bootstrap: Bootstrap }> {
    const b = await bootstrapCaSet(store, s, now);
    if (b.outcome !== "loaded") audit.event(b.outcome === "created" ? "ca.created" : "ca.imported", { fingerprint_sha256: b.fingerprint, state: "active" });
    const snap = await readSnapshot(store);
    if (!snap) throw new Error("the trust bundle could not be read");
    writeBundleFile(s.dataDir, snap.bundlePem);
    const set = new CaSet(store, audit, s, snap);
    await set.sizeMoveWindow();
    return { set, bootstrap: b.outcome };
  }

  version(): number {
    return this.snap.version;
  }
  bundlePem(): string {
    return this.snap.bundlePem;
  }
  /** Every CA of the bundle, for the client-certificate check. */
  caCerts(): X509Certificate[] {
    return this.snap.caCerts;
  }
  /** The CA that signs: its id, key and activation time. */
  active(): { id: string; ca: Ca; activatedAt: number } {
    const { record, ca } = this.snap.active;
    return { id: record.id, ca, activatedAt: record.activatedAt ?? record.createdAt };
  }
  /** What follows the server certificate in its chain: the active CA cross-signed by the previous one ("" for a first CA). */
  serverChainPem(): string {
    return this.snap.active.record.crossCertPem ?? "";
  }
  records(): CaRecord[] {
    return this.snap.entries.map((e) => e.record);
  }

  onChange(fn: (c: CaSetChange) => Promise<void> | void): void {
    this.listeners.push(fn);
  }

  recordIssued(c: IssuedCertificate): Promise<void> {
    return this.store.recordIssued(c);
  }

  /**
   * When an executor holding a certificate from `certCaId` (null: the first CA) should
   * renew because that CA is not the active one: one heartbeat interval after the
   * activation plus a jitter fixed per executor, so the fleet spreads over an interval
   * and the hint stays put between heartbeats. undefined when it holds the active CA's.
   */
  renewDeadline(executorId: string, certCaId: string | null): number | undefined {
    const active = this.active();
    const issuer = certCaId ?? this.snap.entries.find((e) => e.record.addedInVersion === 1)?.record.id;
    if (issuer === active.id) return undefined;
    const intervalMs = this.s.heartbeatIntervalSeconds * 1000;
    const windowMs = Math.max(intervalMs, this.moveWindow.ms);
    return active.activatedAt + intervalMs + Math.floor(renewalJitter(executorId, active.id) * windowMs);
  }

  /**
   * Sizes the window of renew hints after an activation to the fleet: one heartbeat
   * interval, or longer when the fleet could not renew in it without crowding out its
   * heartbeats (MOVES_PER_S renewals a second; 10,000 executors spread over 100 s).
   */
  private async sizeMoveWindow(): Promise<void> {
    const caId = this.snap.active.record.id;
    if (this.moveWindow.caId === caId) return;
    const live = (await this.store.bundleVersions()).filter((e) => !e.revoked).length;
    this.moveWindow = { caId, ms: moveWindowMs(live, this.s.heartbeatIntervalSeconds * 1000) };
  }

  /** Re-reads the store; applies and announces a change made by another process. */
  reload(): Promise<CaSetChange | undefined> {
    return this.locked(() => this.load());
  }

  /** A new CA, cross-signed by the active one, in the bundle (version + 1) but signing nothing yet. */
  prepare(who: AuditFields, now = Date.now()): Promise<CaView> {
    return this.locked(async () => {
      await this.load();
      if (this.snap.entries.some((e) => e.record.state === "prepared")) {
        throw new TetherError(409, ErrorCode.CONFLICT, "a prepared CA exists already: activate it first (tether ca activate)");
      }
      const active = this.snap.active.ca;
      const created = await createCa({ keyType: this.s.keyType, trustDomain: this.s.trustDomain, validitySeconds: this.s.caTtlSeconds, now: new Date(now) });
      const cross = await crossSign(created.ca, active, new Date(now));
      if (!(await this.store.insertCa(newCaRecord(created.id, created.ca, created.keyDer, cross, now), { state: "prepared" }))) {
        await this.load();
        throw new TetherError(409, ErrorCode.CONFLICT, "another process prepared a CA at the same time");
      }
      await this.load();
      const entry = this.mustFind(created.id);
      this.audit.event("ca.prepared", {
        ca_id: created.id, fingerprint_sha256: created.ca.fingerprintSha256, not_after: rfc3339(created.ca.notAfter),
        cross_signed_by: this.snap.active.record.id, trust_bundle_version: this.snap.version, ...who,
      });
      this.events.emit("ca.rotated", { phase: "prepared", ca_id: created.id, fingerprint_sha256: created.ca.fingerprintSha256, trust_bundle_version: this.snap.version });
      return this.view(entry.record, await this.store.bundleVersions(), now);
    });
  }

  /**
   * The prepared CA becomes active, the active one retired — only when every executor that
   * is neither offline nor revoked has adopted it (else 409 ADOPTION_INCOMPLETE naming
   * them), unless `force`. Listeners (the server certificate) have run when it resolves.
   */
  activate(opts: { force?: boolean }, who: AuditFields, now = Date.now()): Promise<CaView> {
    return this.locked(async () => {
      await this.load();
      const prepared = this.snap.entries.find((e) => e.record.state === "prepared");
      if (!prepared) throw new TetherError(409, ErrorCode.CONFLICT, "no prepared CA to activate: prepare one first (tether ca rotate)");
      const reported = await this.store.bundleVersions();
      const { pending } = adoptionOf(prepared.record, reported, this.s.heartbeatIntervalSeconds * 1000, now);
      const fields = { ca_id: prepared.record.id, fingerprint_sha256: prepared.record.fingerprint, ...who };
      if (pending.length > 0 && !opts.force) {
        this.audit.event("ca.activation_refused", { ...fields, pending });
        throw new TetherError(409, ErrorCode.ADOPTION_INCOMPLETE, `${pending.length} live executor(s) do not hold the prepared CA yet (or use force)`, {
          details: { pending },
        });
      }
      const previous = this.snap.active.record;
      if (!(await this.store.activateCa(prepared.record.id, now))) {
        await this.load();
        throw new TetherError(409, ErrorCode.CONFLICT, "the prepared CA changed meanwhile (another process activated or replaced it)");
      }
      this.audit.event("ca.activated", { ...fields, forced: opts.force === true && pending.length > 0, ...(pending.length ? { pending } : {}) });
      this.events.emit("ca.rotated", { phase: "activated", ca_id: prepared.record.id, fingerprint_sha256: prepared.record.fingerprint });
      this.audit.event("ca.retired", {
        ca_id: previous.id, fingerprint_sha256: previous.fingerprint,
        leaves_bundle_after: rfc3339(Math.max(previous.lastIssuedNotAfter, now)), ...who,
      });
      await this.load();
      return this.view(this.mustFind(prepared.record.id).record, reported, now);
    });
  }

  /** Retired CAs whose last certificate has expired leave the bundle (version + 1 each). */
  removeDrained(who: AuditFields, now = Date.now()): Promise<string[]> {
    return this.locked(async () => {
      await this.load();
      const removed: string[] = [];
      for (const { record } of this.snap.entries) {
        if (record.state !== "retired" || record.lastIssuedNotAfter > now) continue;
        if (await this.store.removeCa(record.id, now)) {
          removed.push(record.id);
          this.audit.event("ca.removed", { ca_id: record.id, fingerprint_sha256: record.fingerprint, ...who });
        }
      }
      if (removed.length) await this.load();
      return removed;
    });
  }

  /** One run of the schedule: removal of drained CAs, then prepare or (gated) activate when due. */
  async tick(now = Date.now()): Promise<void> {
    await this.removeDrained(SCHEDULE, now);
    const hasPrepared = this.snap.entries.some((e) => e.record.state === "prepared");
    const step = caScheduleStep(this.snap.active.record.notAfter, hasPrepared, this.s.caTtlSeconds * 1000, now);
    if (step.kind === "prepare") {
      await this.prepare(SCHEDULE, now).catch(ignoreConflict);
      return;
    }
    if (step.kind !== "activate") return;
    try {
      await this.activate({ force: step.force }, SCHEDULE, now);
      this.lastBlocked = "";
    } catch (e) {
      if (!(e instanceof TetherError && e.code === ErrorCode.ADOPTION_INCOMPLETE)) return ignoreConflict(e);
      const pending = JSON.stringify(e.details?.pending ?? []);
      if (pending !== this.lastBlocked) this.audit.event("ca.activation_blocked", { pending: e.details?.pending, ...SCHEDULE });
      this.lastBlocked = pending;
    }
  }

  /** Every CA with its state and adoption (PROTOCOL §5 `GET /api/v1/ca`, the CA part). */
  async status(now = Date.now()): Promise<{ trust_bundle_version: number; cas: CaView[] }> {
    const reported = await this.store.bundleVersions();
    const { version, entries } = this.snap;
    return { trust_bundle_version: version, cas: entries.map((e) => this.view(e.record, reported, now)) };
  }

  /** The CRLs of every CA in the bundle (PROTOCOL §7.5). */
  crlPem(now = Date.now()): Promise<string> {
    return this.crls.pem(this.snap.entries.map((e) => ({ id: e.record.id, ca: e.ca })), now);
  }

  private view(r: CaRecord, reported: ReportedVersion[], now: number): CaView {
    const { adoptedBy, pending } = adoptionOf(r, reported, this.s.heartbeatIntervalSeconds * 1000, now);
    return {
      fingerprint_sha256: r.fingerprint, state: r.state, not_before: rfc3339(r.notBefore), not_after: rfc3339(r.notAfter),
      adopted_by: adoptedBy, pending,
    };
  }

  private mustFind(id: string): Entry {
    const e = this.snap.entries.find((x) => x.record.id === id);
    if (!e) throw new Error(`CA ${id} is not in the trust bundle`);
    return e;
  }

  private locked<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.lock.then(fn);
    this.lock = run.catch(() => undefined);
    return run;
  }

  /** Reads the store; when the set differs from what is loaded, takes it, rewrites ca.pem and tells the listeners. */
  private async load(): Promise<CaSetChange | undefined> {
    const before = this.snap;
    const next = await readSnapshot(this.store, before);
    if (!next) return undefined;
    this.snap = next;
    writeBundleFile(this.s.dataDir, next.bundlePem);
    await this.sizeMoveWindow();
    const change = { version: next.version, activeChanged: before.active.record.id !== next.active.record.id, bundleChanged: before.bundlePem !== next.bundlePem };
    let failure: unknown;
    for (const fn of this.listeners) {
      try {
        await fn(change);
      } catch (e) {
        failure ??= e;
      }
    }
    if (failure) throw failure;
    return change;
  }
}

/** The set as the store holds it, or undefined when it is what `previous` already holds. Keys are read only for CAs not loaded yet. */
async function readSnapshot(store: CaStore, previous?: Snapshot): Promise<Snapshot | undefined> {
  const { version, cas } = await store.trustBundle();
  const signature = `${version}|${cas.map((c) => `${c.id}:${c.state}`).join(",")}`;
  if (previous?.signature === signature) return undefined;
  const known = new Map(previous?.entries.map((e) => [e.record.id, e]));
  const entries: Entry[] = [];
  for (const record of cas) {
    const old = known.get(record.id);
    entries.push(old ? { ...old, record } : { record, ca: await caFromDer(record.certPem, await store.caPrivateKey(record.id)), node: new X509Certificate(record.certPem) });
  }
  const active = entries.find((e) => e.record.state === "active");
  if (!active) throw new Error("the store holds no active CA");
  const bundlePem = bundleOf(entries.map((e) => e.ca));
  return { version, signature, entries, active, bundlePem, caCerts: entries.map((e) => e.node) };
}

/** `ca.pem` for operators and `--ca-file`: the current bundle, 0644, written atomically when it differs. */
function writeBundleFile(dataDir: string, pem: string): void {
  const path = join(dataDir, CA_CERT_FILE);
  if (fileExists(path) && readFileSync(path, "utf8") === pem) return;
  writeFileAtomic(path, pem, 0o644);
}
