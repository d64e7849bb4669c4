/**
 * The trust bundle part (PROTOCOL §7.2): which CAs the controller is verified
 * with, and how a newer bundle is adopted.
 *
 *   - every heartbeat reports the version held (`version`); when an answer shows a
 *     newer one, `controllerVersion()` fetches `GET /v1/ca/bundle.pem` over the
 *     connection already trusted;
 *   - renew and re-register answers carry the bundle and its version: `offer()`;
 *   - a bundle is adopted only when it parses, holds only CA certificates and the
 *     executor's certificate still chains to one of them — else the old one stays
 *     and the log says why; adopted, it is saved with its version in one atomic
 *     write and from then on it alone is trusted (CAs that left it are dropped);
 *   - `lostTrust()` is how the daemon ends when the controller's chain keeps failing
 *     verification: every CA it trusted has left the bundle.
 */
import type { Logger } from "pino";
import { isAbortError } from "../timers.ts";
import type { ExecutorClient } from "../client.ts";
import { DaemonExit, ExitCode } from "../exit-codes.ts";
import { adoptionProblem, caFingerprints, sameCas } from "../trust-bundle.ts";
import type { Identity } from "./identity.ts";
import type { DaemonOptions } from "./options.ts";

/** A version as the wire may carry it: a whole number ≥ 0, else none. */
const wholeNumber = (v: unknown): number | undefined => (typeof v === "number" && Number.isSafeInteger(v) && v >= 0 ? v : undefined);

export class TrustBundle {
  private fetching?: Promise<void>;
  private fetchFailures = 0;
  private warnedOlder?: number;
  /** A fetched version that was not adopted: a version's contents never change, so it is not fetched again. */
  private rejected?: number;

  constructor(
    private readonly d: {
      log: Logger;
      client: ExecutorClient;
      identity: Identity;
      opts: Pick<DaemonOptions, "stateDir" | "caFilePem" | "caPin">;
      signal: AbortSignal;
    },
  ) {}

  /** The `trust_bundle_version` held, as every heartbeat reports it (0: unknown). */
  get version(): number {
    return this.d.identity.trustVersion;
  }

  /**
   * A bundle from a renew or re-register answer. `certPem` is the certificate the
   * executor uses from now on (a new one when the answer carried one). Applied by
   * the caller's next `installCredentials()`.
   */
  offer(pem: string, announced: number | undefined, source: string, certPem: string): void {
    const held = this.version;
    const version = wholeNumber(announced);
    if (version === undefined) {
      // A controller that does not version its bundle: a different set of CAs is news.
      if (held === 0 && pem && !sameCas(pem, this.d.identity.caPem)) this.adopt(pem, 0, source, certPem);
      return;
    }
    if (version > held) this.adopt(pem, version, source, certPem);
    else if (version < held) this.older(version);
  }

  /** The heartbeat's `trust_bundle_version`: fetch the bundle when it is newer than ours. Never throws but on a stop. */
  async controllerVersion(announced: number | undefined): Promise<void> {
    const version = wholeNumber(announced);
    if (version === undefined || version === this.version) return;
    if (version < this.version) return this.older(version);
    if (version === this.rejected) return;
    this.fetching ??= this.fetch(version).finally(() => (this.fetching = undefined));
    await this.fetching;
  }

  /** Where the trust in use comes from, for messages. */
  describe(): string {
    const { identity, opts } = this.d;
    if (identity.caPem) {
      const v = identity.trustVersion;
      return `the trust bundle in ${opts.stateDir}/ca.pem (${v ? `version ${v}` : "version unknown"}: ${caFingerprints(identity.caPem).join(", ")})`;
    }
    if (opts.caFilePem) return `--ca-file (${caFingerprints(opts.caFilePem).join(", ")})`;
    return `the CA pinned with --ca-fingerprint ${opts.caPin ?? ""}`;
  }

