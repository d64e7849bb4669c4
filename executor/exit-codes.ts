/**
 * Exit codes of `tether executor run` / `tether executor status`. The terminal
 * ones (3, 4, 5) mean "restarting will not help": the systemd unit lists them in
 * RestartPreventExitStatus so a revoked executor does not restart in a loop.
 */
export const ExitCode = {
  /** Stopped cleanly (SIGTERM/SIGINT, after draining). `status`: identity present and valid. */
  OK: 0,
  /** Unexpected error, state dir unusable or locked by another daemon. `status`: no identity. */
  ERROR: 1,
  /** Bad command line. */
  USAGE: 2,
  /** The controller revoked this executor (CERT_REVOKED). */
  REVOKED: 3,
  /** The identity expired or is no longer accepted (CERT_REQUIRED): re-enroll with a new token. */
  REENROLL_REQUIRED: 4,
  /** Enrollment failed: no identity and no token, or the token was denied (ENROLLMENT_DENIED). */
  ENROLLMENT_FAILED: 5,
} as const;
export type ExitCode = (typeof ExitCode)[keyof typeof ExitCode];

/** Ends the daemon with an exit code and a one-line reason for the operator. */
export class DaemonExit extends Error {
  constructor(
    readonly exitCode: ExitCode,
    message: string,
    /** The `event` field of the final log line (see docs/runbook.md). */
    readonly event: string,
  ) {
    super(message);
    this.name = "DaemonExit";
  }
}
