/**
 * The keys the controller encrypts TLS session tickets with (docs/security.md "TLS
 * session resumption"). A ticket lets an executor that reconnects skip the asymmetric
 * part of the handshake — after a controller restart, and on another replica — so the
 * keys live in the store, not in the process: sealed with the store's key-encryption
 * key (the one that seals HMAC keys; AES-256-GCM, bound to this use by its AAD) in the
 * controller settings, shared by every replica and kept across restarts.
 *
 *   - Each key is 48 random bytes: a 16-byte name (sent in the clear in every ticket,
 *     so a server finds the key), a 16-byte HMAC key and a 16-byte AES key.
 *   - A new key every `rotationMs` (24 h); the previous one is kept to decrypt, and
 *     nothing older. A ticket lives at most `TLS_SESSION_TIMEOUT_S` ≤ the rotation
 *     period, so every unexpired ticket was encrypted under one of the two kept keys.
 *   - One replica rotates (the caller decides which: the one holding the trust
 *     schedule duty); the others read the new keys on the store's change feed, on a
 *     resync, and on a periodic refresh.
 *
 * What a ticket does NOT carry over: any decision. A resumed connection presents the
 * client certificate of its original handshake, and the controller checks it exactly
 * as on a full handshake, with the trust, time and revocations of now
 * (controller/http/guards/mtls.ts). Key bytes are never logged: this class prints as a
 * count of keys.
 */
import { randomBytes } from "node:crypto";
import { inspect } from "node:util";
import type { ChangeFeed } from "../../store/changes.ts";
import { KeyEncryptor } from "../../store/key-encryption.ts";
import type { Store } from "../../store/types.ts";

export const TICKET_KEY_BYTES = 48;
const PART = 16;
/** How long a ticket key encrypts new tickets before the next one takes over. */
export const TICKET_KEY_ROTATION_MS = 24 * 3600_000;
/**
 * The TLS session lifetime (the server's `sessionTimeout`, seconds): ≤ the rotation
 * period (see above), and bounded in any case by the client certificate's own validity,
 * which is checked on every connection.
 */
export const TLS_SESSION_TIMEOUT_S = 24 * 3600;
/** The controller setting that holds the sealed keys. */
export const TICKET_KEYS_SETTING = "tlsTicketKeys";
/** Binds the sealed blob to this use: it cannot be swapped with another encrypted value. */
const AAD = "tether/tls-ticket-keys/v1";

export interface TicketKey {
  /** Sent in every ticket: finds the key. */
  name: Buffer;
  hmac: Buffer;
  aes: Buffer;
  /** Unix ms. */
  createdAt: number;
}

/** The store's key-encryption key (controller/store/key-encryption.ts). */
export interface Sealer {
  encrypt(plaintext: Buffer, aad: string): Buffer;
  decrypt(blob: Buffer, aad: string): Buffer;
}

export type SettingsStore = Pick<Store, "readSettings" | "writeSettings">;

export interface TicketKeyOptions {
  rotationMs?: number;
  now?: () => number;
  /** n random bytes (tests pin it; the controller uses node:crypto). */
  random?: (n: number) => Buffer;
  /** The stored keys could not be opened (a corrupt value): new ones replace them. Never given key bytes. */
  onWarning?: (message: string) => void;
}

function newKey(random: (n: number) => Buffer, createdAt: number): TicketKey {
  const b = random(TICKET_KEY_BYTES);
  if (b.length !== TICKET_KEY_BYTES) throw new Error("the random source returned the wrong number of bytes");
  return { name: b.subarray(0, PART), hmac: b.subarray(PART, 2 * PART), aes: b.subarray(2 * PART), createdAt };
}

function seal(keys: TicketKey[], sealer: Sealer): string {
  const plain = Buffer.from(JSON.stringify(keys.map((k) => ({ t: k.createdAt, k: Buffer.concat([k.name, k.hmac, k.aes]).toString("base64") }))));
  try {
    return sealer.encrypt(plain, AAD).toString("base64");
  } finally {
    plain.fill(0);
  }
}

/** The sealed value, opened and checked; undefined when there is none. Throws when it cannot be opened. */
function unseal(value: string | undefined, sealer: Sealer): TicketKey[] | undefined {
  if (value === undefined || value === "") return undefined;
  const plain = sealer.decrypt(Buffer.from(value, "base64"), AAD);
  let parsed: unknown;
  try {
    parsed = JSON.parse(plain.toString("utf8"));
  } finally {
    plain.fill(0);
  }
  if (!Array.isArray(parsed) || parsed.length === 0) throw new Error("no keys in the stored value");
  return parsed.map((e: { t?: unknown; k?: unknown }) => {
    const bytes = typeof e?.k === "string" ? Buffer.from(e.k, "base64") : Buffer.alloc(0);
    if (bytes.length !== TICKET_KEY_BYTES || typeof e.t !== "number" || !Number.isFinite(e.t)) throw new Error("a malformed key in the stored value");
    return { name: bytes.subarray(0, PART), hmac: bytes.subarray(PART, 2 * PART), aes: bytes.subarray(2 * PART), createdAt: e.t };
  });
}

