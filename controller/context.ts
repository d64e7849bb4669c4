/**
 * Opens a controller's state from its data dir: keys, CA, database, audit log and
 * the domain services over them. Shared by `controller start` and the CLI commands
 * that act on a data dir while the controller runs.
 */
import { X509Certificate } from "node:crypto";
import { ensurePrivateDir } from "../shared/secure-fs.ts";
import { loadOrCreateCa, type Ca } from "../certs/ca.ts";
import { loadOrCreateJwtKey, type JwtSigningKey } from "../certs/jwt-key.ts";
import type { ControllerConfig } from "./config.ts";
import { openStore, type StoreBackground } from "./store/open-store.ts";
import type { Store } from "./store/types.ts";
import { FileAudit, type Audit } from "./domain/audit.ts";
import { EnrollmentTokens } from "./domain/enrollment.ts";
import { ApiTokens } from "./domain/api-tokens.ts";
import { ExecutorJwt } from "./domain/jwt.ts";
import { ExecutorService } from "./domain/executors.ts";
import { RateLimiter } from "./domain/rate-limit.ts";
import { TaskService } from "./domain/tasks.ts";
import { ExecutorAuthenticator } from "./domain/executor-authenticator.ts";

export interface ControllerContext {
  config: ControllerConfig;
  store: Store;
  audit: Audit;
  ca: Ca;
  jwtKey: JwtSigningKey;
  jwt: ExecutorJwt;
  /** The guard chain's domain side (PROTOCOL §3.2). */
  auth: ExecutorAuthenticator;
  executors: ExecutorService;
  enrollment: EnrollmentTokens;
  apiTokens: ApiTokens;
  tasks: TaskService;
  registerLimiter: RateLimiter;
  trust(): { caCerts: X509Certificate[]; trustDomain: string };
  close(): Promise<void>;
}

export async function openControllerContext(
  config: ControllerConfig,
  opts: { create: boolean; actor: string; onAuditError?: (e: unknown) => void; storeBackground?: StoreBackground },
): Promise<ControllerContext & { caCreated: boolean }> {
  // First: with create false and no state yet it refuses before anything is written.
  const backend = await openStore({
    dataDir: config.dataDir, create: opts.create, busyTimeoutMs: config.storeBusyTimeoutMs, background: opts.storeBackground,
  });
  const { store } = backend;
  let ca: Ca, created: boolean, jwtKey: JwtSigningKey;
  try {
    ensurePrivateDir(config.dataDir);
    ({ ca, created } = await loadOrCreateCa(config.dataDir, { keyType: config.caKeyType, trustDomain: config.trustDomain }));
    jwtKey = await loadOrCreateJwtKey(config.dataDir);
  } catch (e) {
    await backend.close();
    throw e;
  }
  // Only the running controller (the one with background duties) rotates the audit log; CLI commands append and follow it (audit.ts).
  const audit = new FileAudit(config.dataDir, opts.actor, {
    onError: opts.onAuditError,
    rotation: opts.storeBackground ? { maxBytes: config.auditMaxBytes, maxFiles: config.auditMaxFiles } : undefined,
    aggregation: { windowMs: config.auditWindowMs, maxKinds: config.auditMaxKinds },
  });
  const jwt = new ExecutorJwt(jwtKey, config.trustDomain, config.jwtTtlSeconds);
  const caCerts = [new X509Certificate(ca.certPem)];
  // Dispatch is the executor lifecycle's lease ledger: heartbeats, epoch changes and revocations reach it.
  const tasks = new TaskService(backend.tasks, audit, config.heartbeatIntervalSeconds);
  const executors = new ExecutorService(store, audit, () => ca, jwt, {
    trustDomain: config.trustDomain,
    certTtlSeconds: config.certTtlSeconds,
    jwtTtlSeconds: config.jwtTtlSeconds,
    heartbeatIntervalSeconds: config.heartbeatIntervalSeconds,
  }, tasks);
  return {
    config, store, audit, ca, jwtKey, jwt, executors, tasks, caCreated: created,
    auth: new ExecutorAuthenticator(store, jwt),
    enrollment: new EnrollmentTokens(store, audit),
    apiTokens: new ApiTokens(store, audit),
    registerLimiter: new RateLimiter(config.registerBurst, config.registerPerSecond),
    trust: () => ({ caCerts, trustDomain: config.trustDomain }),
    async close() {
      await backend.close();
      audit.close();
    },
  };
}
