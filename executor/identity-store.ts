/**
 * The executor's identity on disk, in `--state-dir` (0700, every file 0600,
 * every write atomic: temp file + fsync + rename, via shared/secure-fs).
 *
 *   identity.json   executor id, HMAC key, controller URL, name, labels, key type  (rarely changes)
 *   key.pem         private key of the active certificate (generated here, never sent anywhere)
 *   cert.pem        the active certificate
 *   ca.pem          the trust bundle and its version, in one file (./trust-bundle.ts)
 *   session.json    epoch, current JWT and expiries, last successful contact      (changes often)
 *   key.next.pem    a certificate rotation in progress: the fresh key …
 *   hmac.next.json  … the HMAC key that came with the new certificate, naming it …
 *   cert.next.pem   … and the certificate the controller issued for the key
 *
 * Crash safety of a rotation: the fresh key is staged in key.next.pem before the
 * CSR is sent; the answer's HMAC key in hmac.next.json and then the new certificate
 * in cert.next.pem as soon as they arrive; only after the new pair has been
 * confirmed by a successful request is it promoted (the HMAC key into
 * identity.json, then key.pem, cert.pem, then the staged files are removed). The
 * loader does not trust file names: it considers every key/certificate combination
 * on disk and takes the newest certificate that matches its key and names this
 * executor, and the HMAC key staged *for that certificate* if there is one (else
 * identity.json's). So the certificate and its HMAC key switch together, and the
 * state loads and works after a crash between any two of those steps. A new HMAC
 * key alone (a re-registration) is written before it is used (`saveHmacKey`).
 */
import { existsSync, readFileSync, unlinkSync } from "node:fs";
import { join } from "node:path";
import { assertPrivateFile, ensurePrivateDir, writeFileAtomic } from "../shared/secure-fs.ts";
import { EXECUTOR_ID_RE } from "../shared/ids.ts";
import type { CertThumbprint } from "../shared/fingerprint.ts";
import { certInfo, keyMatchesCert, type CertInfo } from "./certificate.ts";
import { KEY_TYPES, type KeyType } from "./csr.ts";
import { formatTrustFile, parseTrustFile, type TrustFile } from "./trust-bundle.ts";

export const STATE_FILES = {
  identity: "identity.json",
  session: "session.json",
  key: "key.pem",
  cert: "cert.pem",
  keyNext: "key.next.pem",
  certNext: "cert.next.pem",
  hmacNext: "hmac.next.json",
  ca: "ca.pem",
} as const;

/** A well-formed `hmac_key` (PROTOCOL §3.1): base64url of 32 bytes. */
export function isHmacKey(k: unknown): k is string {
  return typeof k === "string" && /^[A-Za-z0-9_-]{43}$/.test(k) && Buffer.from(k, "base64url").length === 32;
}

/** identity.json */
export interface IdentityRecord {
  version: 1;
  executor_id: string;
  /** base64url of the 32-byte HMAC key. */
  hmac_key: string;
  controller_url: string;
  name?: string;
  labels: Record<string, string>;
  key_type: KeyType;
  enrolled_at: string;
}

/** session.json — everything here can be rebuilt by a re-register, so it is never needed to start. */
export interface SessionRecord {
  version: 1;
  executor_id: string;
  epoch: number;
  jwt?: string;
  jwt_issued_at?: string;
  jwt_expires_at?: string;
  /** The certificate `cert_received_at` belongs to. */
  cert_fingerprint?: CertThumbprint;
  cert_received_at?: string;
  cert_expires_at?: string;
  last_contact_at?: string;
  /** The controller URL of that contact: with several replicas, the one in use (the next start begins there). */
  controller_url?: string;
  heartbeat_interval_s?: number;
  /** Set when the controller answered CERT_REVOKED. */
  revoked_at?: string;
}

/** hmac.next.json: the HMAC key that belongs to a staged certificate. */
interface StagedHmacKey {
  version: 1;
  cert_fingerprint: CertThumbprint;
  hmac_key: string;
}

export interface LoadedIdentity {
  executorId: string;
  /** The HMAC key of the certificate in use (staged with it during a rotation, else identity.json's). */
  hmacKey: Buffer;
  /** identity.json, with `hmac_key` the one in use (see `hmacKey`). */
  record: IdentityRecord;
  keyPem: string;
  certPem: string;
  cert: CertInfo;
  /** The trust bundle from the controller ("" if none was saved). */
  caPem: string;
  /** Its `trust_bundle_version`; 0 when unknown. */
  trustVersion: number;
  session: SessionRecord;
  /** True while a rotation is unfinished on disk (staged files exist); `promote()` finishes it. */
  pendingPromotion: boolean;
  /**
   * A fresh key is staged but no certificate for it arrived (a crash or a failed
   * request mid-rotation). If the controller did issue one, the certificate in use
   * is only accepted for its grace window: rotate again right away.
   */
  interruptedRotation: boolean;
}

export class IdentityStoreError extends Error {}

/** Test instrumentation: called after each durable step; throwing from it simulates a crash there. */
export type StepHook = (step: string) => void;

