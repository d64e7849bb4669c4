/** Public routes (PROTOCOL §4): the JWKS and health. */
import { Type, type Static } from "typebox";
import { Str } from "./parts.ts";

export const Jwk = Type.Object({
  kty: Type.Literal("OKP"),
  crv: Type.Literal("Ed25519"),
  x: Str,
  kid: Str,
  alg: Type.Literal("EdDSA"),
  use: Type.Literal("sig"),
});
export type Jwk = Static<typeof Jwk>;

export const Jwks = Type.Object({ keys: Type.Array(Jwk) });

export const Health = Type.Object({ status: Str });

export const publicRouteSchemas = {
  jwks: { response: { 200: Jwks } },
  healthz: { response: { 200: Health } },
} as const;
