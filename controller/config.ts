import { DEFAULT_TRUST_DOMAIN } from "../shared/protocol.ts";
import type { CaKeyType } from "../certs/ca.ts";
import { DEFAULT_AUDIT_ROTATION } from "./domain/audit.ts";
import { DEFAULT_AGGREGATION } from "./domain/audit-aggregate.ts";
import { DEFAULT_BUSY_TIMEOUT_MS } from "./store/open-store.ts";
import { DEFAULT_NETWORK_BOUNDS, type NetworkBounds } from "./http/network-bounds.ts";

export type TetherEnv = "production" | "development" | "test";

/** Connection caps, handshake/header/request timeouts and the /register body limit: controller/http/network-bounds.ts. */
export interface ControllerConfig extends NetworkBounds {
  dataDir: string;
  host: string;
  port: number;
  sans: string[];
  env: TetherEnv;
  trustDomain: string;
  caKeyType: CaKeyType;
  /** A CA's lifetime (`--ca-ttl`): new CAs live this long; the schedule prepares at ½ and activates at ⅙ of it left (PROTOCOL §7.2). */
  caTtlSeconds: number;
  /** How often the running controller looks for a change of the CA set made by another process (the CLI on the data dir). */
  trustPollMs: number;
  certTtlSeconds: number;
  jwtTtlSeconds: number;
  /** How long a JWT signing key signs before the schedule rotates it (`--jwt-key-ttl`, PROTOCOL §7.3). */
  jwtKeyTtlSeconds: number;
  heartbeatIntervalSeconds: number;
  serverCertTtlSeconds: number;
  /** How often the server certificate is checked for renewal. */
  serverCertCheckMs: number;
  registerBurst: number;
  registerPerSecond: number;
  /** Log level for the pino logger; "silent" in tests. */
  logLevel: string;
  /** audit.log is rotated before a line would take it past this many bytes (docs/security.md "Audit volume"). */
  auditMaxBytes: number;
  /** Audit files kept, audit.log included; the oldest is dropped at a rotation. */
  auditMaxFiles: number;
  /** Rejections anyone can provoke: the first of a kind per window is written, repeats are counted. */
  auditWindowMs: number;
  /** Kinds of rejection held per window; more go into one catch-all count. */
  auditMaxKinds: number;
  /** How long a store operation waits for another connection's lock before it answers 503 UNAVAILABLE. */
  storeBusyTimeoutMs: number;
  /** A shared PostgreSQL database (`postgres://…`, PROTOCOL §8) instead of the SQLite file in the data dir. */
  storeUrl?: string;
  /** The replicas' shared key-encryption key (required with `storeUrl`). */
  kekFile?: string;
  /** `--metrics-listen`: serve Prometheus metrics on this plain-HTTP address (PROTOCOL §9.1); off when undefined. */
  metricsListen?: { host: string; port: number };
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
    caTtlSeconds: 8760 * 3600,
    trustPollMs: 1000,
    certTtlSeconds: 24 * 3600,
    jwtTtlSeconds: 15 * 60,
    jwtKeyTtlSeconds: 720 * 3600,
    heartbeatIntervalSeconds: 10,
    serverCertTtlSeconds: 30 * 24 * 3600,
    serverCertCheckMs: 3600_000,
    registerBurst: 20,
    registerPerSecond: 10,
    logLevel: "info",
    auditMaxBytes: DEFAULT_AUDIT_ROTATION.maxBytes,
    auditMaxFiles: DEFAULT_AUDIT_ROTATION.maxFiles,
    auditWindowMs: DEFAULT_AGGREGATION.windowMs,
    auditMaxKinds: DEFAULT_AGGREGATION.maxKinds,
    storeBusyTimeoutMs: DEFAULT_BUSY_TIMEOUT_MS,
    ...DEFAULT_NETWORK_BOUNDS,
    ...overrides,
  };
}
