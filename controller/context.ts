/**
 * Opens a controller's state from its data dir: keys, CA, database, audit log and
 * the domain services over them. Shared by `controller start` and the CLI commands
 * that act on a data dir while the controller runs.
 */
import { join } from "node:path";
import { existsSync } from "node:fs";
import { X509Certificate } from "node:crypto";
import { ensurePrivateDir } from "../shared/secure-fs.ts";
import { loadOrCreateCa, type Ca } from "../certs/ca.ts";
import { loadOrCreateJwtKey, type JwtSigningKey } from "../certs/jwt-key.ts";
import type { ControllerConfig } from "./config.ts";
import { KeyEncryptor } from "./store/key-encryption.ts";
import { DB_FILE, SqliteStore } from "./store/sqlite-store.ts";
import type { Store } from "./store/types.ts";
import { FileAudit, type Audit } from "./domain/audit.ts";
import { EnrollmentTokens } from "./domain/enrollment.ts";
import { ApiTokens } from "./domain/api-tokens.ts";
import { ExecutorJwt } from "./domain/jwt.ts";
import { ExecutorService } from "./domain/executors.ts";
import { RateLimiter } from "./domain/rate-limit.ts";
import { TaskService } from "./domain/tasks.ts";
import { SqliteTaskStore } from "./store/sqlite-task-store.ts";

export interface ControllerContext {
  config: ControllerConfig;
  store: Store;
  audit: Audit;
  ca: Ca;
  jwtKey: JwtSigningKey;
  jwt: ExecutorJwt;
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
  opts: { create: boolean; actor: string; onAuditError?: (e: unknown) => void },
): Promise<ControllerContext & { caCreated: boolean }> {
  const dbPath = join(config.dataDir, DB_FILE);
  if (!opts.create && !existsSync(dbPath)) {
    throw new Error(`no controller state in ${config.dataDir} (start the controller there first, or pass the right --data-dir)`);
  }
  ensurePrivateDir(config.dataDir);
  const { ca, created } = await loadOrCreateCa(config.dataDir, { keyType: config.caKeyType, trustDomain: config.trustDomain });
  const jwtKey = await loadOrCreateJwtKey(config.dataDir);
  const store = new SqliteStore(dbPath, KeyEncryptor.loadOrCreate(config.dataDir));
  const audit = new FileAudit(config.dataDir, opts.actor, opts.onAuditError);
  const jwt = new ExecutorJwt(jwtKey, config.trustDomain, config.jwtTtlSeconds);
  const caCerts = [new X509Certificate(ca.certPem)];
  const executors = new ExecutorService(store, audit, () => ca, jwt, {
    trustDomain: config.trustDomain,
    certTtlSeconds: config.certTtlSeconds,
    jwtTtlSeconds: config.jwtTtlSeconds,
    heartbeatIntervalSeconds: config.heartbeatIntervalSeconds,
  });
  const tasks = new TaskService(new SqliteTaskStore(store.db), store, executors, audit, config.heartbeatIntervalSeconds);
  return {
    config, store, audit, ca, jwtKey, jwt, executors, tasks, caCreated: created,
    enrollment: new EnrollmentTokens(store, audit),
    apiTokens: new ApiTokens(store, audit),
    registerLimiter: new RateLimiter(config.registerBurst, config.registerPerSecond),
    trust: () => ({ caCerts, trustDomain: config.trustDomain }),
    async close() {
      await store.close();
      audit.close();
    },
  };
}
