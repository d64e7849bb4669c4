/** What `tether executor run` hands the daemon: its settings and the outside world it uses. */
import { readFileSync } from "node:fs";
import type { Logger } from "pino";
import type { CaFingerprint } from "../../shared/fingerprint.ts";
import type { BackoffOptions, Random } from "../backoff.ts";
import type { KeyType } from "../csr.ts";
import type { StepHook } from "../identity-store.ts";
import type { DaemonMetrics } from "../metrics.ts";
import type { WorkSource } from "../work.ts";

export interface DaemonOptions {
  /** The controller (the first `--controller`). */
  controllerUrl: string;
  /**
   * The other `--controller` URLs: replicas of the same controller (one CA set, one
   * store, PROTOCOL §8), failed over to in this order (../endpoints.ts).
   */
  replicaUrls?: readonly string[];
  /**
   * Contents of `--ca-file`: what the controller is verified with until the executor
   * holds a trust bundle from it (saved in the state dir); unused from then on.
   */
  caFilePem?: string;
  /**
   * `--ca-fingerprint` (PROTOCOL §7.6), instead of `--ca-file` on a first start: the
   * bundle is downloaded unverified once and only the CA with this fingerprint is trusted.
   */
  caPin?: CaFingerprint;
  stateDir: string;
  /** Reads the enrollment token (from --token or --token-file) when one is needed; undefined when none was given. */
  token?: () => string | undefined;
  /** How the token was given, for messages ("--token-file /etc/tether/token"). */
  tokenSource?: string;
  name?: string;
  labels: Record<string, string>;
  capacity: number;
  allowedCommands: string[];
  keyType: KeyType;
  /** How long SIGTERM waits for running work before handing it back. */
  drainTimeoutMs: number;
  backoff?: BackoffOptions;
  requestTimeoutMs?: number;
  /** Chain-verification failures of the controller in a row, lasting at least `forMs`, that end the daemon (default 6 and 60 s). */
  untrusted?: { attempts?: number; forMs?: number };
}

export interface DaemonDeps {
  log: Logger;
  work?: WorkSource;
  random?: Random;
  now?: () => number;
  /** Test instrumentation of the identity store (simulated crashes). */
  storeHook?: StepHook;
  /**
   * `--metrics-listen` (PROTOCOL §9.1): the daemon reports to it, serves its /metrics
   * from the start of run() and closes it when run() ends. Undefined: no metrics.
   */
  metrics?: DaemonMetrics;
}

/** Reads a token file (trimmed) each time a token is needed, so a new token dropped in later is picked up. */
export function tokenFileReader(path: string): () => string | undefined {
  return () => {
    try {
      return readFileSync(path, "utf8").trim() || undefined;
    } catch (e) {
      // No file is normal once enrolled (operators delete used tokens).
      if ((e as NodeJS.ErrnoException).code === "ENOENT") return undefined;
      throw e;
    }
  };
}

/** The enrollment token, trimmed, or undefined when none was given or it cannot be read (logged). */
export function readToken(opts: Pick<DaemonOptions, "token" | "tokenSource">, log: Logger): string | undefined {
  try {
    const t = opts.token?.();
    return t && t.trim() ? t.trim() : undefined;
  } catch (e) {
    log.warn({ event: "token.unreadable", source: opts.tokenSource, err: (e as Error).message }, "cannot read the enrollment token");
    return undefined;
  }
}
