/**
 * HMAC keys are stored encrypted (AES-256-GCM) under a key-encryption key kept in
 * its own 0600 file, so a copy of the database alone reveals no HMAC key.
 */
import { createCipheriv, createDecipheriv, randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { assertPrivateFile, fileExists, writeFileAtomic } from "../../shared/secure-fs.ts";

export const KEK_FILE = "hmac.kek";
const VERSION = 1;

export class KeyEncryptor {
  constructor(private readonly kek: Buffer) {
    if (kek.length !== 32) throw new Error("key-encryption key must be 32 bytes");
  }

  static loadOrCreate(dataDir: string): KeyEncryptor {
    const path = join(dataDir, KEK_FILE);
    if (!fileExists(path)) writeFileAtomic(path, randomBytes(32).toString("base64") + "\n");
    return KeyEncryptor.fromFile(path);
  }

  /** A KEK file (`--kek-file`): base64 of 32 bytes, 0600, refused otherwise. */
  static fromFile(path: string): KeyEncryptor {
    assertPrivateFile(path);
    const kek = Buffer.from(readFileSync(path, "utf8").trim(), "base64");
    if (kek.length !== 32) throw new Error(`${path} does not hold a 32-byte base64 key`);
    return new KeyEncryptor(kek);
  }

  /** A new random KEK, not yet written anywhere (see `writeTo`). */
  static generate(): KeyEncryptor {
    return new KeyEncryptor(randomBytes(32));
  }

  /** Writes this KEK atomically, 0600 in a 0700 directory; never over an existing file. */
  writeTo(path: string): void {
    if (fileExists(path)) throw new Error(`${path} exists already; not overwriting a key-encryption key`);
    writeFileAtomic(path, this.kek.toString("base64") + "\n");
  }

  /** [version(1) | iv(12) | tag(16) | ciphertext]; `aad` binds the blob to its row. */
  encrypt(plaintext: Buffer, aad: string): Buffer {
    const iv = randomBytes(12);
    const c = createCipheriv("aes-256-gcm", this.kek, iv);
    c.setAAD(Buffer.from(aad));
    const ct = Buffer.concat([c.update(plaintext), c.final()]);
    return Buffer.concat([Buffer.from([VERSION]), iv, c.getAuthTag(), ct]);
  }

  decrypt(blob: Buffer, aad: string): Buffer {
    if (blob.length < 29 || blob[0] !== VERSION) throw new Error("unsupported encrypted key format");
    const d = createDecipheriv("aes-256-gcm", this.kek, blob.subarray(1, 13));
    d.setAAD(Buffer.from(aad));
    d.setAuthTag(blob.subarray(13, 29));
    return Buffer.concat([d.update(blob.subarray(29)), d.final()]);
  }
}
