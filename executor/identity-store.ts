/**
 * The executor's identity on disk, in `--state-dir` (0700, every file 0600,
 * every write atomic: temp file + fsync + rename, via shared/secure-fs).
 *
 *   identity.json   executor id, HMAC key, controller URL, name, labels, key type  (rarely changes)
 *   key.pem         private key of the active certificate (generated here, never sent anywhere)
 *   cert.pem        the active certificate
 *   ca.pem          the trust bundle last received from the controller
 *   session.json    epoch, current JWT and expiries, last successful contact      (changes often)
 *   key.next.pem    a certificate rotation in progress: the fresh key …
 *   cert.next.pem   … and the certificate the controller issued for it
 *
 * Crash safety of a rotation: the fresh key is staged in key.next.pem before the
 * CSR is sent, the new certificate in cert.next.pem as soon as it arrives, and
 * only after the new pair has been confirmed by a successful request is it
 * promoted over key.pem/cert.pem (key first, then certificate, then the staged
 * files are removed). The loader does not trust file names: it considers every
 * key/certificate combination on disk and takes the newest certificate that
 * matches its key and names this executor, so the state loads and works after a
 * crash between any two of those steps.
 */
import { existsSync, readFileSync, unlinkSync } from "node:fs";
import { join } from "node:path";
import { assertPrivateFile, ensurePrivateDir, writeFileAtomic } from "../shared/secure-fs.ts";
import { EXECUTOR_ID_RE } from "../shared/ids.ts";
import type { CertThumbprint } from "../shared/fingerprint.ts";
import { certInfo, keyMatchesCert, type CertInfo } from "./certificate.ts";
import { KEY_TYPES, type KeyType } from "./csr.ts";

export const STATE_FILES = {
  identity: "identity.json",
  session: "session.json",
  key: "key.pem",
  cert: "cert.pem",
  keyNext: "key.next.pem",
  certNext: "cert.next.pem",
  ca: "ca.pem",
} as const;

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
  heartbeat_interval_s?: number;
  /** Set when the controller answered CERT_REVOKED. */
  revoked_at?: string;
}

export interface LoadedIdentity {
  executorId: string;
  hmacKey: Buffer;
  record: IdentityRecord;
  keyPem: string;
  certPem: string;
  cert: CertInfo;
  /** The trust bundle from the controller ("" if none was saved). */
  caPem: string;
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
    const record = this.readIdentityRecord();
    const pair = this.bestPair(record.executor_id);
    if (!pair) {
      throw new IdentityStoreError(
        `${this.dir} holds executor ${record.executor_id} but no private key matching a certificate for it; re-enroll with a new token (move the state dir away first)`,
      );
    }
    const caPem = this.readOptional(this.path("ca")) ?? "";
    const session = this.readSession(record.executor_id);
    const staged = existsSync(this.path("keyNext")) || existsSync(this.path("certNext"));
    const interruptedRotation = existsSync(this.path("keyNext")) && pair.keyFile !== STATE_FILES.keyNext && !existsSync(this.path("certNext"));
    return {
      executorId: record.executor_id,
      hmacKey: Buffer.from(record.hmac_key, "base64url"),
      record,
      keyPem: pair.keyPem,
      certPem: pair.certPem,
      cert: pair.cert,
      caPem,
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
  saveEnrollment(e: { record: IdentityRecord; keyPem: string; certPem: string; caPem: string; session: SessionRecord }): void {
    this.init();
    this.write("keyNext", e.keyPem);
    this.write("certNext", e.certPem);
    this.write("ca", e.caPem);
    this.write("session", JSON.stringify(e.session, null, 2) + "\n");
    this.write("identity", JSON.stringify(e.record, null, 2) + "\n");
    this.promote();
  }

  /** Rotation step 1: the fresh key, written before its CSR leaves the process. */
  stageKey(keyPem: string): void {
    this.write("keyNext", keyPem);
  }

  /** Rotation step 2: the certificate the controller issued for the staged key. */
  stageCert(certPem: string): void {
    this.write("certNext", certPem);
  }

  /**
   * Rotation step 3 (after the new pair was confirmed): the best pair on disk
   * becomes key.pem/cert.pem and the staged files go. Idempotent.
   */
  promote(): void {
    const record = this.readIdentityRecord();
    const pair = this.bestPair(record.executor_id);
    if (!pair) throw new IdentityStoreError(`no usable key and certificate in ${this.dir}`);
    if (pair.keyFile !== STATE_FILES.key) this.write("key", pair.keyPem);
    if (pair.certFile !== STATE_FILES.cert) this.write("cert", pair.certPem);
    this.remove("keyNext");
    this.remove("certNext");
  }

  /** Drops a staged key whose rotation never got a certificate (the request failed). */
  discardStagedKey(): void {
    if (!existsSync(this.path("certNext"))) this.remove("keyNext");
  }

  saveCaBundle(pem: string): void {
    this.write("ca", pem);
  }

  saveSession(s: SessionRecord): void {
    this.write("session", JSON.stringify(s, null, 2) + "\n");
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
      typeof r.hmac_key !== "string" || Buffer.from(r.hmac_key, "base64url").length !== 32
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
    for (const name of ["identity", "key", "keyNext", "session"] as const) {
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
