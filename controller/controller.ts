/**
 * A running controller: state opened from the data dir, the HTTPS server, and the
 * housekeeping timers (nonce pruning, JWT cache pruning, server certificate renewal, the
 * CA set's reload and schedule). The TLS context follows the CA set: the bundle is the
 * `ca` the server requests client certificates with, and on an activation (here or by
 * another process) the server certificate is re-issued by the new CA and served at once,
 * followed by the new CA cross-signed by the previous one.
 */
import type { FastifyInstance } from "fastify";
import type { AddressInfo } from "node:net";
import type { Server as HttpsServer } from "node:https";
import { loadOrCreateServerCert, serverCertNeedsRenewal, type ServerCredentials } from "../certs/server-cert.ts";
import type { ControllerConfig } from "./config.ts";
import { openControllerContext, type ControllerContext } from "./context.ts";
import { buildServer, tlsContextOptions, type TlsMaterial } from "./http/server.ts";
import { LISTEN_BACKLOG } from "./http/network-bounds.ts";
import { serveTicketKeys } from "./http/tls-tickets.ts";
import { storeSealer, TlsTicketKeys } from "./domain/trust/tls-ticket-keys.ts";
import type { Bootstrap } from "./domain/trust/bootstrap.ts";
import { caCheckIntervalMs } from "./domain/trust/schedule.ts";
import { ErrorCode, TetherError } from "../shared/errors.ts";
import type { Duty } from "./store/changes.ts";
import type { PrometheusControllerMetrics } from "./metrics/prometheus.ts";
import type { MetricsListener } from "../shared/metrics-http.ts";

export interface RunningController {
  url: string;
  port: number;
  ctx: ControllerContext;
  app: FastifyInstance;
  /** `--metrics-listen`: where /metrics is served (http://…/metrics). */
  metricsUrl?: string;
  /** The active CA's fingerprint at start. */
  caFingerprint: string;
  caBootstrap: Bootstrap;
  /** The TLS session-ticket keys this listener encrypts and resumes with (shared through the store). */
  tlsTickets: TlsTicketKeys;
  /** Checks the server certificate now and swaps it in without a restart when due. */
  renewServerCertIfDue(): Promise<boolean>;
  serverCredentials(): ServerCredentials;
  close(): Promise<void>;
}