interface Pair {
  keyFile: string;
  certFile: string;
  keyPem: string;
  certPem: string;
  cert: CertInfo;
}

export class IdentityStore {
  constructor(
    readonly dir: string,
    private readonly onStep: StepHook = () => {},
  ) {}

  path(name: keyof typeof STATE_FILES): string {
    return join(this.dir, STATE_FILES[name]);
  }

  /** Creates the state dir (0700) or tightens its mode. */
  init(): void {
    ensurePrivateDir(this.dir);
  }

  hasIdentity(): boolean {
    return existsSync(this.path("identity"));
  }

  /**
   * Loads the identity, or undefined when none was ever committed. Throws
   * IdentityStoreError when one exists but cannot be used (no matching key and
   * certificate, files readable by others with `strictModes`).
   */
  load(opts: { strictModes?: boolean } = {}): LoadedIdentity | undefined {
    if (!this.hasIdentity()) return undefined;
    const strict = opts.strictModes ?? true;
    if (strict) this.checkModes();
    const saved = this.readIdentityRecord();
    const pair = this.bestPair(saved.executor_id);
    if (!pair) {
      throw new IdentityStoreError(
        `${this.dir} holds executor ${saved.executor_id} but no private key matching a certificate for it; re-enroll with a new token (move the state dir away first)`,
      );
    }
    const record = { ...saved, hmac_key: this.stagedHmacKeyFor(pair.cert.fingerprint) ?? saved.hmac_key };
    const trust = this.readTrust();
    const session = this.readSession(record.executor_id);
    const staged = (["keyNext", "certNext", "hmacNext"] as const).some((f) => existsSync(this.path(f)));
    const interruptedRotation = existsSync(this.path("keyNext")) && pair.keyFile !== STATE_FILES.keyNext && !existsSync(this.path("certNext"));
    return {
      executorId: record.executor_id,
      hmacKey: Buffer.from(record.hmac_key, "base64url"),
      record,
      keyPem: pair.keyPem,
      certPem: pair.certPem,
      cert: pair.cert,
      caPem: trust.pem,
      trustVersion: trust.version,
      session,
      pendingPromotion: staged || pair.keyFile !== STATE_FILES.key || pair.certFile !== STATE_FILES.cert,
      interruptedRotation,
    };
  }

  /**
   * Commits a brand-new identity (first enrollment or re-enrollment). The key and
   * certificate are staged first and identity.json is written last: it is the
   * commit point. Until then a previous identity, if any, still loads (its id
   * does not match the staged certificate).
   */
  saveEnrollment(e: { record: IdentityRecord; keyPem: string; certPem: string; caPem: string; trustVersion?: number; session: SessionRecord }): void {
    this.init();
    this.write("keyNext", e.keyPem);
    this.write("certNext", e.certPem);
    this.write("ca", formatTrustFile({ pem: e.caPem, version: e.trustVersion ?? 0 }));
    this.writeJson("session", e.session);
    this.writeJson("identity", e.record);
    this.promote();
  }

  /** Rotation step 1: the fresh key, written before its CSR leaves the process. */
  stageKey(keyPem: string): void {
    this.write("keyNext", keyPem);
  }

  /**
   * Rotation step 2: the certificate the controller issued for the staged key, and
   * the HMAC key that came with it. The HMAC key is written first, naming the
   * certificate: it counts only once that certificate is on disk (the commit point).
   */
  stageCert(certPem: string, hmacKey?: string): void {
    if (hmacKey === undefined) this.remove("hmacNext");
    else this.writeJson("hmacNext", { version: 1, cert_fingerprint: certInfo(certPem).fingerprint, hmac_key: hmacKey } satisfies StagedHmacKey);
    this.write("certNext", certPem);
  }

  /**
   * Rotation step 3 (after the new pair was confirmed): the HMAC key staged for the
   * best pair goes into identity.json, the pair becomes key.pem/cert.pem, and the
   * staged files go. Idempotent.
   */
  promote(): void {
    const record = this.readIdentityRecord();
    const pair = this.bestPair(record.executor_id);
    if (!pair) throw new IdentityStoreError(`no usable key and certificate in ${this.dir}`);
    const hmacKey = this.stagedHmacKeyFor(pair.cert.fingerprint);
    if (hmacKey !== undefined && hmacKey !== record.hmac_key) this.writeJson("identity", { ...record, hmac_key: hmacKey });
    if (pair.keyFile !== STATE_FILES.key) this.write("key", pair.keyPem);
    if (pair.certFile !== STATE_FILES.cert) this.write("cert", pair.certPem);
    this.remove("keyNext");
    this.remove("certNext");
    this.remove("hmacNext");
  }

  /**
   * A new HMAC key without a new certificate (a re-registration), saved before it is
   * used: wherever the loader would look for the key of the certificate in use.
   */
  saveHmacKey(hmacKey: string): void {
    const staged = this.readStagedHmacKey();
    if (staged) this.writeJson("hmacNext", { ...staged, hmac_key: hmacKey });
    this.writeJson("identity", { ...this.readIdentityRecord(), hmac_key: hmacKey });
  }

