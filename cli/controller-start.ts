import { defaultConfig, resolveEnv } from "../controller/config.ts";
import { startController } from "../controller/controller.ts";
import { DEFAULT_NETWORK_BOUNDS } from "../controller/http/network-bounds.ts";
import { durationSeconds, required, requireString, UsageError, wholeNumber, type ParsedArgs } from "./args.ts";
import { info, type Command } from "./command.ts";
import { dataDirOption, storeTarget } from "./data-dir.ts";
import { METRICS_LISTEN_HELP, metricsListenOption, parseListen } from "./listen.ts";

/** A duration option that has a default. */
const duration = (args: ParsedArgs, name: string): number => required(durationSeconds(args, name), name);

export const controllerStart: Command = {
  spec: {
    name: "controller start",
    usage: "controller start --data-dir DIR [--store postgres://… --kek-file FILE] [--listen HOST:PORT] [--san NAME]… [--dev] [--bench] [--cert-ttl 24h] [--jwt-ttl 15m] [--heartbeat-interval 10s] [--ca-ttl 8760h] [--jwt-key-ttl 720h] [--metrics-listen 127.0.0.1:9464]",
    summary:
      "Runs the controller (or one replica of it, with a postgres:// --store). On first start it creates the CA, the JWT signing key and the database (in --data-dir, or in the shared store, once); --data-dir also holds this process's server certificate and audit log.",
    options: {
      ...dataDirOption,
      listen: { kind: "string", arg: "HOST:PORT", help: "address to listen on", default: "127.0.0.1:8443", env: "TETHER_LISTEN" },
      "metrics-listen": { kind: "string", arg: "HOST:PORT", help: METRICS_LISTEN_HELP },
      san: { kind: "list", arg: "NAME", help: "DNS name or IP for the server certificate (default: localhost, 127.0.0.1)" },
      dev: { kind: "boolean", help: "development mode: mounts POST /v1/dev/enrollment-tokens without auth (never in production)" },
      bench: {
        kind: "boolean",
        help: "benchmark mode for `npm run bench`: mounts the unguarded POST /v1/bench/bare and lifts the /register rate limit and the per-address connection cap (all its load comes from one address); refused unless TETHER_ENV is development/test or --dev is given",
      },
      "cert-ttl": { kind: "string", arg: "DURATION", help: "executor certificate lifetime", default: "24h" },
      "jwt-ttl": { kind: "string", arg: "DURATION", help: "executor JWT lifetime", default: "15m" },
      "heartbeat-interval": { kind: "string", arg: "DURATION", help: "heartbeat interval told to executors", default: "10s" },
      "jwt-key-ttl": {
        kind: "string", arg: "DURATION", default: "720h",
        help: "how long a JWT signing key signs before the next one (published one JWT lifetime ahead) takes over",
      },
      "ca-key-type": { kind: "string", arg: "TYPE", help: "key type of new CAs (the first, and each rotation): ed25519 or p256", default: "ed25519" },
      "ca-ttl": {
        kind: "string", arg: "DURATION", default: "8760h",
        help: "lifetime of new CAs; a successor is prepared when the active CA has half of it left and activated (once adopted) at a sixth",
      },
      "log-level": { kind: "string", arg: "LEVEL", help: "trace, debug, info, warn, error or silent", default: "info", env: "TETHER_LOG_LEVEL" },
      "audit-max-mib": { kind: "string", arg: "N", help: "audit.log is rotated before it passes N MiB", default: "64" },
      "audit-max-files": { kind: "string", arg: "N", help: "audit files kept, audit.log included (the oldest is dropped)", default: "5" },
      "max-connections": { kind: "string", arg: "N", help: "open connections in total; more are closed at once (keep it under the process's file limit)", default: String(DEFAULT_NETWORK_BOUNDS.maxConnections) },
      "max-connections-per-address": { kind: "string", arg: "N", help: "open connections from one IPv4 address or IPv6 /64 (a NAT counts as one)", default: String(DEFAULT_NETWORK_BOUNDS.maxConnectionsPerAddress) },
    },
  },
  async run(args) {
    requireString(args, "data-dir"); // every replica has its own: server certificate, audit log
    const { dataDir, storeUrl, kekFile } = storeTarget(args);
    const { host, port } = parseListen(args.strings.listen!);
    const metricsListen = metricsListenOption(args.strings["metrics-listen"]);
    const caKeyType = args.strings["ca-key-type"];
    if (caKeyType !== "ed25519" && caKeyType !== "p256") throw new UsageError(`--ca-key-type must be ed25519 or p256`);
    const env = resolveEnv(args.flags.dev!);
    const bench = args.flags.bench!;
    if (bench && env === "production") {
      throw new UsageError("--bench is refused in production: set TETHER_ENV=development or test, or pass --dev");
    }
    const config = defaultConfig(dataDir, {
      host, port, caKeyType, storeUrl, kekFile, metricsListen,
      sans: args.lists.san!.length ? args.lists.san! : undefined,
      env,
      ...(bench ? { bench, registerBurst: 1_000_000, registerPerSecond: 1_000_000 } : {}),
      certTtlSeconds: duration(args, "cert-ttl"),
      jwtTtlSeconds: duration(args, "jwt-ttl"),
      heartbeatIntervalSeconds: duration(args, "heartbeat-interval"),
      caTtlSeconds: duration(args, "ca-ttl"),
      jwtKeyTtlSeconds: duration(args, "jwt-key-ttl"),
      logLevel: args.strings["log-level"]!,
      auditMaxBytes: required(wholeNumber(args, "audit-max-mib", 1024 * 1024), "audit-max-mib") * 1024 * 1024,
      auditMaxFiles: required(wholeNumber(args, "audit-max-files", 1000), "audit-max-files"),
      maxConnections: required(wholeNumber(args, "max-connections", 1_000_000), "max-connections"),
      maxConnectionsPerAddress: bench ? 0 : required(wholeNumber(args, "max-connections-per-address", 1_000_000), "max-connections-per-address"),
    });
    if (!config.sans || config.sans.length === 0) config.sans = ["localhost", "127.0.0.1"];
    const running = await startController(config);
    // Signal handlers first: whoever reads "listening on" may send SIGTERM at once.
    const stopped = new Promise<void>((resolveStop) => {
      const stop = (signal: string) => {
        info(`received ${signal}, shutting down`);
        running.close().then(resolveStop, (e) => {
          info(`shutdown error: ${(e as Error).message}`);
          resolveStop();
        });
      };
      process.once("SIGTERM", () => stop("SIGTERM"));
      process.once("SIGINT", () => stop("SIGINT"));
    });
    info(`tether controller listening on ${running.url} (${config.env})`);
    const bootstrap = { created: " (new CA created)", imported: " (imported from ca.key, now kept encrypted in the database)", loaded: "" }[running.caBootstrap];
    info(`CA fingerprint SHA256:${running.caFingerprint}${bootstrap}`);
    info(`data dir ${dataDir}`);
    if (running.metricsUrl) info(`metrics on ${running.metricsUrl}`);
    await stopped;
    return 0;
  },
};