export async function startController(config: ControllerConfig): Promise<RunningController> {
  let app: FastifyInstance | undefined;
  // Only with --metrics-listen: otherwise the domain counts into no-ops and no request hook is mounted.
  const metrics: PrometheusControllerMetrics | undefined = config.metricsListen
    ? new (await import("./metrics/prometheus.ts")).PrometheusControllerMetrics()
    : undefined;
  let metricsListener: MetricsListener | undefined;
  // WAL checkpoints (with their fsync) off the event loop, or heartbeats stall behind them.
  const storeBackground = {
    checkpointIntervalMs: 500,
    // Liveness is judged at 3 and 6 intervals: a plain last-seen refresh may wait half of one.
    deferLastSeenMs: Math.min(5_000, (config.heartbeatIntervalSeconds * 1000) / 2),
    onError: (message: string) => {
      if (app) app.log.error({ message }, "background store work failed");
      else process.stderr.write(`background store work failed: ${message}\n`);
    },
    onOutage: (message: string) => app?.log.error({ message }, "store unavailable: answering 503 UNAVAILABLE"),
    onStoreError: metrics && (() => metrics.storeError()),
    onDuties: (held: Duty[], reason: string) => {
      if (app) app.log.info({ duties: held, reason }, "run-once duties changed");
      else process.stderr.write(`run-once duties: ${held.join(", ") || "none"} (${reason})\n`);
    },
  };
  const ctx = await openControllerContext(config, { create: true, actor: "controller", storeBackground, metrics });
  let creds: ServerCredentials;
  let tickets!: TlsTicketKeys;
  let ticketServing!: ReturnType<typeof serveTicketKeys>;
  /** The CA that issued `creds`. */
  let serverCaId = "";
  const timers: NodeJS.Timeout[] = [];
  const tls = (): TlsMaterial => ({ key: creds.keyPem, cert: creds.certPem + ctx.cas.serverChainPem(), ca: ctx.cas.bundlePem() });
  /** Server certificate work, one at a time: a renewal and an activation never interleave their files. */
  let serverCertWork: Promise<unknown> = Promise.resolve();
  const serially = <T>(fn: () => Promise<T>): Promise<T> => {
    const run = serverCertWork.then(fn);
    serverCertWork = run.catch(() => undefined);
    return run;
  };
  /** Loads server.pem, or issues it from the active CA (recorded, so the CA stays in the bundle while it is valid). */
  const loadServerCert = async (): Promise<boolean> => {
    const active = ctx.cas.active();
    const next = await loadOrCreateServerCert(config.dataDir, active.ca, { sans: config.sans, ttlSeconds: config.serverCertTtlSeconds });
    creds = next.creds;
    serverCaId = active.id;
    if (next.issued) {
      ctx.metrics.certificateIssued("server");
      await ctx.cas.recordIssued({ serialHex: creds.serialHex, caId: active.id, executorId: null, notAfter: creds.notAfter.getTime(), issuedAt: Date.now() });
    }
    return next.issued;
  };
  try {
    await loadServerCert();
    tickets = await TlsTicketKeys.open(ctx.store, storeSealer(config), { onWarning: (m) => process.stderr.write(`${m}\n`) });
    app = buildServer(ctx, tls(), { logLevel: config.logLevel });
    const log = app.log;
    ticketServing = serveTicketKeys(app.server as unknown as HttpsServer, tickets, (err) => log.error({ err }, "TLS ticket key callback failed"));
    await app.listen({ host: config.host, port: config.port, backlog: LISTEN_BACKLOG });
    if (metrics && config.metricsListen) metricsListener = await metrics.serve(ctx, config.metricsListen, app.log);
  } catch (e) {
    await app?.close().catch(() => undefined);
    await ctx.close();
    throw e;
  }
  if (config.env !== "production") {
    app.log.warn({ env: config.env }, "WARNING: development mode — POST /v1/dev/enrollment-tokens is mounted without authentication; never run this in production");
  }
  if (config.bench) {
    app.log.warn("WARNING: bench mode — POST /v1/bench/bare is mounted without guards and the /register rate limit is lifted; benchmarks only");
  }

  const server = app.server as unknown as HttpsServer;
  const serveTls = () => server.setSecureContext(tlsContextOptions(tls()));
  const renewServerCertIfDue = (): Promise<boolean> =>
    serially(async () => {
      // Also when a re-issue after an activation failed: the next check catches up.
      if (!serverCertNeedsRenewal(creds) && serverCaId === ctx.cas.active().id) return false;
      await loadServerCert();
      serveTls();
      ctx.audit.event("server_cert.renewed", { not_after: creds.notAfter.toISOString() });
      app.log.info({ not_after: creds.notAfter.toISOString() }, "server certificate renewed");
      return true;
    });
  // The CA set changed (here, or in another process and found by the reload below).
  ctx.cas.onChange((change) =>
    serially(async () => {
      if (change.activeChanged) {
        await loadServerCert(); // issued by another CA: re-issued by the active one
        ctx.audit.event("server_cert.reissued", { reason: "ca_activated", ca_id: ctx.cas.active().id, not_after: creds.notAfter.toISOString() });
      }
      serveTls();
      app.log.info({ trust_bundle_version: change.version, active_changed: change.activeChanged }, "trust bundle changed");
    }),
  );
  const every = (ms: number, fn: () => Promise<unknown> | void) => {
    const t = setInterval(() => {
      Promise.resolve()
        .then(fn)
        .catch((err) => {
          // A store outage is reported by the store itself (at most every 10 s), not once per timer tick.
          if (!(err instanceof TetherError && err.code === ErrorCode.UNAVAILABLE)) app.log.error({ err }, "housekeeping failed");
        });
    }, ms);
    t.unref();
    timers.push(t);
  };
  /** A duty runs on the one replica holding it (every duty, on the embedded store). */
  const duty = (name: Duty, ms: number, fn: () => Promise<unknown>) => every(ms, () => (ctx.duties.holds(name) ? fn() : undefined));
  duty("prune-nonces", 60_000, () => ctx.store.pruneNonces(Date.now()));
  every(60_000, () => ctx.jwt.pruneCache());
  every(config.serverCertCheckMs, renewServerCertIfDue);
  // Another process (the CLI, another replica) may change the CA set or the JWT key ring:
  // noticed at once through the change feed, and within a poll in any case.
  const refreshTrust = () => Promise.all([ctx.cas.reload(), ctx.jwtKeys.refresh()]);
  every(config.trustPollMs, refreshTrust);
  duty("ca-schedule", caCheckIntervalMs(config.caTtlSeconds * 1000), () => ctx.cas.tick());
  // The --jwt-key-ttl schedule and removals of retired keys.
  duty("jwt-schedule", config.trustPollMs, () => ctx.jwtKeys.tick());
  // TLS ticket keys: rotated by the replica running the trust schedules, read by every replica.
  duty("jwt-schedule", 60_000, async () => {
    if (await tickets.rotateIfDue()) ctx.audit.event("tls_ticket_key.rotated", { keys: tickets.size });
    ticketServing.refresh();
  });
  every(60_000, () => tickets.refresh().then(() => ticketServing.refresh()));
  duty("reclaim", config.heartbeatIntervalSeconds * 1000, () => ctx.tasks.reclaim());
  const unsubscribe = [
    tickets.follow(ctx.changes, (err) => app.log.error({ err }, "reading the TLS ticket keys failed")),
    ctx.changes.subscribe((c) => {
      if (c.kind === "trust") refreshTrust().catch((err) => app.log.error({ err }, "trust refresh after a change failed"));
      else if (c.kind === "tasks") ctx.tasks.wake();
    }),
    // Back from an interruption: whatever changed meanwhile may hold work or trust changes.
    ctx.changes.onResync(() => {
      ctx.tasks.wake();
      refreshTrust().catch((err) => app.log.error({ err }, "trust refresh after a resync failed"));
    }),
  ];

  const address = app.server.address() as AddressInfo;
  const host = address.family === "IPv6" ? `[${address.address}]` : address.address;
  let closed = false;
  return {
    url: `https://${host}:${address.port}`,
    port: address.port,
    metricsUrl: metricsListener?.url,
    ctx,
    app,
    caFingerprint: ctx.cas.active().ca.fingerprintSha256,
    caBootstrap: ctx.caBootstrap,
    tlsTickets: tickets,
    renewServerCertIfDue,
    serverCredentials: () => creds,
    async close() {
      if (closed) return;
      closed = true;
      for (const t of timers) clearInterval(t);
      for (const u of unsubscribe) u();
      await metricsListener?.close();
      ctx.tasks.shutdown();
      await app.close();
      await ctx.close();
    },
  };
}