  /** Drops a staged key whose rotation never got a certificate (the request failed). */
  discardStagedKey(): void {
    if (!existsSync(this.path("certNext"))) this.remove("keyNext");
  }

  /** The trust bundle and its version: one atomic write, so they never disagree. */
  saveTrust(t: TrustFile): void {
    this.write("ca", formatTrustFile(t));
  }

  /** The saved trust bundle (also without an identity); an empty pem when there is none. */
  readTrust(): TrustFile {
    return parseTrustFile(this.readOptional(this.path("ca")) ?? "");
  }

  saveSession(s: SessionRecord): void {
    this.writeJson("session", s);
  }

  readIdentityRecord(): IdentityRecord {
    const text = this.readOptional(this.path("identity"));
    if (text === undefined) throw new IdentityStoreError(`no identity in ${this.dir}`);
    let r: IdentityRecord;
    try {
      r = JSON.parse(text) as IdentityRecord;
    } catch {
      throw new IdentityStoreError(`${this.path("identity")} is not valid JSON`);
    }
    if (
      r?.version !== 1 || typeof r.executor_id !== "string" || !EXECUTOR_ID_RE.test(r.executor_id) ||
      !isHmacKey(r.hmac_key)
    ) {
      throw new IdentityStoreError(`${this.path("identity")} is not a tether executor identity`);
    }
    if (!KEY_TYPES.includes(r.key_type)) r.key_type = "ed25519";
    r.labels ??= {};
    return r;
  }

  /** The session for `executorId`; a missing, damaged or foreign session.json yields epoch 0. */
  readSession(executorId: string): SessionRecord {
    const empty: SessionRecord = { version: 1, executor_id: executorId, epoch: 0 };
    const text = this.readOptional(this.path("session"));
    if (text === undefined) return empty;
    try {
      const s = JSON.parse(text) as SessionRecord;
      if (s?.executor_id !== executorId || !Number.isInteger(s.epoch)) return empty;
      return s;
    } catch {
      return empty;
    }
  }

  private checkModes(): void {
    for (const name of ["identity", "key", "keyNext", "hmacNext", "session"] as const) {
      const p = this.path(name);
      if (existsSync(p)) {
        try {
          assertPrivateFile(p);
        } catch (e) {
          throw new IdentityStoreError((e as Error).message.replace("refusing to start", "refusing to use the identity"));
        }
      }
    }
  }

  /** Every key × certificate combination on disk that matches and names `executorId`; the newest wins. */
  private bestPair(executorId: string): Pair | undefined {
    const keys = [STATE_FILES.key, STATE_FILES.keyNext]
      .map((f) => ({ f, pem: this.readOptional(join(this.dir, f)) }))
      .filter((k): k is { f: (typeof STATE_FILES)["key" | "keyNext"]; pem: string } => k.pem !== undefined);
    const certs = [STATE_FILES.cert, STATE_FILES.certNext]
      .map((f) => ({ f, pem: this.readOptional(join(this.dir, f)) }))
      .filter((c): c is { f: (typeof STATE_FILES)["cert" | "certNext"]; pem: string } => c.pem !== undefined);
    let best: Pair | undefined;
    for (const c of certs) {
      let info: CertInfo;
      try {
        info = certInfo(c.pem);
      } catch {
        continue;
      }
      if (info.executorId !== executorId) continue;
      for (const k of keys) {
        if (!keyMatchesCert(k.pem, c.pem)) continue;
        const candidate = { keyFile: k.f, certFile: c.f, keyPem: k.pem, certPem: c.pem, cert: info };
        // ≥: on a tie the later file (the staged, newer certificate) wins.
        if (!best || info.notAfterMs >= best.cert.notAfterMs) best = candidate;
      }
    }
    return best;
  }

  private readStagedHmacKey(): StagedHmacKey | undefined {
    try {
      const s = JSON.parse(this.readOptional(this.path("hmacNext")) ?? "null") as StagedHmacKey | null;
      return s?.version === 1 && typeof s.cert_fingerprint === "string" && isHmacKey(s.hmac_key) ? s : undefined;
    } catch {
      return undefined; // damaged: as if absent (it only ever holds a key not yet promoted)
    }
  }

  private stagedHmacKeyFor(cert: CertThumbprint): string | undefined {
    const s = this.readStagedHmacKey();
    return s?.cert_fingerprint === cert ? s.hmac_key : undefined;
  }

  private writeJson(name: "identity" | "hmacNext" | "session", value: unknown): void {
    this.write(name, JSON.stringify(value, null, 2) + "\n");
  }

  private write(name: keyof typeof STATE_FILES, data: string): void {
    writeFileAtomic(this.path(name), data, 0o600);
    this.onStep(`write:${STATE_FILES[name]}`);
  }

  private remove(name: keyof typeof STATE_FILES): void {
    try {
      unlinkSync(this.path(name));
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== "ENOENT") throw e;
      return;
    }
    this.onStep(`unlink:${STATE_FILES[name]}`);
  }

  private readOptional(path: string): string | undefined {
    try {
      return readFileSync(path, "utf8");
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === "ENOENT") return undefined;
      throw e;
    }
  }
}
