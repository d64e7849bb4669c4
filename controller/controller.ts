/**
 * A running controller: state opened from the data dir, the HTTPS server, and the
 * housekeeping timers (nonce pruning, JWT cache pruning, server certificate renewal).
 */
import type { FastifyInstance } from "fastify";
import type { AddressInfo } from "node:net";
import type { Server as HttpsServer } from "node:https";
import { loadOrCreateServerCert, serverCertNeedsRenewal, type ServerCredentials } from "../certs/server-cert.ts";
import type { ControllerConfig } from "./config.ts";
import { openControllerContext, type ControllerContext } from "./context.ts";
import { buildServer, tlsContextOptions } from "./http/server.ts";

export interface RunningController {
  url: string;
  port: number;
  ctx: ControllerContext;
  app: FastifyInstance;
  caFingerprint: string;
  caCreated: boolean;
  /** Checks the server certificate now and swaps it in without a restart when due. */
  renewServerCertIfDue(): Promise<boolean>;
  serverCredentials(): ServerCredentials;
  close(): Promise<void>;
}

export async function startController(config: ControllerConfig): Promise<RunningController> {
  let app: FastifyInstance | undefined;
  // WAL checkpoints (with their fsync) off the event loop, or heartbeats stall behind them.
  const storeBackground = {
    checkpointIntervalMs: 500,
    onError: (message: string) => {
      if (app) app.log.error({ message }, "background WAL checkpoint failed");
      else process.stderr.write(`background WAL checkpoint failed: ${message}\n`);
    },
    onOutage: (message: string) => app?.log.error({ message }, "store unavailable: answering 503 UNAVAILABLE"),
  };
  const ctx = await openControllerContext(config, { create: true, actor: "controller", storeBackground });
  let creds: ServerCredentials;
  const timers: NodeJS.Timeout[] = [];
  try {
    ({ creds } = await loadOrCreateServerCert(config.dataDir, ctx.ca, { sans: config.sans, ttlSeconds: config.serverCertTtlSeconds }));
    app = buildServer(ctx, { key: creds.keyPem, cert: creds.certPem, ca: ctx.ca.certPem }, { logLevel: config.logLevel });
    await app.listen({ host: config.host, port: config.port });
  } catch (e) {
    await ctx.close();
    throw e;
  }
  if (config.env !== "production") {
    app.log.warn({ env: config.env }, "WARNING: development mode — POST /v1/dev/enrollment-tokens is mounted without authentication; never run this in production");
  }
  if (config.bench) {
    app.log.warn("WARNING: bench mode — POST /v1/bench/bare is mounted without guards and the /register rate limit is lifted; benchmarks only");
  }

  const renewServerCertIfDue = async (): Promise<boolean> => {
    if (!serverCertNeedsRenewal(creds)) return false;
    const next = await loadOrCreateServerCert(config.dataDir, ctx.ca, { sans: config.sans, ttlSeconds: config.serverCertTtlSeconds });
    creds = next.creds;
    (app.server as unknown as HttpsServer).setSecureContext(tlsContextOptions({ key: creds.keyPem, cert: creds.certPem, ca: ctx.ca.certPem }));
    ctx.audit.event("server_cert.renewed", { not_after: creds.notAfter.toISOString() });
    app.log.info({ not_after: creds.notAfter.toISOString() }, "server certificate renewed");
    return true;
  };
  const every = (ms: number, fn: () => Promise<unknown> | void) => {
    const t = setInterval(() => {
      Promise.resolve()
        .then(fn)
        .catch((err) => app.log.error({ err }, "housekeeping failed"));
    }, ms);
    t.unref();
    timers.push(t);
  };
  every(60_000, () => ctx.store.pruneNonces(Date.now()));
  every(60_000, () => ctx.jwt.pruneCache());
  every(config.serverCertCheckMs, renewServerCertIfDue);
  every(config.heartbeatIntervalSeconds * 1000, () => ctx.tasks.reclaim());

  const address = app.server.address() as AddressInfo;
  const host = address.family === "IPv6" ? `[${address.address}]` : address.address;
  let closed = false;
  return {
    url: `https://${host}:${address.port}`,
    port: address.port,
    ctx,
    app,
    caFingerprint: ctx.ca.fingerprintSha256,
    caCreated: ctx.caCreated,
    renewServerCertIfDue,
    serverCredentials: () => creds,
    async close() {
      if (closed) return;
      closed = true;
      for (const t of timers) clearInterval(t);
      ctx.tasks.shutdown();
      await app.close();
      await ctx.close();
    },
  };
}
