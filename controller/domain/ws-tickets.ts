/**
 * WebSocket tickets (PROTOCOL §5, §10.1): single use, valid 30 s, kept in this process's
 * memory only and as a SHA-256 hash. A ticket is bound to the API token that minted it:
 * redeeming it re-checks that token in the store, so a ticket of a revoked or expired
 * token is dead. Tickets do not cross replicas (a browser redeems at once, on the
 * replica that minted it — behind a load balancer, with session affinity or retries).
 */
import { randomB64u, sha256Hex } from "../../shared/random.ts";

export const WS_TICKET_TTL_S = 30;
/** Unredeemed tickets kept at most; the oldest go first. */
export const MAX_WS_TICKETS = 10_000;
const TICKET_RE = /^tet_wst_[A-Za-z0-9_-]{43}$/;

export class WsTickets {
  /** hash → (token id, expiry ms); insertion order is expiry order. */
  private readonly tickets = new Map<string, { tokenId: string; expiresAt: number }>();

  constructor(private readonly clock: () => number = () => Date.now()) {}

  mint(tokenId: string): { ticket: string; expires_in_s: number } {
    const now = this.clock();
    this.prune(now);
    while (this.tickets.size >= MAX_WS_TICKETS) this.tickets.delete(this.tickets.keys().next().value as string);
    const ticket = "tet_wst_" + randomB64u(32);
    this.tickets.set(sha256Hex(ticket), { tokenId, expiresAt: now + WS_TICKET_TTL_S * 1000 });
    return { ticket, expires_in_s: WS_TICKET_TTL_S };
  }

  /** The id of the API token behind the ticket, once; undefined for a used, expired or unknown ticket. */
  redeem(ticket: unknown): string | undefined {
    if (typeof ticket !== "string" || !TICKET_RE.test(ticket)) return undefined;
    const hash = sha256Hex(ticket);
    const t = this.tickets.get(hash);
    if (!t) return undefined;
    this.tickets.delete(hash);
    return t.expiresAt > this.clock() ? t.tokenId : undefined;
  }

  private prune(now: number): void {
    for (const [hash, t] of this.tickets) {
      if (t.expiresAt > now) break;
      this.tickets.delete(hash);
    }
  }
}
