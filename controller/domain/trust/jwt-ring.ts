/**
 * The JWT key ring (PROTOCOL §7.3): one `active` key signs; a `next` key is published
 * in the JWKS at least one JWT lifetime before it may sign, so whoever caches the JWKS
 * already knows it; `retired` keys stay published, and keep verifying, until every token
 * they signed has expired. Rotation promotes next → active and makes a new next; it runs
 * on `tether jwt-key rotate` and every `--jwt-key-ttl`.
 *
 * The ring is data in the store (private keys encrypted under the KEK), so the CLI on
 * the data dir — and later other replicas — can rotate it: the running controller reloads
 * it on every tick (a handful of rows).
 */
import { noEvents, type EventSink } from "../events.ts";
import { rm } from "node:fs/promises";
import { join } from "node:path";
import type { KeyObject } from "node:crypto";
import { createPublicKey } from "node:crypto";
import { ErrorCode, TetherError } from "../../../shared/errors.ts";
import { rfc3339 } from "../../../shared/time.ts";
import type { Jwk } from "../../../shared/wire/public.ts";
import type { JwtKeyView } from "../../../shared/wire/operator.ts";
import {
  LEGACY_JWT_KEY_FILE, jwtKeyFromPkcs8, newJwtKey, pkcs8Of, publicJwk, readLegacyJwtKey, spkiOf, type JwtKeyPair,
} from "../../../certs/jwt-key.ts";
import type { JwtKeyRecord, JwtKeyStore } from "../../store/trust-types.ts";
import type { Audit, AuditFields } from "../audit.ts";

export interface JwtRingSettings {
  /** Lifetime of an executor JWT: the prepublish time of a next key and the afterlife of a retired one. */
  jwtTtlSeconds: number;
  /** How long a key signs before the schedule rotates it (`--jwt-key-ttl`). */
  keyTtlSeconds: number;
}

/** What signs and what verifies (the JWT code needs nothing else). */
export interface JwtKeys {
  signing(): { kid: string; privateKey: KeyObject };
  /** The public key of an active or retired key; undefined for an unknown kid or a next key (it signs nothing yet). */
  verifying(kid: string): KeyObject | undefined;
}

const RANK = { retired: 0, active: 1, next: 2 } as const;

/** A retired key leaves the ring this long after its last token could have expired (clock slack). */
const REMOVAL_SLACK_MS = 60_000;

interface Loaded {
  record: JwtKeyRecord;
  publicKey: KeyObject;
}

export class JwtKeyRing implements JwtKeys {
  private keys: Loaded[] = [];
  private active?: { kid: string; privateKey: KeyObject };
  private fingerprint = "";

  /** Where `jwt_key.rotated` goes (PROTOCOL §10.1); set by the composition (context.ts). */
  events: EventSink = noEvents;

  private constructor(
    private readonly store: JwtKeyStore,
    private readonly settings: JwtRingSettings,
    private readonly audit: Audit,
  ) {}

  /**
   * Loads the ring; on an empty store, imports an earlier version's `jwt.key` (then
   * removes the file: one copy of a private key, encrypted) or creates the first key,
   * and makes sure a next key is published. Safe when processes race to do it.
   */
  static async open(store: JwtKeyStore, dataDir: string, settings: JwtRingSettings, audit: Audit, now = Date.now()): Promise<JwtKeyRing> {
    const ring = new JwtKeyRing(store, settings, audit);
    const legacy = readLegacyJwtKey(dataDir);
    if ((await store.jwtKeys()).length === 0) {
      const first = legacy ?? newJwtKey();
      if (await ring.insert(first, "active", now, true)) {
        audit.event(legacy ? "jwt_key.imported" : "jwt_key.created", { kid: first.kid, state: "active" });
      }
    }
    await ring.reload();
    // Imported (now or by an earlier start): the file copy of the private key goes.
    if (legacy && ring.keys.some((k) => k.record.kid === legacy.kid)) await rm(join(dataDir, LEGACY_JWT_KEY_FILE), { force: true });
    await ring.ensureNext(now);
    return ring;
  }

  signing(): { kid: string; privateKey: KeyObject } {
    if (!this.active) throw new Error("the JWT key ring has no active key");
    return this.active;
  }

  verifying(kid: string): KeyObject | undefined {
    const k = this.keys.find((x) => x.record.kid === kid);
    return k && k.record.state !== "next" ? k.publicKey : undefined;
  }

  /** Every key that may have signed a live token, and the next one (PROTOCOL §4). */
  jwks(): Jwk[] {
    return this.keys.map((k) => publicJwk(k.record.kid, k.publicKey));
  }

  views(): JwtKeyView[] {
    return this.keys.map((k) => ({ kid: k.record.kid, state: k.record.state, created_at: rfc3339(k.record.createdAt) }));
  }