  /** The daemon's end when the controller's chain keeps failing verification (PROTOCOL §7.2). */
  lostTrust(code: string, attempts: number): DaemonExit {
    const { identity, opts } = this.d;
    const { urls } = this.d.client.endpoints;
    const where = urls.length > 1 ? ` at every one of its ${urls.length} --controller URLs (${urls.join(", ")})` : "";
    const seen = `TLS could not verify the controller's certificate ${attempts} times in a row (${code})${where}`;
    if (identity.executorId === undefined) {
      return new DaemonExit(
        ExitCode.ENROLLMENT_FAILED,
        `${seen} with ${this.describe()}: that is not the controller's CA, or --controller points at another server; nothing was sent. ` +
          `Check it against "tether ca show" on the controller host, or join with --ca-fingerprint SHA256:… ("tether token create --join-command URL" prints the command)`,
        "enrollment.untrusted",
      );
    }
    return new DaemonExit(
      ExitCode.REENROLL_REQUIRED,
      `${seen}: no CA in ${this.describe()} signed it. Every CA executor ${identity.executorId} trusted has left the controller's bundle ` +
        `(it was offline through CA rotations), or --controller points at another server. It must be enrolled again: move ${opts.stateDir} away and ` +
        `start with the command "tether token create --join-command URL" prints (a new token and --ca-fingerprint)`,
      "trust.lost",
    );
  }

  private async fetch(announced: number): Promise<void> {
    const { log, client, identity } = this.d;
    let got;
    try {
      got = await client.fetchBundle({ signal: this.d.signal });
    } catch (e) {
      if (isAbortError(e)) throw e;
      // Retried at the next heartbeat; said loudly once, then quietly until it works.
      const level = this.fetchFailures++ === 0 ? "warn" : "debug";
      log[level]({ event: "trust_bundle.fetch_failed", version: announced, err: (e as Error).message }, `could not fetch trust bundle version ${announced} (retrying with the next heartbeat)`);
      return;
    }
    this.fetchFailures = 0;
    if (got.version === undefined) {
      log.warn({ event: "trust_bundle.rejected", version: announced, source: "fetch", reason: "no X-Tether-Bundle-Version header" }, "the fetched trust bundle carries no version; keeping the one held");
      return;
    }
    if (got.version <= this.version) return;
    const outcome = this.adopt(got.pem, got.version, "fetch", identity.current.certPem);
    if (outcome === "adopted") identity.installCredentials();
    else if (outcome === "refused") this.rejected = got.version;
  }

  /** Validates and, if sound, saves and uses `pem` (next `installCredentials()`). */
  private adopt(pem: string, version: number, source: string, certPem: string): "adopted" | "refused" | "unsaved" {
    const { log, identity } = this.d;
    const held = identity.trustVersion;
    const problem = adoptionProblem(pem, certPem);
    if (problem) {
      log.warn(
        { event: "trust_bundle.rejected", version, held_version: held, source, reason: problem },
        `not adopting trust bundle version ${version}: ${problem}; keeping the one held`,
      );
      return "refused";
    }
    const before = caFingerprints(identity.caPem);
    const after = caFingerprints(pem);
    try {
      identity.useTrust(pem, version);
    } catch (e) {
      // Not saved, not used: the old bundle stays (a newer answer or heartbeat brings it again).
      log.error({ event: "error", what: "saving the trust bundle", version, err: (e as Error).message }, `could not save trust bundle version ${version}; keeping the one held`);
      return "unsaved";
    }
    log.info(
      {
        event: "trust_bundle.updated", executor_id: identity.executorId, version, previous_version: held, source,
        added: after.filter((f) => !before.includes(f)), removed: before.filter((f) => !after.includes(f)),
      },
      `trust bundle version ${version} adopted; new connections verify the controller with it`,
    );
    return "adopted";
  }

  private older(version: number): void {
    if (this.warnedOlder === version) return;
    this.warnedOlder = version;
    this.d.log.warn(
      { event: "trust_bundle.controller_older", version, held_version: this.version },
      `the controller reports trust bundle version ${version}, older than the ${this.version} held here (restored from a backup?); keeping ours`,
    );
  }
}
