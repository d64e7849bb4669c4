/** `tether executor run` (the daemon) and `tether executor status` (PROTOCOL §6). */
import { readFileSync, statSync } from "node:fs";
import { resolve } from "node:path";
import { durationSeconds, parseKeyValues, required, requireString, UsageError, wholeNumber, type ParsedArgs } from "./args.ts";
import { info, out, type Command } from "./command.ts";
import { bundleCerts } from "../executor/certificate.ts";
import { KEY_TYPES, type KeyType } from "../executor/csr.ts";
import { IdentityStore } from "../executor/identity-store.ts";
import { parseCaFingerprint, type CaFingerprint } from "../shared/fingerprint.ts";
import { ExecutorDaemon, tokenFileReader } from "../executor/daemon/daemon.ts";
import { ExitCode } from "../executor/exit-codes.ts";
import { createLogger } from "../executor/logger.ts";
import { readStatus } from "../executor/status.ts";
import { CommandHandler } from "../executor/handlers/command.ts";
import { allowedNameProblem, loadsCode, runsAnything } from "../executor/handlers/command-policy.ts";
import { envNameProblem } from "../shared/task-kinds/command.ts";
import { LeaseWorkSource } from "../executor/leases.ts";
import { METRICS_LISTEN_HELP, metricsListenOption } from "./listen.ts";

const LOG_LEVELS = ["trace", "debug", "info", "warn", "error", "fatal", "silent"];

/**
 * Every `--controller` URL, in order (PROTOCOL §6, §8: repeated for replicas of one
 * controller). TETHER_CONTROLLER is used when none is given; it may list several,
 * separated by commas or spaces.
 */
function controllerUrls(args: ParsedArgs): string[] {
  let texts = args.lists.controller!;
  if (texts.length === 0) texts = (process.env.TETHER_CONTROLLER ?? "").split(/[\s,]+/).filter(Boolean);
  if (texts.length === 0) throw new UsageError("--controller is required");
  return [...new Set(texts.map(controllerUrl))];
}

function controllerUrl(text: string): string {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw new UsageError(`--controller expects a URL like https://controller:8443, got "${text}"`);
  }
  if (url.protocol !== "https:") throw new UsageError(`--controller must be an https:// URL (got ${url.protocol}//)`);
  if (url.search || url.hash) throw new UsageError("--controller must not carry a query or fragment");
  // URLs are logged (which replica is in use): they must not carry secrets.
  if (url.username || url.password) throw new UsageError("--controller must not carry a user name or password");
  return url.toString().replace(/\/+$/, "");
}

/**
 * How the controller is verified: exactly one of --ca-file / --ca-fingerprint on a
 * first start; once the state dir holds a trust bundle from the controller, both
 * may be left out (and are not used: the saved bundle is what is trusted).
 */
function controllerTrust(args: ParsedArgs, stateDir: string): { caFilePem?: string; caPin?: CaFingerprint } {
  const file = args.strings["ca-file"];
  const pinText = args.strings["ca-fingerprint"];
  if (file !== undefined && pinText !== undefined) throw new UsageError("give either --ca-file or --ca-fingerprint, not both");
  if (pinText !== undefined) {
    const caPin = parseCaFingerprint(pinText);
    if (!caPin) throw new UsageError(`--ca-fingerprint expects SHA256: and 64 hex digits (colons optional), as "tether ca show" prints it; got "${pinText}"`);
    return { caPin };
  }
  if (file !== undefined) return { caFilePem: readCaFile(file) };
  if (bundleCerts(new IdentityStore(stateDir).readTrust().pem).length === 0) {
    throw new UsageError(`${stateDir} holds no trust bundle yet: give --ca-file FILE or --ca-fingerprint SHA256:HEX to verify the controller on this first start`);
  }
  return {};
}

