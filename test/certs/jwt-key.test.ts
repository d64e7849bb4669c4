/** JWT signing key material (certs/jwt-key.ts): kid, JWK, serialisation, the legacy file. */
import { describe, expect, it } from "vitest";
import { chmodSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { calculateJwkThumbprint } from "jose";
import { jwtKeyFromPkcs8, newJwtKey, pkcs8Of, publicJwk, readLegacyJwtKey } from "../../certs/jwt-key.ts";
import { tempDir } from "../support/temp-dir.ts";

describe("JWT signing keys", () => {
  it("are Ed25519 with an RFC 7638 kid (cross-checked with jose) and a public JWK", async () => {
    const k = newJwtKey();
    expect(k.privateKey.asymmetricKeyType).toBe("ed25519");
    const jwk = publicJwk(k.kid, k.publicKey);
    expect(jwk).toMatchObject({ kty: "OKP", crv: "Ed25519", alg: "EdDSA", use: "sig", kid: k.kid });
    expect(jwk.x).toBe((k.publicKey.export({ format: "jwk" }) as { x: string }).x);
    expect(k.kid).toBe(await calculateJwkThumbprint({ kty: "OKP", crv: "Ed25519", x: jwk.x }, "sha256"));
  });

  it("round-trip through PKCS#8 as the store keeps them", () => {
    const k = newJwtKey();
    expect(jwtKeyFromPkcs8(pkcs8Of(k)).kid).toBe(k.kid);
  });

  it("the jwt.key an earlier version left is read, and refused, naming it, when others can read it", () => {
    const dir = tempDir();
    expect(readLegacyJwtKey(dir)).toBeUndefined();
    const k = newJwtKey();
    const path = join(dir, "jwt.key");
    writeFileSync(path, k.privateKey.export({ type: "pkcs8", format: "pem" }), { mode: 0o600 });
    expect(readLegacyJwtKey(dir)?.kid).toBe(k.kid);
    chmodSync(path, 0o644);
    expect(() => readLegacyJwtKey(dir)).toThrow(path);
  });
});
