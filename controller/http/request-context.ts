/** What the guard chain attaches to a request, and what a route declares. */
import type { ClientCertIdentity } from "../../certs/client-cert.ts";
import type { ExecutorAuthState } from "../store/types.ts";
import type { ExecutorClaims } from "../domain/jwt.ts";
import type { OperatorPrincipal } from "../domain/api-tokens.ts";

export type Guard = "mtls" | "jwt" | "hmac";
export type Plane = "executor" | "operator" | "public" | "dev";

export interface RouteDeclaration {
  plane: Plane;
  /** Executor plane: the guard chain, in PROTOCOL §3.2 order. */
  guards?: Guard[];
  /** Operator plane: the capability the route needs. */
  capability?: string;
}

declare module "fastify" {
  interface FastifyRequest {
    rawBody?: Buffer;
    jsonInvalid?: boolean;
    certIdentity?: ClientCertIdentity;
    executorAuth?: ExecutorAuthState;
    jwtClaims?: ExecutorClaims;
    /** Operator plane: the API token that authenticated the request. */
    operator?: OperatorPrincipal;
  }
  interface FastifyContextConfig {
    route?: RouteDeclaration;
  }
}

export function executorIdParam(params: unknown): string {
  return (params as { id?: string }).id ?? "";
}
