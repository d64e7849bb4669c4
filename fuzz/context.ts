/** What every case builder reads: the model, the key material, and how to address the controller. */
import type { Case, Expectation } from "./case.ts";
import { serialize, type WireRequest } from "./http1.ts";
import type { Material } from "./material.ts";
import type { Rng } from "./rng.ts";
import type { Identity } from "./transport.ts";
import type { ExecutorState, World } from "./world.ts";

export interface FuzzContext {
  world: World;
  material: Material;
  /** The `x` of the controller's JWKS key (for algorithm-confusion tokens). */
  jwksX: string;
  /** `host:port` for the Host header. */
  authority: string;
  /** The controller runs with --dev (the dev route is mounted and may answer 2xx). */
  dev: boolean;
}

/** A loopback source address: a few for most traffic, many for /register (its rate limit is per address). */
export function sourceAddress(rng: Rng, many = false): string {
  return many ? `127.${rng.int(1, 254)}.${rng.int(0, 255)}.${rng.int(1, 254)}` : `127.0.0.${rng.int(1, 8)}`;
}

/** Where a connection comes from and how it talks TLS: one of a few loopback addresses, TLS 1.3 or (a fifth of the time) 1.2. */
export function connectionOf(rng: Rng, base: Identity, many = false): Identity {
  const localAddress = sourceAddress(rng, many);
  const tls12 = rng.chance(0.2);
  return { ...base, key: `${base.key}@${localAddress}${tls12 ? "/tls1.2" : ""}`, localAddress, tls12 };
}

export function anonymous(rng: Rng, many = false): Identity {
  return connectionOf(rng, { key: "anon" }, many);
}

export function asExecutor(e: ExecutorState, rng: Rng): Identity {
  return connectionOf(rng, e.identity);
}

/** A case as its builder describes it: the request's parts instead of its bytes, one expectation. */
export type StructuredRequest = Omit<Case, "bytes" | "raw" | "head" | "timeoutMs" | "expect" | "nudgeMs"> & WireRequest & Expectation & { timeoutMs?: number };

/** A well-framed request (whatever its contents), sent on a keep-alive connection. */
export function structured(r: StructuredRequest, ctx: FuzzContext): Case & { request: WireRequest } {
  const { method, target, headers, body, mustNotPass, status, timeoutMs, ...rest } = r;
  const request = { method, target, headers, body };
  return { ...rest, bytes: serialize(request, ctx.authority), raw: false, head: method === "HEAD", timeoutMs: timeoutMs ?? 30_000, expect: [{ mustNotPass, status }], request };
}

/** The first reason in a list, or undefined. */
export function firstReason(...reasons: (string | undefined)[]): string | undefined {
  return reasons.find((r) => r !== undefined);
}
