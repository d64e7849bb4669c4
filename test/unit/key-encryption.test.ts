import { describe, expect, it } from "vitest";
import { statSync, chmodSync } from "node:fs";
import { tempDir } from "../support/temp-dir.ts";
import { join } from "node:path";
import { randomBytes } from "node:crypto";
import { KeyEncryptor } from "../../controller/store/key-encryption.ts";

describe("KeyEncryptor", () => {
  it("round-trips, binds to its row, and detects tampering", () => {
    const k = new KeyEncryptor(randomBytes(32));
    const secret = randomBytes(32);
    const blob = k.encrypt(secret, "executor:a");
    expect(blob.includes(secret)).toBe(false);
    expect(k.decrypt(blob, "executor:a")).toEqual(secret);
    expect(() => k.decrypt(blob, "executor:b")).toThrow();
    const tampered = Buffer.from(blob);
    tampered[tampered.length - 1]! ^= 1;
    expect(() => k.decrypt(tampered, "executor:a")).toThrow();
    expect(() => new KeyEncryptor(randomBytes(32)).decrypt(blob, "executor:a")).toThrow();
  });
  it("keeps its key in a 0600 file and refuses a readable one", () => {
    const dir = tempDir("kek-");
    const a = KeyEncryptor.loadOrCreate(dir);
    expect(statSync(join(dir, "hmac.kek")).mode & 0o777).toBe(0o600);
    const blob = a.encrypt(Buffer.from("x"), "r");
    expect(KeyEncryptor.loadOrCreate(dir).decrypt(blob, "r").toString()).toBe("x");
    chmodSync(join(dir, "hmac.kek"), 0o644);
    expect(() => KeyEncryptor.loadOrCreate(dir)).toThrow(/hmac\.kek/);
  });
});
