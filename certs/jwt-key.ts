/** The controller's Ed25519 JWT signing key (`jwt.key`), with its RFC 7638 thumbprint as `kid`. */
import { createHash, createPrivateKey, createPublicKey, generateKeyPairSync, type KeyObject } from "node:crypto";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { assertPrivateFile, ensurePrivateDir, fileExists, writeFileAtomic } from "../shared/secure-fs.ts";

export const JWT_KEY_FILE = "jwt.key";

export interface JwtSigningKey {
  kid: string;
  privateKey: KeyObject;
  publicKey: KeyObject;
  publicJwk: { kty: "OKP"; crv: "Ed25519"; x: string; kid: string; alg: "EdDSA"; use: "sig" };
}

export function jwkThumbprint(publicKey: KeyObject): string {
  const jwk = publicKey.export({ format: "jwk" }) as { crv: string; kty: string; x: string };
  return createHash("sha256").update(JSON.stringify({ crv: jwk.crv, kty: jwk.kty, x: jwk.x })).digest("base64url");
}

export async function loadOrCreateJwtKey(dataDir: string): Promise<JwtSigningKey> {
  ensurePrivateDir(dataDir);
  const path = join(dataDir, JWT_KEY_FILE);
  if (!fileExists(path)) {
    const { privateKey } = generateKeyPairSync("ed25519");
    writeFileAtomic(path, privateKey.export({ type: "pkcs8", format: "pem" }) as string);
  }
  assertPrivateFile(path);
  const privateKey = createPrivateKey(readFileSync(path, "utf8"));
  if (privateKey.asymmetricKeyType !== "ed25519") throw new Error(`${path} is not an Ed25519 key`);
  const publicKey = createPublicKey(privateKey);
  const kid = jwkThumbprint(publicKey);
  const { x } = publicKey.export({ format: "jwk" }) as { x: string };
  return { kid, privateKey, publicKey, publicJwk: { kty: "OKP", crv: "Ed25519", x, kid, alg: "EdDSA", use: "sig" } };
}
