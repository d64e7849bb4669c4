/**
 * Joining with a CA pin (PROTOCOL §7.6): `--ca-fingerprint SHA256:…` instead of a
 * CA file on a first start. The bundle is downloaded once WITHOUT verifying the
 * server; it is accepted only when a CA certificate in it has the pinned
 * fingerprint, and then only that certificate is trusted: the registration is
 * verified with it, and the bundle in its answer (received over that verified
 * connection) is what the executor saves and trusts from then on. A mismatch ends
 * the daemon before anything else is sent: no token leaves the host.
 */
import type { Logger } from "pino";
import { TetherError } from "../../shared/errors.ts";
import type { CaFingerprint } from "../../shared/fingerprint.ts";
import { paths } from "../../shared/protocol.ts";
import { requestUrl, type ExecutorClient } from "../client.ts";
import { DaemonExit, ExitCode } from "../exit-codes.ts";
import { caFingerprints, pinnedCa } from "../trust-bundle.ts";
import type { ReactionRunner } from "./reaction-runner.ts";

/** The pinned CA certificate (PEM), from the controller's bundle; throws a DaemonExit (5) when the pin is not in it. */
export async function pinnedTrust(d: {
  log: Logger;
  client: ExecutorClient;
  reactions: ReactionRunner;
  pin: CaFingerprint;
  signal: AbortSignal;
}): Promise<string> {
  // Several replicas: the one that served (or refused) the download.
  let where = `${d.client.endpoints.current}${paths.caBundle}`;
  let got;
  try {
    // Network errors and 5xx are retried (the controller may still be starting); other answers end here.
    got = await d.reactions.run("CA bundle download (--ca-fingerprint)", () => d.client.fetchBundleUnverified({ signal: d.signal }), { inCredOp: true, passThrough: true });
  } catch (e) {
    if (!(e instanceof TetherError)) throw e;
    where = `${requestUrl(e) ?? d.client.endpoints.current}${paths.caBundle}`;
    throw new DaemonExit(
      ExitCode.ENROLLMENT_FAILED,
      `cannot check the CA pin: ${where} answered ${e.status} (${e.code}); is --controller right? Nothing was sent to the controller`,
      "ca_pin.unavailable",
    );
  }
  where = `${got.url}${paths.caBundle}`;
  const ca = pinnedCa(got.pem, d.pin);
  if (!ca) {
    const held = caFingerprints(got.pem);
    throw new DaemonExit(
      ExitCode.ENROLLMENT_FAILED,
      `the CA bundle served at ${where} holds no CA certificate with the fingerprint SHA256:${d.pin} given with --ca-fingerprint ` +
        `(it holds ${held.length ? held.map((f) => `SHA256:${f}`).join(", ") : "no certificate"}); nothing was sent to the controller (no token left this host). ` +
        `Check the fingerprint against "tether ca show" on the controller host, and --controller`,
      "ca_pin.mismatch",
    );
  }
  d.log.info({ event: "ca_pin.verified", fingerprint: `SHA256:${d.pin}`, bundle_cas: caFingerprints(got.pem).length }, "the controller's CA matches --ca-fingerprint; registering over a connection verified with it");
  return ca;
}
