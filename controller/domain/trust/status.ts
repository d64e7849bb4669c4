/** `GET /api/v1/ca` and `tether ca status` (PROTOCOL §5): the CA set with adoption, and the JWT key ring. */
import type { TrustStatus } from "../../../shared/wire/operator.ts";
import type { CaSet } from "./ca-set.ts";
import type { JwtKeyRing } from "./jwt-ring.ts";

export async function trustStatus(cas: CaSet, jwtKeys: Pick<JwtKeyRing, "views">, now = Date.now()): Promise<TrustStatus> {
  const { trust_bundle_version, cas: views } = await cas.status(now);
  return { trust_bundle_version, cas: views, jwt_keys: jwtKeys.views() };
}
