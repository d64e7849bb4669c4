/**
 * Opens a controller's state from its data dir: keys, CA, database, audit log and
 * the domain services over them. Shared by `controller start` and the CLI commands
 * that act on a data dir while the controller runs.
 */
import type { X509Certificate } from "node:crypto";
import { ensurePrivateDir } from "../shared/secure-fs.ts";
import type { ControllerConfig } from "./config.ts";
import { openStore, type StoreBackground } from "./store/open-store.ts";
import type { Store } from "./store/types.ts";
import type { ChangeFeed, DutyLocks } from "./store/changes.ts";
import { FileAudit, type Audit } from "./domain/audit.ts";
import { EnrollmentTokens } from "./domain/enrollment.ts";
import { ApiTokens } from "./domain/api-tokens.ts";
import { ExecutorJwt } from "./domain/jwt.ts";
import { ExecutorService } from "./domain/executors.ts";
import { RateLimiter } from "./domain/rate-limit.ts";
import { JwtKeyRing } from "./domain/trust/jwt-ring.ts";
import { adoptSettings, publishSettings } from "./settings.ts";
import { TaskService } from "./domain/tasks.ts";
import { ExecutorAuthenticator } from "./domain/executor-authenticator.ts";
import { CaSet } from "./domain/trust/ca-set.ts";
import type { Bootstrap } from "./domain/trust/bootstrap.ts";
import { noMetrics, type ControllerMetrics } from "./metrics/metrics.ts";
import { EventBus } from "./domain/events.ts";
import { WsTickets } from "./domain/ws-tickets.ts";

export interface ControllerContext {
  config: ControllerConfig;
  store: Store;
  /** What other replicas changed (PostgreSQL; nothing arrives on the embedded store). */
  changes: ChangeFeed;
  /** The run-once duties this process holds. */
  duties: DutyLocks;
  audit: Audit;
  /** The CA set: the trust bundle, the active CA, rotation (PROTOCOL §7). */
  cas: CaSet;
  /** The JWT key ring (PROTOCOL §7.3). */
  jwtKeys: JwtKeyRing;
  jwt: ExecutorJwt;
  /** The guard chain's domain side (PROTOCOL §3.2). */
  auth: ExecutorAuthenticator;
  executors: ExecutorService;
  enrollment: EnrollmentTokens;
  apiTokens: ApiTokens;
  tasks: TaskService;
  registerLimiter: RateLimiter;
  /** What the domain and the HTTP layer count (PROTOCOL §9.1); `noMetrics` unless `--metrics-listen`. */
  metrics: ControllerMetrics;
  /** Live events of this process (PROTOCOL §10.1). */
  events: EventBus;
  /** WebSocket tickets minted here (memory only). */
  wsTickets: WsTickets;
  trust(): { caCerts: X509Certificate[]; trustDomain: string };
  close(): Promise<void>;
}

export async function openControllerContext(
  given: ControllerConfig,
  opts: { create: boolean; actor: string; onAuditError?: (e: unknown) => void; storeBackground?: StoreBackground; metrics?: ControllerMetrics },
): Promise<ControllerContext & { caBootstrap: Bootstrap }> {
  // First: with create false and no state yet it refuses before anything is written.
  const backend = await openStore({
    dataDir: given.dataDir, url: given.storeUrl, kekFile: given.kekFile, create: opts.create,
    busyTimeoutMs: given.storeBusyTimeoutMs, background: opts.storeBackground,
  });
  const { store } = backend;
  // The running controller (the one with background duties) publishes its settings; anyone else on the data dir adopts them.
  let config = given;
  try {
    if (opts.storeBackground) await publishSettings(store, given);
    else config = await adoptSettings(store, given);
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
  let cas: CaSet, caBootstrap: Bootstrap, jwtKeys: JwtKeyRing;
  try {
    ensurePrivateDir(config.dataDir);
    ({ set: cas, bootstrap: caBootstrap } = await CaSet.open(backend.cas, audit, {
      dataDir: config.dataDir, trustDomain: config.trustDomain, keyType: config.caKeyType, caTtlSeconds: config.caTtlSeconds,
      heartbeatIntervalSeconds: config.heartbeatIntervalSeconds,
    }));
    jwtKeys = await JwtKeyRing.open(backend.jwtKeys, config.dataDir, { jwtTtlSeconds: config.jwtTtlSeconds, keyTtlSeconds: config.jwtKeyTtlSeconds }, audit);
  } catch (e) {
    await backend.close();
    audit.close();
    throw e;
  }
  const metrics = opts.metrics ?? noMetrics;
  const jwt = new ExecutorJwt(jwtKeys, config.trustDomain, config.jwtTtlSeconds);
  // Dispatch is the executor lifecycle's lease ledger: heartbeats, epoch changes and revocations reach it.
  const events = new EventBus();
  cas.events = events;
  jwtKeys.events = events;
  const tasks = new TaskService(backend.tasks, audit, config.heartbeatIntervalSeconds, metrics, events);
  const executors = new ExecutorService(store, audit, cas, jwt, {
    trustDomain: config.trustDomain,
    certTtlSeconds: config.certTtlSeconds,
    jwtTtlSeconds: config.jwtTtlSeconds,
    heartbeatIntervalSeconds: config.heartbeatIntervalSeconds,
  }, tasks, metrics, events);
  return {
    config, store, audit, cas, jwtKeys, jwt, executors, tasks, caBootstrap, changes: backend.changes, duties: backend.duties, metrics,
    events, wsTickets: new WsTickets(),
    auth: new ExecutorAuthenticator(store, jwt),
    enrollment: new EnrollmentTokens(store, audit),
    apiTokens: new ApiTokens(store, audit),
    registerLimiter: new RateLimiter(config.registerBurst, config.registerPerSecond),
    trust: () => ({ caCerts: cas.caCerts(), trustDomain: config.trustDomain }),
    async close() {
      await backend.close();
      audit.close();
    },
  };
}
