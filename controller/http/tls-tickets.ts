/**
 * TLS session resumption on the controller's listener (docs/security.md "TLS session
 * resumption"): tickets encrypted under the shared, rotated keys of
 * controller/domain/trust/tls-ticket-keys.ts, so a ticket from before a restart, or from
 * another replica, resumes. Node's public API holds ONE ticket key per server
 * (`setTicketKeys`), which would turn every rotation into a wave of full handshakes; its
 * secure context also takes an OpenSSL ticket-key callback (`enableTicketKeyCallback`,
 * the mechanism Node's own tests use for key rotation), which lets a ticket under the
 * previous key still decrypt. That one is used when present, with the public single-key
 * API as the fallback — either way a ticket that does not decrypt only costs a full
 * handshake.
 *
 * The callback runs inside OpenSSL for every ticket: it must never throw and must always
 * answer with 16-byte keys (Node aborts the process otherwise), so an unknown key name
 * gets "not found" with dummy keys, and any error a "no ticket".
 */
import { randomBytes } from "node:crypto";
import type { SecureContextOptions, Server } from "node:tls";
import type { TicketKey } from "../domain/trust/tls-ticket-keys.ts";

/**
 * OpenSSL resumes a session only in the context it was made in. Node's default is a
 * hash of the process's command line, which differs between replicas (their
 * --data-dir, --listen) and between restarts with other options: one fixed value.
 */
export const TLS_SESSION_ID_CONTEXT = "tether-controller/v1";

export interface TicketKeySource {
  current(): TicketKey;
  find(name: Buffer): TicketKey | undefined;
}

/** Node's native secure context (internal; only the two members used here, both checked before use). */
interface NativeSecureContext {
  enableTicketKeyCallback?: () => void;
  onticketkeycallback?: (name: Buffer, iv: Buffer, encrypt: boolean) => unknown[];
}

const DUMMY = Buffer.alloc(16);
/** OpenSSL's answers: 0 no key (decrypt: full handshake; encrypt: no ticket), 1 this key, 2 this key and issue a fresh ticket. */
const NO_KEY = [0, DUMMY, DUMMY, DUMMY, DUMMY];

/** The callback OpenSSL calls for every ticket it encrypts or decrypts. */
export function ticketKeyCallback(source: TicketKeySource, onError: (e: unknown) => void) {
  return (name: Buffer, _iv: Buffer, encrypt: boolean): unknown[] => {
    try {
      if (encrypt) {
        const k = source.current();
        return [1, k.hmac, k.aes, k.name, randomBytes(16)];
      }
      const k = source.find(name);
      // 2: resume, and send a new ticket under the current key, so an executor's ticket is
      // as young as its latest connection and moves to the new key after a rotation.
      return k ? [2, k.hmac, k.aes] : NO_KEY;
    } catch (e) {
      onError(e);
      return NO_KEY;
    }
  };
}

/**
 * Serves tickets under `source`'s keys on `server`, now and after every
 * `setSecureContext` (a server certificate renewal or a trust bundle change makes a new
 * native context, which would otherwise come with random keys of its own). Returns
 * whether the rotation-aware callback is in use (false: the single current key, set
 * again by `refresh`).
 */
export function serveTicketKeys(server: Server, source: TicketKeySource, onError: (e: unknown) => void): { rotationAware: boolean; refresh(): void } {
  const callback = ticketKeyCallback(source, onError);
  const native = (): NativeSecureContext | undefined => (server as unknown as { _sharedCreds?: { context?: NativeSecureContext } })._sharedCreds?.context;
  const rotationAware = typeof native()?.enableTicketKeyCallback === "function";
  const install = () => {
    const ctx = native();
    if (rotationAware && ctx && typeof ctx.enableTicketKeyCallback === "function") {
      ctx.enableTicketKeyCallback();
      ctx.onticketkeycallback = callback;
    } else {
      const k = source.current();
      server.setTicketKeys(Buffer.concat([k.name, k.hmac, k.aes]));
    }
  };
  install();
  const setSecureContext = server.setSecureContext;
  server.setSecureContext = function (this: Server, options: SecureContextOptions) {
    setSecureContext.call(this, options);
    install();
  };
  return { rotationAware, refresh: () => (rotationAware ? undefined : install()) };
}
