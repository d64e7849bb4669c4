/** What the guard chain attaches to a request, and what a route declares. */
import type { FastifyRequest } from "fastify";
import type { AuthenticatedExecutor } from "../domain/executor-authenticator.ts";
import type { ExecutorClaims } from "../domain/executor-auth.ts";
import type { OperatorPrincipal } from "../domain/api-tokens.ts";

export type Guard = "mtls" | "jwt" | "hmac";
export type Plane = "executor" | "operator" | "public" | "dev";

export interface RouteDeclaration {
  plane: Plane;
  /** Executor plane: the guard chain, in PROTOCOL §3.2 order. */
  guards?: Guard[];
  /** Operator plane: the capability the route needs. */
  capability?: string;
  /**
   * Operator plane, WebSocket routes only: the credentials come in the first frame
   * (PROTOCOL §10.1), so the API-token guard checks plain HTTP requests only.
   */
  auth?: "in-band";
}

declare module "fastify" {
  interface FastifyRequest {
    rawBody?: Buffer;
    jsonInvalid?: boolean;
    /** Executor plane: set by the mtls guard; `claims` by the jwt guard. */
    executor?: AuthenticatedExecutor;
    /** Operator plane: the API token that authenticated the request. */
    operator?: OperatorPrincipal;
  }
  interface FastifyContextConfig {
    route?: RouteDeclaration;
  }
}

/** The `:id` of an executor path, as the guards read it (before validation). */
export function executorIdParam(params: unknown): string {
  const id = (params as { id?: unknown } | undefined)?.id;
  return typeof id === "string" ? id : "";
}

/** A route's declaration did not attach the guard it relies on: a bug, never a client's fault (500). */
function missingGuard(what: string): Error {
  return new Error(`${what} is missing: the route's declared guard chain does not provide it`);
}

/** The executor the mtls guard authenticated. */
export function executorOf(request: FastifyRequest): AuthenticatedExecutor {
  if (!request.executor) throw missingGuard("the mtls guard's executor");
  return request.executor;
}

function holdsToken(who: AuthenticatedExecutor): who is AuthenticatedExecutor & { claims: ExecutorClaims } {
  return who.claims !== undefined;
}

/** The executor and the claims of its JWT (mtls and jwt guards). */
export function tokenHolderOf(request: FastifyRequest): AuthenticatedExecutor & { claims: ExecutorClaims } {
  const who = executorOf(request);
  if (!holdsToken(who)) throw missingGuard("the jwt guard's claims");
  return who;
}

/** The API token of an operator-plane request. */
export function operatorOf(request: FastifyRequest): OperatorPrincipal {
  if (!request.operator) throw missingGuard("the API-token guard's principal");
  return request.operator;
}
