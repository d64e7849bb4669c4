/**
 * What the fuzzer knows about the controller's state, so the oracle can say exactly
 * whether a request should have been let through: each executor's current
 * credentials and what they replaced (and when), revocations, operator tokens and
 * enrollment tokens with their expiries, revocations and uses, leases held.
 *
 * Every change is stamped with the time its 2xx response arrived: a request sent
 * after that moment must see the change (a revoked executor refused, a stale epoch
 * refused, a revoked token refused); one already in flight is not judged on it.
 */
import { createHash } from "node:crypto";
import type { Role } from "../shared/wire/operator.ts";
import type { Enrolled } from "../test/support/wire.ts";
import type { Identity } from "./transport.ts";

/** An executor as registered (test/support/wire.ts's `Enrolled`), with what the fuzzer learned since. */
export interface ExecutorState extends Pick<Enrolled, "id" | "epoch" | "jwt" | "hmacKey" | "certPem" | "keyPem"> {
  identity: Identity;
  /** When a revocation of this executor was answered 2xx. */
  revokedAt?: number;
  /** JWTs of earlier epochs, with when they went stale. */
  staleJwts: { jwt: string; epoch: number; since: number }[];
  /**
   * Certificates replaced by a renewal, with the JWT that was bound to each: accepted (for
   * requests that rotate nothing) until `graceUntil`, refused after.
   */
  retiredCerts: { identity: Identity; jwt: string; rotatedAt: number; graceUntil: number }[];
  /**
   * When a request with the current certificate was first answered 2xx. From then on the
   * previous certificate may not rotate credentials (issue 10 finding 7: before that it
   * may, so a daemon that crashed mid-rotation recovers).
   */
  certConfirmedAt?: number;
  /** Leases this executor took, with the epoch they were taken under. */
  leases: { id: string; epoch: number; doneAt?: number; releasedAt?: number }[];
  /** Credential-changing requests (renew, reregister) run one at a time per executor. */
  lock: Promise<void>;
  /** The credentials can no longer be used (a renewal to a key the fuzzer does not hold). */
  lost: boolean;
  /** Registered by a fuzzed /register: a bystander (another executor's credentials), not a subject. */
  spare: boolean;
}

export interface OperatorToken {
  id: string;
  token: string;
  role: Role;
  /** Never revoked by the fuzzer's own requests (the principals it works with). */
  protected: boolean;
  expiresAt?: number;
  revokedAt?: number;
  /** Requests that may revoke it, in flight: its state is unknown meanwhile. */
  pending?: number;
  /** A request that may have revoked it went unobserved: its state is unknown from then on. */
  uncertain?: true;
}

export interface EnrollmentToken {
  id: string;
  token: string;
  maxUses: number;
  /** 201s seen for it: more than maxUses is a finding. */
  registered: number;
  expiresAt: number;
  revokedAt?: number;
  protected: boolean;
}

/** Margin for expiry comparisons between the two clocks of one host (second-rounded times). */
export const CLOCK_MARGIN_MS = 1_500;
/** The certificate grace window after a renewal (PROTOCOL §3.2, 5 min) plus the margin. */
export const GRACE_MS = 5 * 60_000 + CLOCK_MARGIN_MS;
/** A retired certificate is used as "still in its grace window" only this long after the rotation. */
export const SURELY_IN_GRACE_MS = 4 * 60_000;

export class World {
  readonly executors = new Map<string, ExecutorState>();
  readonly operatorTokens: OperatorToken[] = [];
  readonly enrollmentTokens: EnrollmentToken[] = [];
  readonly taskIds: string[] = [];
  /** Recent executor requests that were answered 2xx: replaying them must fail. */
  readonly accepted: { identity: Identity; bytes: Buffer; label: string; executorId: string }[] = [];
  /** Nonces of requests refused with SIGNATURE_INVALID: a valid request may still use them. */
  readonly burnedNonceCandidates: { executorId: string; nonce: string }[] = [];

  constructor(
    readonly host: string,
    readonly port: number,
    readonly caPem: string,
    readonly trustDomain: string,
  ) {}

  /** Executors whose credentials the executor-plane fuzzer uses. */
  liveExecutors(): ExecutorState[] {
    return [...this.executors.values()].filter((e) => e.revokedAt === undefined && !e.lost && !e.spare);
  }

  principal(role: Role): OperatorToken {
    const t = this.operatorTokens.find((x) => x.protected && x.role === role);
    if (!t) throw new Error(`no ${role} token`);
    return t;
  }

  /** Whether `token` authenticates a request sent at `sentAt` (undefined: not a token we know). */
  operatorTokenState(token: string, sentAt: number): "valid" | "revoked" | "expired" | "unknown" | "gray" {
    const t = this.operatorTokens.find((x) => x.token === token);
    if (!t) return "unknown";
    if (t.revokedAt !== undefined && sentAt > t.revokedAt) return "revoked";
    if (t.uncertain || (t.pending ?? 0) > 0) return "gray";
    if (t.expiresAt !== undefined) {
      if (sentAt > t.expiresAt + CLOCK_MARGIN_MS) return "expired";
      if (sentAt > t.expiresAt - CLOCK_MARGIN_MS) return "gray";
    }
    return t.revokedAt !== undefined ? "gray" : "valid";
  }

  /** What the run did to the controller's state, in one line. */
  summary(): string {
    const ex = [...this.executors.values()];
    const leases = ex.flatMap((e) => e.leases);
    return [
      `${ex.length} executors (${ex.filter((e) => e.revokedAt !== undefined).length} revoked, ${ex.filter((e) => e.spare).length} from fuzzed /register, ${ex.filter((e) => e.lost).length} given up)`,
      `${ex.reduce((s, e) => s + e.retiredCerts.length, 0)} certificate rotations, ${ex.reduce((s, e) => s + e.staleJwts.length, 0)} epoch bumps`,
      `${leases.length} leases taken (${leases.filter((l) => l.doneAt !== undefined).length} completed or failed)`,
      `${this.operatorTokens.length} API tokens (${this.operatorTokens.filter((t) => t.revokedAt !== undefined).length} revoked)`,
      `${this.enrollmentTokens.length} enrollment tokens (${this.enrollmentTokens.filter((t) => t.revokedAt !== undefined).length} revoked, ${this.enrollmentTokens.reduce((s, t) => s + t.registered, 0)} registrations)`,
      `${this.taskIds.length} tasks submitted`,
    ].join("; ");
  }

  remember<T>(list: T[], item: T, max: number): void {
    list.push(item);
    if (list.length > max) list.splice(0, list.length - max);
  }
}

const thumbprints = new Map<string, string>();

/** The certificate's x5t#S256 (base64url SHA-256 of its DER), as JWT `cnf` claims carry it. */
export function thumbprint(certPem: string): string {
  let t = thumbprints.get(certPem);
  if (t === undefined) {
    t = computeThumbprint(certPem);
    thumbprints.set(certPem, t);
  }
  return t;
}

function computeThumbprint(certPem: string): string {
  const der = Buffer.from(certPem.replace(/-----(BEGIN|END) CERTIFICATE-----/g, "").replace(/\s+/g, ""), "base64");
  return createHash("sha256").update(der).digest("base64url");
}

/** Runs `fn` under the executor's lock (credential changes one at a time). */
export async function withExecutorLock<T>(e: ExecutorState, fn: () => Promise<T>): Promise<T> {
  const prev = e.lock;
  let release!: () => void;
  e.lock = new Promise<void>((r) => (release = r));
  await prev;
  try {
    return await fn();
  } finally {
    release();
  }
}
