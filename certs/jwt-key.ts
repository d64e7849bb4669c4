/**
 * Ed25519 JWT signing keys (PROTOCOL §3.2, §7.3): generation, (de)serialisation, the
 * RFC 7638 thumbprint used as `kid`, and the public JWK. Where keys live and when they
 * sign is the key ring's business (controller/domain/trust/jwt-ring.ts).
 */
import { createHash, createPrivateKey, createPublicKey, generateKeyPairSync, type KeyObject } from "node:crypto";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import type { Jwk } from "../shared/wire/public.ts";
import { assertPrivateFile, fileExists } from "../shared/secure-fs.ts";

/** Where versions before the key ring kept the one signing key (imported once, then removed). */
export const LEGACY_JWT_KEY_FILE = "jwt.key";

export interface JwtKeyPair {
  kid: string;
  privateKey: KeyObject;
  publicKey: KeyObject;
}

export function jwkThumbprint(publicKey: KeyObject): string {
  const jwk = publicKey.export({ format: "jwk" }) as { crv: string; kty: string; x: string };
  return createHash("sha256").update(JSON.stringify({ crv: jwk.crv, kty: jwk.kty, x: jwk.x })).digest("base64url");
}

function pairOf(privateKey: KeyObject, what: string): JwtKeyPair {
  if (privateKey.asymmetricKeyType !== "ed25519") throw new Error(`${what} is not an Ed25519 key`);
  const publicKey = createPublicKey(privateKey);
  return { kid: jwkThumbprint(publicKey), privateKey, publicKey };
}

export function newJwtKey(): JwtKeyPair {
  return pairOf(generateKeyPairSync("ed25519").privateKey, "a new key");
}

/** A key from its PKCS#8 DER (as the store keeps it). */
export function jwtKeyFromPkcs8(der: Buffer): JwtKeyPair {
  return pairOf(createPrivateKey({ key: der, format: "der", type: "pkcs8" }), "the stored JWT key");
}

export function pkcs8Of(pair: JwtKeyPair): Buffer {
  return pair.privateKey.export({ type: "pkcs8", format: "der" });
}

export function spkiOf(pair: JwtKeyPair): Buffer {
  return pair.publicKey.export({ type: "spki", format: "der" });
}

export function publicJwk(kid: string, publicKey: KeyObject): Jwk {
  const { x } = publicKey.export({ format: "jwk" }) as { x: string };
  return { kty: "OKP", crv: "Ed25519", x, kid, alg: "EdDSA", use: "sig" };
}

/** The signing key an earlier version left in the data dir, if any; refused (naming it) when others can read it. */
export function readLegacyJwtKey(dataDir: string): JwtKeyPair | undefined {
  const path = join(dataDir, LEGACY_JWT_KEY_FILE);
  if (!fileExists(path)) return undefined;
  assertPrivateFile(path);
  return pairOf(createPrivateKey(readFileSync(path, "utf8")), path);
}
