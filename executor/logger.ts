/**
 * pino JSON lines on stderr. Secrets never get logged on purpose, and the
 * redaction list catches them if one slips into a logged object anyway.
 */
import pino, { type Logger } from "pino";

export type { Logger };

const SECRET_KEYS = ["jwt", "hmac_key", "hmacKey", "key", "keyPem", "token", "enrollment_token", "authorization", "csr_pem"];

export const REDACT_PATHS = [
  ...SECRET_KEYS,
  ...SECRET_KEYS.map((k) => `*.${k}`),
  "headers.authorization",
  'headers["x-tether-signature"]',
  "*.headers.authorization",
];

export function createLogger(opts: { level?: string; destination?: pino.DestinationStream } = {}): Logger {
  return pino(
    {
      level: opts.level ?? "info",
      base: { component: "executor", pid: process.pid },
      timestamp: pino.stdTimeFunctions.isoTime,
      redact: { paths: REDACT_PATHS, censor: "[REDACTED]" },
      formatters: { level: (label) => ({ level: label }) },
    },
    opts.destination ?? pino.destination({ fd: 2, sync: true }),
  );
}
