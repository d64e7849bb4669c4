/**
 * The TLS ticket key ring (controller/domain/trust/tls-ticket-keys.ts) and the callback
 * OpenSSL asks for ticket keys (controller/http/tls-tickets.ts): rotation keeps exactly
 * the current and the previous key, the store holds them sealed, a value that cannot be
 * opened is replaced, and the callback answers every name — unknown ones included — in
 * the shape Node requires (anything else aborts the process).
 */
import { describe, expect, it } from "vitest";
import { KeyEncryptor } from "../../controller/store/key-encryption.ts";
import { TICKET_KEY_ROTATION_MS, TICKET_KEYS_SETTING, TLS_SESSION_TIMEOUT_S, TlsTicketKeys } from "../../controller/domain/trust/tls-ticket-keys.ts";
import { ticketKeyCallback } from "../../controller/http/tls-tickets.ts";

function memoryStore() {
  const values: Record<string, string> = {};
  return {
    values,
    writes: 0,
    async readSettings() {
      return { ...values };
    },
    async writeSettings(v: Record<string, string>) {
      this.writes++;
      Object.assign(values, v);
    },
  };
}

describe("the ticket key ring", () => {
  it("a ticket never outlives the keys kept to decrypt it", () => {
    expect(TLS_SESSION_TIMEOUT_S * 1000).toBeLessThanOrEqual(TICKET_KEY_ROTATION_MS);
  });

  it("rotates once per period, keeping the previous key and dropping (and wiping) older ones", async () => {
    const store = memoryStore();
    let now = 1_000_000;
    const ring = await TlsTicketKeys.open(store, KeyEncryptor.generate(), { rotationMs: 1000, now: () => now });
    const k1 = ring.current();
    expect([ring.size, store.writes]).toEqual([1, 1]);
    now += 999;
    expect(await ring.rotateIfDue()).toBe(false);
    now += 1;
    expect(await ring.rotateIfDue()).toBe(true);
    const k2 = ring.current();
    expect(k2.name.equals(k1.name)).toBe(false);
    expect([ring.size, ring.find(k1.name), ring.find(k2.name)]).toEqual([2, k1, k2]);
    now += 1000;
    expect(await ring.rotateIfDue()).toBe(true);
    expect(ring.size).toBe(2);
    expect(ring.find(Buffer.from(k1.name))).toBeUndefined();
    expect(ring.find(k2.name)).toBe(k2);
    expect(k1.aes.equals(Buffer.alloc(16))).toBe(true); // wiped
  });

  it("replicas: a second opener takes the stored keys; a rotation elsewhere is taken on refresh", async () => {
    const store = memoryStore();
    const kek = KeyEncryptor.generate();
    let now = 5_000;
    const a = await TlsTicketKeys.open(store, kek, { rotationMs: 1000, now: () => now });
    const b = await TlsTicketKeys.open(store, kek, { rotationMs: 1000, now: () => now });
    expect(b.current().name.equals(a.current().name)).toBe(true);
    expect(store.writes).toBe(1);
    now += 1000;
    await a.rotateIfDue();
    await b.refresh();
    expect(b.current().name.equals(a.current().name)).toBe(true);
    expect(b.size).toBe(2);
  });

  it("keeps the keys sealed under the KEK; a value it cannot open is replaced, with a warning that names no key", async () => {
    const store = memoryStore();
    const warnings: string[] = [];
    const first = await TlsTicketKeys.open(store, KeyEncryptor.generate());
    const sealed = store.values[TICKET_KEYS_SETTING]!;
    expect(Buffer.from(sealed, "base64").includes(first.current().aes)).toBe(false);
    const other = await TlsTicketKeys.open(store, KeyEncryptor.generate(), { onWarning: (m) => warnings.push(m) });
    expect(other.current().name.equals(first.current().name)).toBe(false);
    expect(store.values[TICKET_KEYS_SETTING]).not.toBe(sealed);
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toMatch(/cannot be opened/);
    expect(warnings[0]).not.toContain(first.current().aes.toString("hex"));
  });
});

describe("the OpenSSL ticket key callback", () => {
  it("encrypts under the current key with a fresh IV; decrypts any kept key and asks for a new ticket; unknown names get dummy keys", async () => {
    const ring = await TlsTicketKeys.open(memoryStore(), KeyEncryptor.generate());
    const errors: unknown[] = [];
    const cb = ticketKeyCallback(ring, (e) => errors.push(e));
    const k = ring.current();
    const enc = cb(Buffer.alloc(16), Buffer.alloc(16), true) as [number, Buffer, Buffer, Buffer, Buffer];
    expect(enc[0]).toBe(1);
    expect([enc[1], enc[2], enc[3]]).toEqual([k.hmac, k.aes, k.name]);
    expect(enc[4]).toHaveLength(16);
    expect(enc[4].equals((cb(Buffer.alloc(16), Buffer.alloc(16), true) as Buffer[])[4]!)).toBe(false);
    expect(cb(k.name, Buffer.alloc(16), false)).toEqual([2, k.hmac, k.aes]);
    const unknown = cb(Buffer.alloc(16, 7), Buffer.alloc(16), false);
    expect(unknown[0]).toBe(0);
    for (const part of unknown.slice(1)) expect(part).toHaveLength(16);
    // A source that throws: "no key" in the same shape, reported, never thrown into OpenSSL.
    const broken = ticketKeyCallback({ current: () => { throw new Error("boom"); }, find: () => { throw new Error("boom"); } }, (e) => errors.push(e));
    for (const encrypt of [true, false]) expect(broken(Buffer.alloc(16), Buffer.alloc(16), encrypt)[0]).toBe(0);
    expect(errors).toHaveLength(2);
  });
});
