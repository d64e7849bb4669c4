/**
 * The controller URLs the daemon was given (`--controller`, repeatable: replicas of
 * one controller behind one CA set, PROTOCOL §6, §8) and which one is in use.
 *
 *   - One URL is current; every request goes to it. It stays current while it
 *     answers (no round-robin while healthy).
 *   - A request to the current URL that fails in a way another replica may not —
 *     no connection, reset, timeout, TLS failure, or `503` — marks that URL failing
 *     and moves to the next URL, preferring one not marked failing; when all are,
 *     to the one after it (cycling, with the caller's backoff).
 *   - Failures reported for a URL that is no longer current (requests that were in
 *     flight when the switch happened) mark it but move nothing: one dead replica
 *     makes one switch, not one per request.
 *   - Any HTTP answer from a URL clears its failing mark (`503` aside); an answer
 *     over a verified connection also clears its "untrusted" mark.
 *
 * An "untrusted" URL is one whose TLS chain did not verify with the CAs held: it is
 * failed over like a dead one, but loudly, and the daemon ends for lost trust only
 * when every URL is untrusted (`untrustedEverywhere`); a replica that alone presents
 * a wrong certificate is a misconfiguration to fix, not a reason to stop the fleet.
 *
 * Nothing here is persisted; the daemon notes the URL of its last successful
 * contact in session.json and starts there next time (`prefer`).
 */
import type { Logger } from "pino";

export interface EndpointFailure {
  /** The error code (ECONNREFUSED, UND_ERR_CONNECT_TIMEOUT, UNAVAILABLE, UNABLE_TO_VERIFY_LEAF_SIGNATURE…). */
  code: string;
  message: string;
  /** `503`: the replica answered but cannot serve (its store is unreachable, it is shutting down). */
  unavailable?: boolean;
  /** The controller's chain did not verify with the CAs held (counts towards lost trust). */
  untrusted?: boolean;
  /** Another certificate verification failure (expired, wrong name): logged loudly, not counted. */
  badCertificate?: boolean;
}

interface UrlState {
  /** Since when it fails (no answer, or 503), until it answers. */
  failingSince?: number;
  /** Chain-verification failures since its last verified answer, and since when. */
  untrusted?: { sinceMs: number; count: number };
}

export class ControllerEndpoints {
  readonly urls: readonly string[];
  private index = 0;
  private readonly state: UrlState[];

  constructor(
    urls: readonly string[],
    private readonly log?: Logger,
  ) {
    if (urls.length === 0) throw new Error("at least one controller URL is needed");
    this.urls = [...urls];
    this.state = this.urls.map(() => ({}));
  }

  /** The URL requests go to now. */
  get current(): string {
    return this.urls[this.index]!;
  }

  get several(): boolean {
    return this.urls.length > 1;
  }

  /** Start on `url` (the last one that answered, from session.json) if it is one of ours. */
  prefer(url: string | undefined): void {
    const i = url === undefined ? -1 : this.urls.indexOf(url);
    if (i > 0 && i !== this.index) {
      this.index = i;
      this.log?.info({ event: "controller.resumed", controller: url }, `starting with ${url}, the controller URL that answered last`);
    }
  }

  /** An HTTP answer (any status) came from `url`; `verified`: over a connection whose server certificate verified. */
  answered(url: string, status: number, verified = true): void {
    const s = this.stateOf(url);
    if (!s) return;
    if (verified) s.untrusted = undefined;
    if (status !== 503) s.failingSince = undefined;
  }

  /** Whether `url` is marked failing. */
  isFailing(url: string): boolean {
    const s = this.stateOf(url);
    return s?.failingSince !== undefined || s?.untrusted !== undefined;
  }

  /**
   * A request to `url` failed in a way another replica may not. Marks it and, if it
   * is the current URL and there are others, moves to the next one (one log line).
   */
  failed(url: string, f: EndpointFailure, nowMs: number): void {
    const s = this.stateOf(url);
    if (!s) return;
    s.failingSince ??= nowMs;
    if (f.untrusted) {
      s.untrusted ??= { sinceMs: nowMs, count: 0 };
      s.untrusted.count++;
    }
    if (url !== this.current || !this.several) return;
    const from = this.index;
    this.index = this.nextIndex(from);
    const to = this.current;
    const reason = f.untrusted
      ? `its certificate does not verify with the CAs this executor trusts (${f.code}) — check that replica's server certificate`
      : f.badCertificate
        ? `its certificate was refused (${f.code}: ${f.message}) — check that replica's server certificate`
        : f.unavailable
          ? `it answered 503 (${f.code})`
          : `it cannot be reached (${f.code})`;
    const fields = { event: "controller.switched", from: url, to, code: f.code, reason: f.untrusted ? "untrusted" : f.badCertificate ? "bad-certificate" : f.unavailable ? "unavailable" : "unreachable" };
    const text = `switching controller from ${url} to ${to}: ${reason}${this.isFailing(to) ? " (every controller URL has failed recently; cycling with backoff)" : ""}`;
    // A replica that presents a certificate we cannot verify is a misconfiguration (or an attack): loud.
    if (f.untrusted || f.badCertificate) this.log?.error(fields, text);
    else this.log?.info(fields, text);
  }

  /**
   * When every URL's chain failed verification on its latest attempts: how many such
   * failures there were in all, and since when all of them have been failing so
   * (the latest of the URLs' first failures). Undefined while any URL is not
   * untrusted (it may be down, or fine): the daemon then keeps trying.
   */
  untrustedEverywhere(): { attempts: number; sinceMs: number } | undefined {
    let attempts = 0;
    let sinceMs = 0;
    for (const s of this.state) {
      if (!s.untrusted) return undefined;
      attempts += s.untrusted.count;
      sinceMs = Math.max(sinceMs, s.untrusted.sinceMs);
    }
    return { attempts, sinceMs };
  }

  private nextIndex(from: number): number {
    const n = this.urls.length;
    for (let k = 1; k < n; k++) {
      const i = (from + k) % n;
      if (!this.isFailing(this.urls[i]!)) return i;
    }
    return (from + 1) % n;
  }

  private stateOf(url: string): UrlState | undefined {
    const i = this.urls.indexOf(url);
    return i === -1 ? undefined : this.state[i];
  }
}
