import { DEFAULT_TRUST_DOMAIN } from "../shared/protocol.ts";
import type { CaKeyType } from "../certs/ca.ts";

export type TetherEnv = "production" | "development" | "test";

export interface ControllerConfig {
  dataDir: string;
  host: string;
  port: number;
  sans: string[];
  env: TetherEnv;
  trustDomain: string;
  caKeyType: CaKeyType;
  certTtlSeconds: number;
  jwtTtlSeconds: number;
  heartbeatIntervalSeconds: number;
  serverCertTtlSeconds: number;
  /** How often the server certificate is checked for renewal. */
  serverCertCheckMs: number;
  registerBurst: number;
  registerPerSecond: number;
  /** Log level for the pino logger; "silent" in tests. */
  logLevel: string;
  /**
   * Benchmark mode (`controller start --bench`, development/test only): mounts the
   * unguarded baseline route POST /v1/bench/bare. Refused in production.
   */
  bench?: boolean;
}

export function resolveEnv(dev: boolean, env = process.env.TETHER_ENV): TetherEnv {
  if (dev) return "development";
  if (env === undefined || env === "" || env === "production") return "production";
  if (env === "development" || env === "test") return env;
  throw new Error(`TETHER_ENV must be production, development or test (got "${env}")`);
}

export function defaultConfig(dataDir: string, overrides: Partial<ControllerConfig> = {}): ControllerConfig {
  return {
    dataDir,
    host: "127.0.0.1",
    port: 8443,
    sans: ["localhost", "127.0.0.1"],
    env: "production",
    trustDomain: process.env.TETHER_TRUST_DOMAIN || DEFAULT_TRUST_DOMAIN,
    caKeyType: "ed25519",
    certTtlSeconds: 24 * 3600,
    jwtTtlSeconds: 15 * 60,
    heartbeatIntervalSeconds: 10,
    serverCertTtlSeconds: 30 * 24 * 3600,
    serverCertCheckMs: 3600_000,
    registerBurst: 20,
    registerPerSecond: 10,
    logLevel: "info",
    ...overrides,
  };
}