function readCaFile(file: string): string {
  const path = resolve(file);
  let pem: string;
  try {
    pem = readFileSync(path, "utf8");
  } catch (e) {
    throw new UsageError(`--ca-file: cannot read ${path} (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
  }
  if (bundleCerts(pem).length === 0) throw new UsageError(`--ca-file: ${path} holds no PEM certificate (use the controller's ca.pem / "tether ca bundle")`);
  return pem;
}

export const executorRun: Command = {
  spec: {
    name: "executor run",
    usage:
      "executor run --controller URL [--controller URL]… (--ca-file FILE | --ca-fingerprint SHA256:HEX) --state-dir DIR [--token TOKEN | --token-file FILE] [--name NAME] [--label k=v]… [--capacity N] [--allow-command NAME]… [--allow-env NAME]… [--metrics-listen 127.0.0.1:9465]",
    summary:
      "Runs the executor daemon. First start: generates a key, sends a CSR and registers with the enrollment token. " +
      "Later starts: reuses the identity in --state-dir and re-registers (epoch + 1) without a token. " +
      "Renews the JWT and the certificate (fresh key) at ~2/3 of their lifetimes, adopts newer trust bundles, drains on SIGTERM. " +
      "Several --controller URLs are replicas of one controller: the daemon stays on one while it answers and moves to the next " +
      "on connection errors, timeouts and 503 (never re-enrolling for it). " +
      "--ca-file or --ca-fingerprint is needed until the controller's trust bundle is saved in --state-dir (first start); later starts use that bundle. " +
      "Runs `command` tasks whose argv[0] was allowed with --allow-command (without any, it takes no tasks), " +
      "setting only the env names allowed with --allow-env. " +
      "Exit codes: 0 stopped, 1 error, 2 usage, 3 revoked, 4 identity expired/rejected or the controller no longer verifiable at any --controller URL (re-enroll), " +
      "5 enrollment failed (no or denied token, CA pin mismatch, controller not verifiable with --ca-file).",
    options: {
      controller: {
        kind: "list",
        arg: "URL",
        help: "the controller, e.g. https://controller:8443; repeat it for each replica of a controller with several (PROTOCOL §8)",
        env: "TETHER_CONTROLLER",
      },
      "ca-file": {
        kind: "string",
        arg: "FILE",
        help: "the controller's CA bundle (ca.pem) to verify it with until the executor holds the controller's own bundle (first start); not used after",
      },
      "ca-fingerprint": {
        kind: "string",
        arg: "SHA256:HEX",
        help: "instead of --ca-file on a first start: the controller's CA fingerprint (tether ca show; colons optional, any case); its bundle is fetched once and accepted only if it holds that CA",
      },
      "state-dir": { kind: "string", arg: "DIR", help: "where the identity lives (created 0700, files 0600)", env: "TETHER_STATE_DIR" },
      token: { kind: "string", arg: "TOKEN", help: "enrollment token (first start only; prefer --token-file: argv is visible to other users)" },
      "token-file": { kind: "string", arg: "FILE", help: "file holding the enrollment token; read when a token is needed (first start, re-enrollment)" },
      name: { kind: "string", arg: "NAME", help: "executor name shown to operators (≤ 64 chars, at enrollment)" },
      label: { kind: "list", arg: "k=v", help: "label sent at enrollment (used by task selectors)" },
      capacity: { kind: "string", arg: "N", help: "how many tasks may run at once", default: "1" },
      "allow-command": {
        kind: "list",
        arg: "NAME",
        help: "argv[0] a command task may run, matched exactly: a bare name (looked up in PATH) or an absolute path; no shell (docs/handlers.md)",
      },
      "allow-env": {
        kind: "list",
        arg: "NAME",
        help: "an environment variable a command task may set (exact name; default none: a task setting any other fails). Commands start from PATH, HOME and LANG only",
      },
      "metrics-listen": { kind: "string", arg: "HOST:PORT", help: METRICS_LISTEN_HELP },
      "key-type": { kind: "string", arg: "TYPE", help: `private key type: ${KEY_TYPES.join(", ")}`, default: "ed25519" },
      "drain-timeout": { kind: "string", arg: "DURATION", help: "on SIGTERM, how long running work may take before it is handed back", default: "60s" },
      "log-level": { kind: "string", arg: "LEVEL", help: LOG_LEVELS.join(", "), default: "info", env: "TETHER_LOG_LEVEL" },
    },
  },
  async run(args) {
    const [controller, ...replicaUrls] = controllerUrls(args);
    const stateDir = resolve(requireString(args, "state-dir"));
    const trust = controllerTrust(args, stateDir);
    const labels = parseKeyValues(args.lists.label!, "label");
    const capacity = required(wholeNumber(args, "capacity", 1024), "capacity");
    const keyType = args.strings["key-type"] as KeyType;
    if (!KEY_TYPES.includes(keyType)) throw new UsageError(`--key-type must be one of ${KEY_TYPES.join(", ")}`);
    const level = args.strings["log-level"]!;
    if (!LOG_LEVELS.includes(level)) throw new UsageError(`--log-level must be one of ${LOG_LEVELS.join(", ")}`);
    const name = args.strings.name;
    if (name !== undefined && (name.length < 1 || name.length > 64)) throw new UsageError("--name must be 1 to 64 characters");
    const drainTimeoutMs = required(durationSeconds(args, "drain-timeout"), "drain-timeout") * 1000;
    const metricsListen = metricsListenOption(args.strings["metrics-listen"]);
    if (args.strings.token !== undefined && args.strings["token-file"] !== undefined) throw new UsageError("give either --token or --token-file, not both");
    const allowed = [...new Set(args.lists["allow-command"]!)];
    for (const a of allowed) {
      const problem = allowedNameProblem(a);
      if (problem) throw new UsageError(`--allow-command: ${problem}`);
    }
    const allowEnv = [...new Set(args.lists["allow-env"]!)];
    for (const n of allowEnv) {
      const problem = envNameProblem(n);
      if (problem) throw new UsageError(`--allow-env: ${problem}`);
    }

    const log = createLogger({ level });
    let token: (() => string | undefined) | undefined;
    let tokenSource: string | undefined;
    if (args.strings.token !== undefined) {
      const t = args.strings.token;
      token = () => t;
      tokenSource = "--token";
    } else if (args.strings["token-file"] !== undefined) {
      const path = resolve(args.strings["token-file"]);
      token = tokenFileReader(path);
      tokenSource = `--token-file ${path}`;
      try {
        const mode = statSync(path).mode & 0o777;
        if (mode & 0o077) log.warn({ event: "token.file_mode", path, mode: mode.toString(8) }, `${path} is readable by group or others; chmod 600 it`);
      } catch {
        /* a missing file is fine once enrolled */
      }
    }

    for (const a of allowed.filter(runsAnything)) {
      log.warn({ event: "allow_command.broad", command: a }, `--allow-command ${a}: it runs whatever its arguments say, so tasks can run any command on this executor`);
    }
    for (const n of allowEnv.filter(loadsCode)) {
      log.warn({ event: "allow_env.loads_code", name: n }, `--allow-env ${n}: it makes programs load code a task chooses, so every allowed command can run more than itself`);
    }
    // Without --allow-command there is nothing this executor could run: it takes no tasks.
    const work = new LeaseWorkSource({ handlers: allowed.length ? [new CommandHandler({ allowed, allowEnv })] : [] });
    const daemon = new ExecutorDaemon(
      { controllerUrl: controller!, replicaUrls, ...trust, stateDir, token, tokenSource, name, labels, capacity, allowedCommands: allowed, keyType, drainTimeoutMs },
      // prom-client is loaded only when metrics are asked for.
      { log, work, metrics: metricsListen && new (await import("../executor/metrics.ts")).ExecutorMetrics(metricsListen) },
    );
    const onSignal = (signal: NodeJS.Signals) => daemon.shutdown(signal);
    process.on("SIGTERM", onSignal);
    process.on("SIGINT", onSignal);
    try {
      const code = await daemon.run();
      if (code !== ExitCode.OK) info(`tether executor run: ${lastWords(code)}`);
      return code;
    } finally {
      process.off("SIGTERM", onSignal);
      process.off("SIGINT", onSignal);
    }

    function lastWords(code: number): string {
      return daemon.lastExit?.message ?? `exited with code ${code}`;
    }
  },
};

export const executorStatus: Command = {
  spec: {
    name: "executor status",
    usage: "executor status --state-dir DIR [--json]",
    summary:
      "Shows the executor identity in --state-dir: id, epoch, certificate and JWT expiry, last successful contact, " +
      "the trust bundle version and the CAs it holds. " +
      "Exit 0 when the identity is usable; 1 no identity, 3 revoked, 4 certificate expired (for health checks).",
    options: {
      "state-dir": { kind: "string", arg: "DIR", help: "the executor's state directory", env: "TETHER_STATE_DIR" },
      json: { kind: "boolean", help: "print machine-readable JSON to stdout" },
    },
  },
  async run(args) {
    const stateDir = resolve(requireString(args, "state-dir"));
    const { status, exitCode } = readStatus(stateDir);
    if (args.flags.json) {
      out(JSON.stringify(status, null, 2));
    } else if (status.executor_id) {
      const rows: [string, unknown][] = [
        ["executor_id", status.executor_id],
        ["name", status.name],
        ["health", status.health],
        ["controller", status.controller],
        ["last_controller", status.last_contact_controller ?? "-"],
        ["epoch", status.epoch],
        ["labels", JSON.stringify(status.labels ?? {})],
        ["key_type", status.key_type],
        ["cert_serial", status.cert_serial],
        ["cert_expires_at", `${status.cert_expires_at} (${status.cert_expires_in_s! >= 0 ? `in ${status.cert_expires_in_s}s` : "expired"})`],
        ["jwt_expires_at", status.jwt_expires_at ?? "-"],
        ["last_contact_at", status.last_contact_at ?? "never"],
        ["daemon_pid", status.daemon_pid ?? "not running"],
        ["rotation_pending", status.rotation_pending],
        ["trust_bundle", status.trust_bundle_version ? `version ${status.trust_bundle_version}` : "version unknown"],
        ...(status.trusted_cas ?? []).map((c): [string, unknown] => ["  trusted_ca", `SHA256:${c.fingerprint_sha256} ${c.subject} (until ${c.not_after})`]),
      ];
      out(rows.map(([k, v]) => `${k.padEnd(17)} ${v === undefined ? "-" : String(v)}`).join("\n"));
    }
    for (const p of status.problems) info(`tether executor status: ${p}`);
    return exitCode;
  },
};