export class TlsTicketKeys {
  /** Newest first: [current, previous?]. */
  private keys: TicketKey[];
  private readonly rotationMs: number;
  private readonly now: () => number;
  private readonly random: (n: number) => Buffer;
  /** Store work one at a time: a refresh never overwrites a rotation with what it read before it. */
  private work: Promise<unknown> = Promise.resolve();

  private constructor(
    private readonly store: SettingsStore,
    private readonly sealer: Sealer,
    keys: TicketKey[],
    private readonly opts: TicketKeyOptions,
  ) {
    this.keys = keys;
    this.rotationMs = opts.rotationMs ?? TICKET_KEY_ROTATION_MS;
    this.now = opts.now ?? Date.now;
    this.random = opts.random ?? randomBytes;
  }

  /** Loads the stored keys, or makes the first one and stores it (the first replica to start does). */
  static async open(store: SettingsStore, sealer: Sealer, opts: TicketKeyOptions = {}): Promise<TlsTicketKeys> {
    const ring = new TlsTicketKeys(store, sealer, [], opts);
    const stored = await ring.read();
    if (stored) ring.keys = stored;
    else {
      // Two replicas starting on an empty store may both get here; the later write wins and
      // the other replica takes it on the change feed (or its next refresh).
      ring.keys = [newKey(ring.random, ring.now())];
      await ring.write(ring.keys);
    }
    return ring;
  }

  /** The key new tickets are encrypted with. */
  current(): TicketKey {
    return this.keys[0]!;
  }

  /** The key named in a ticket, if it is one of ours (current or previous). */
  find(name: Buffer): TicketKey | undefined {
    for (const k of this.keys) if (k.name.equals(name)) return k;
    return undefined;
  }

  /** How many keys decrypt tickets now (1 or 2). */
  get size(): number {
    return this.keys.length;
  }

  /** Takes what the store holds now (another replica may have rotated). */
  refresh(): Promise<void> {
    return this.serially(async () => {
      const stored = await this.read();
      if (stored) this.replace(stored);
    });
  }

  /**
   * Rotates when the current key has encrypted for `rotationMs`: a new current key,
   * the old one kept as previous, anything older dropped. Run by one replica (the
   * caller's duty); reads the store first, so it builds on the latest keys.
   */
  rotateIfDue(): Promise<boolean> {
    return this.serially(async () => {
      const stored = await this.read();
      if (stored) this.replace(stored);
      const now = this.now();
      if (now - this.current().createdAt < this.rotationMs) return false;
      const next = [newKey(this.random, now), this.current()];
      await this.write(next);
      this.replace(next);
      return true;
    });
  }

  /** Re-reads on every settings change another replica commits, and after the feed was interrupted. */
  follow(changes: ChangeFeed, onError: (e: unknown) => void): () => void {
    const reread = () => void this.refresh().catch(onError);
    const offs = [changes.subscribe((c) => c.kind === "settings" && reread()), changes.onResync(reread)];
    return () => offs.forEach((off) => off());
  }

  toJSON(): { keys: number } {
    return { keys: this.keys.length };
  }

  [inspect.custom](): string {
    return `TlsTicketKeys { keys: ${this.keys.length} }`;
  }

  private async read(): Promise<TicketKey[] | undefined> {
    const settings = await this.store.readSettings();
    try {
      return unseal(settings[TICKET_KEYS_SETTING], this.sealer)?.slice(0, 2);
    } catch (e) {
      // Fail safe: tickets under unreadable keys just do not resume (a full handshake instead).
      this.opts.onWarning?.(`the stored TLS ticket keys cannot be opened (${(e as Error).message}); new ones replace them`);
      if (this.keys.length) return undefined;
      const fresh = [newKey(this.random, this.now())];
      await this.write(fresh);
      return fresh;
    }
  }

  private write(keys: TicketKey[]): Promise<void> {
    return this.store.writeSettings({ [TICKET_KEYS_SETTING]: seal(keys, this.sealer) }, this.now());
  }

  /** Takes `next`, keeping the objects of keys already held (same name) and wiping the ones dropped. */
  private replace(next: TicketKey[]): void {
    const held = new Map(this.keys.map((k) => [k.name.toString("hex"), k]));
    const keys = next.map((k) => {
      const same = held.get(k.name.toString("hex"));
      held.delete(k.name.toString("hex"));
      if (same && same !== k) wipe(k);
      return same ?? k;
    });
    for (const dropped of held.values()) wipe(dropped);
    this.keys = keys;
  }

  private serially<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.work.then(fn);
    this.work = run.catch(() => undefined);
    return run;
  }
}

/** Overwrites a dropped key's bytes. */
function wipe(k: TicketKey): void {
  for (const part of [k.name, k.hmac, k.aes]) part.fill(0);
}

/**
 * The store's key-encryption key, as the store itself picks it (controller/store/open-store.ts):
 * the replicas' `--kek-file` with a PostgreSQL store, the data dir's own KEK file with SQLite.
 */
export function storeSealer(config: { dataDir: string; storeUrl?: string; kekFile?: string }): Sealer {
  if (config.storeUrl) {
    if (!config.kekFile) throw new Error("--kek-file is required with a postgres:// store");
    return KeyEncryptor.fromFile(config.kekFile);
  }
  return KeyEncryptor.loadOrCreate(config.dataDir);
}