  /**
   * next → active, the active key → retired, a new next published. Refused (409 with
   * Retry-After) while the next key has not been published for one JWT lifetime yet.
   */
  async rotate(who: AuditFields, now = Date.now()): Promise<JwtKeyView[]> {
    await this.reload();
    await this.ensureNext(now);
    const next = this.keys.find((k) => k.record.state === "next")?.record;
    if (!next) throw new Error("the JWT key ring has no next key");
    const waitMs = next.signsFrom - now;
    if (waitMs > 0) {
      const s = Math.ceil(waitMs / 1000);
      throw new TetherError(409, ErrorCode.CONFLICT, `the next JWT key has not been published for one token lifetime yet; it may sign in ${s} s`, {
        headers: { "retry-after": String(s) }, details: { signs_from: rfc3339(next.signsFrom) },
      });
    }
    const previous = this.active?.kid;
    if (await this.store.promoteJwtKey(next.kid, now)) {
      this.audit.event("jwt_key.rotated", { kid: next.kid, previous_kid: previous, ...who });
      this.events.emit("jwt_key.rotated", { kid: next.kid, previous_kid: previous ?? null }, now);
    }
    await this.reload();
    await this.ensureNext(now);
    return this.views();
  }

  /**
   * Housekeeping (every second on the running controller): pick up changes other
   * processes made, rotate when the active key has signed for `--jwt-key-ttl`, let
   * retired keys go once their tokens have expired, and keep a next key published.
   */
  async tick(now = Date.now()): Promise<void> {
    await this.reload();
    const active = this.keys.find((k) => k.record.state === "active")?.record;
    const next = this.keys.find((k) => k.record.state === "next")?.record;
    const due = active?.activatedAt !== null && active !== undefined && active.activatedAt + this.settings.keyTtlSeconds * 1000 <= now;
    if (due && next && next.signsFrom <= now) await this.rotate({ actor: "schedule" }, now);
    for (const k of this.keys) {
      const r = k.record;
      if (r.state !== "retired" || r.retiredAt === null) continue;
      if (r.retiredAt + this.settings.jwtTtlSeconds * 1000 + REMOVAL_SLACK_MS > now) continue;
      if (await this.store.removeJwtKey(r.kid)) this.audit.event("jwt_key.removed", { kid: r.kid, retired_at: rfc3339(r.retiredAt) });
    }
    await this.reload();
    await this.ensureNext(now);
  }

  private async ensureNext(now: number): Promise<void> {
    if (this.keys.some((k) => k.record.state === "next")) return;
    const next = newJwtKey();
    if (await this.insert(next, "next", now, false)) {
      this.audit.event("jwt_key.published", { kid: next.kid, state: "next", signs_from: rfc3339(now + this.settings.jwtTtlSeconds * 1000) });
    }
    await this.reload();
  }

  /** false when another process won the race — published a key in that state first (the ring is reloaded either way). */
  private async insert(pair: JwtKeyPair, state: "next" | "active", now: number, onlyIfEmpty: boolean): Promise<boolean> {
    // A first (active) key signs at once; a next key once it has been published for one JWT lifetime.
    const signsFrom = state === "active" ? now : now + this.settings.jwtTtlSeconds * 1000;
    return this.store.insertJwtKey({ kid: pair.kid, publicKey: spkiOf(pair), privateKey: pkcs8Of(pair), now, signsFrom }, { state, onlyIfEmpty });
  }

  /** Picks up what other processes changed (every replica; the schedule is `tick`'s, on one). */
  refresh(): Promise<void> {
    return this.reload();
  }

  /** Re-reads the ring; decrypts the active private key only when the active key changed. */
  private async reload(): Promise<void> {
    // Oldest first; keys made in the same millisecond in the order they serve: retired, active, next.
    const records = (await this.store.jwtKeys()).sort((x, y) => x.createdAt - y.createdAt || RANK[x.state] - RANK[y.state]);
    const fingerprint = records.map((r) => `${r.kid}:${r.state}`).join(",");
    if (fingerprint === this.fingerprint && this.active) return;
    this.keys = records.map((record) => ({ record, publicKey: createPublicKey({ key: record.publicKey, format: "der", type: "spki" }) }));
    const active = records.find((r) => r.state === "active");
    if (active && active.kid !== this.active?.kid) {
      const pair = jwtKeyFromPkcs8(await this.store.jwtPrivateKey(active.kid));
      this.active = { kid: pair.kid, privateKey: pair.privateKey };
    }
    this.fingerprint = fingerprint;
  }
}

/** A fixed key set of one key (tests of the minting code). */
export function singleKey(pair: JwtKeyPair): JwtKeys {
  return {
    signing: () => ({ kid: pair.kid, privateKey: pair.privateKey }),
    verifying: (kid) => (kid === pair.kid ? pair.publicKey : undefined),
  };
}
