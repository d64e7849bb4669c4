/** `tether executor status`: what the state dir says, without talking to the controller. */
import { X509Certificate } from "node:crypto";
import { existsSync, statSync } from "node:fs";
import { join } from "node:path";
import { certificateBlocks } from "../certs/bundle.ts";
import { caFingerprint } from "../shared/fingerprint.ts";
import { rfc3339 } from "../shared/time.ts";
import { ExitCode } from "./exit-codes.ts";
import { IdentityStore, IdentityStoreError, STATE_FILES } from "./identity-store.ts";
import { LOCK_FILE, lockHolder } from "./state-lock.ts";

export type IdentityHealth = "ok" | "expired" | "revoked" | "none" | "unusable";

export interface ExecutorStatus {
  state_dir: string;
  health: IdentityHealth;
  executor_id?: string;
  name?: string;
  /** The controller URL the executor enrolled with. */
  controller?: string;
  /** The controller URL of the last successful contact (with several replicas: the one in use). */
  last_contact_controller?: string;
  epoch?: number;
  labels?: Record<string, string>;
  key_type?: string;
  cert_serial?: string;
  cert_not_before?: string;
  cert_expires_at?: string;
  cert_expires_in_s?: number;
  jwt_expires_at?: string;
  last_contact_at?: string | null;
  revoked_at?: string;
  enrolled_at?: string;
  rotation_pending?: boolean;
  /** pid of the daemon holding the state dir, if one is running. */
  daemon_pid?: number | null;
  /** The version of the saved trust bundle (0: unknown — the daemon fetches it at its next heartbeat). */
  trust_bundle_version?: number;
  /** The CAs the controller is verified with. */
  trusted_cas?: TrustedCa[];
  problems: string[];
}

export interface TrustedCa {
  fingerprint_sha256: string;
  subject: string;
  not_after: string;
}

/** The CAs of the saved bundle, as `tether ca show` names them. */
function trustedCas(pem: string): TrustedCa[] {
  const out: TrustedCa[] = [];
  for (const b of certificateBlocks(pem)) {
    try {
      const c = new X509Certificate(b);
      out.push({ fingerprint_sha256: caFingerprint(c.raw), subject: c.subject.split("\n").join(", "), not_after: rfc3339(Date.parse(c.validTo)) });
    } catch {
      /* a damaged block: the daemon ignores it too */
    }
  }
  return out;
}

/** pid of the daemon holding the state dir (the kernel's word: the lock is never taken here), or null. */
function daemonPid(dir: string): number | null {
  return lockHolder(join(dir, LOCK_FILE)) ?? null;
}

function modeProblems(dir: string): string[] {
  const out: string[] = [];
  try {
    const m = statSync(dir).mode & 0o777;
    if (m & 0o077) out.push(`${dir} has mode ${m.toString(8)} (want 700)`);
  } catch {
    /* reported elsewhere */
  }
  for (const f of Object.values(STATE_FILES)) {
    const p = join(dir, f);
    if (!existsSync(p)) continue;
    const m = statSync(p).mode & 0o777;
    if (m & 0o077) out.push(`${p} has mode ${m.toString(8)} (want 600)`);
  }
  return out;
}

/** The status and the exit code `executor status` ends with (0 only for a usable, unexpired, unrevoked identity). */
export function readStatus(stateDir: string, now = Date.now()): { status: ExecutorStatus; exitCode: number } {
  const base: ExecutorStatus = { state_dir: stateDir, health: "none", problems: [] };
  if (!existsSync(stateDir)) {
    base.problems.push(`${stateDir} does not exist`);
    return { status: base, exitCode: ExitCode.ERROR };
  }
  const store = new IdentityStore(stateDir);
  base.problems.push(...modeProblems(stateDir));
  let loaded;
  try {
    loaded = store.load({ strictModes: false });
  } catch (e) {
    if (!(e instanceof IdentityStoreError)) throw e;
    base.health = "unusable";
    base.problems.push(e.message);
    return { status: base, exitCode: ExitCode.ERROR };
  }
  if (!loaded) {
    base.problems.push(`no identity in ${stateDir} (not enrolled yet)`);
    return { status: base, exitCode: ExitCode.ERROR };
  }
  const s = loaded.session;
  const expired = loaded.cert.notAfterMs <= now;
  const status: ExecutorStatus = {
    ...base,
    health: s.revoked_at ? "revoked" : expired ? "expired" : "ok",
    executor_id: loaded.executorId,
    name: loaded.record.name ?? loaded.executorId,
    controller: loaded.record.controller_url,
    epoch: s.epoch,
    labels: loaded.record.labels,
    key_type: loaded.record.key_type,
    cert_serial: loaded.cert.serial,
    cert_not_before: rfc3339(loaded.cert.notBeforeMs),
    cert_expires_at: rfc3339(loaded.cert.notAfterMs),
    cert_expires_in_s: Math.floor((loaded.cert.notAfterMs - now) / 1000),
    jwt_expires_at: s.jwt_expires_at,
    last_contact_at: s.last_contact_at ?? null,
    ...(s.controller_url ? { last_contact_controller: s.controller_url } : {}),
    ...(s.revoked_at ? { revoked_at: s.revoked_at } : {}),
    enrolled_at: loaded.record.enrolled_at,
    rotation_pending: loaded.pendingPromotion,
    daemon_pid: daemonPid(stateDir),
    trust_bundle_version: loaded.trustVersion,
    trusted_cas: trustedCas(loaded.caPem),
  };
  if (s.revoked_at) status.problems.push(`executor ${loaded.executorId} was revoked (CERT_REVOKED at ${s.revoked_at})`);
  if (expired) status.problems.push(`the certificate expired at ${status.cert_expires_at}: re-enroll with a new token`);
  const exitCode = s.revoked_at ? ExitCode.REVOKED : expired ? ExitCode.REENROLL_REQUIRED : ExitCode.OK;
  return { status, exitCode };
}
