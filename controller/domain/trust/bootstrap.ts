/**
 * The first CA of a data dir. A store that holds CAs is used as it is. An empty one gets
 * the CA of a data dir written by an earlier version (`ca.pem` + `ca.key`) as its active
 * CA, else a new CA. Processes racing here (the controller and a CLI command, or
 * replicas) end with exactly one: the insert is refused once any CA exists.
 *
 * The legacy import is crash-safe and idempotent: the CA is committed to the store
 * (key encrypted under the KEK) before `ca.key` is removed, and a `ca.key` whose CA is
 * already in the store is simply removed — one copy of a private key, encrypted.
 */
import { closeSync, fsyncSync, openSync, unlinkSync } from "node:fs";
import { join } from "node:path";
import { createPrivateKey, X509Certificate } from "node:crypto";
import { CA_CERT_FILE, CA_KEY_FILE, createCa, readLegacyCa, readLegacyKey, type Ca, type CaKeyType } from "../../../certs/ca.ts";
import { fileExists } from "../../../shared/secure-fs.ts";
import type { CaStore, NewCa } from "../../store/trust-types.ts";

export type Bootstrap = "loaded" | "imported" | "created";

export interface BootstrapSettings {
  dataDir: string;
  trustDomain: string;
  keyType: CaKeyType;
  caTtlSeconds: number;
}

export function newCaRecord(id: string, ca: Ca, keyDer: Buffer, crossCertPem: string | null, now: number): NewCa {
  return {
    id, certPem: ca.certPem, fingerprint: ca.fingerprintSha256, keyType: ca.keyType, notBefore: ca.notBefore.getTime(),
    notAfter: ca.notAfter.getTime(), crossCertPem, privateKey: keyDer, now,
  };
}

function removeLegacyKey(dataDir: string): void {
  try {
    unlinkSync(join(dataDir, CA_KEY_FILE));
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== "ENOENT") throw e;
    return; // another process removed it
  }
  const fd = openSync(dataDir, "r");
  try {
    fsyncSync(fd);
  } catch {
    /* some filesystems refuse fsync on a directory */
  } finally {
    closeSync(fd);
  }
}

export async function bootstrapCaSet(store: CaStore, s: BootstrapSettings, now = Date.now()): Promise<{ outcome: Bootstrap; fingerprint?: string }> {
  const { cas } = await store.trustBundle();
  const keyPath = join(s.dataDir, CA_KEY_FILE);
  if (cas.length > 0) {
    // ca.pem is the bundle by now: the key alone is judged.
    const keyDer = readLegacyKey(s.dataDir);
    if (!keyDer) return { outcome: "loaded" };
    const key = createPrivateKey({ key: keyDer, format: "der", type: "pkcs8" });
    // A crash after the import's commit: finish it.
    if (cas.some((c) => new X509Certificate(c.certPem).checkPrivateKey(key))) {
      removeLegacyKey(s.dataDir);
      return { outcome: "loaded" };
    }
    throw new Error(`${keyPath} is not the key of any CA in the store; move it out of the data dir (the controller keeps its CA keys in the database)`);
  }
  const legacy = await readLegacyCa(s.dataDir, { trustDomain: s.trustDomain });
  if (legacy) {
    const inserted = await store.insertCa(newCaRecord(`ca_${legacy.ca.fingerprintSha256.replace(/:/g, "").slice(0, 12).toLowerCase()}`, legacy.ca, legacy.keyDer, null, now), {
      state: "active", onlyIfEmpty: true,
    });
    const after = await store.trustBundle();
    if (after.cas.some((c) => c.fingerprint === legacy.ca.fingerprintSha256)) removeLegacyKey(s.dataDir);
    return { outcome: inserted ? "imported" : "loaded", fingerprint: legacy.ca.fingerprintSha256 };
  }
  const certPath = join(s.dataDir, CA_CERT_FILE);
  if (fileExists(certPath)) {
    throw new Error(`${certPath} exists but ${keyPath} is missing and the store holds no CA; restore the CA key from backup (or remove ${certPath} to start a new CA)`);
  }
  const created = await createCa({ keyType: s.keyType, trustDomain: s.trustDomain, validitySeconds: s.caTtlSeconds, now: new Date(now) });
  const inserted = await store.insertCa(newCaRecord(created.id, created.ca, created.keyDer, null, now), { state: "active", onlyIfEmpty: true });
  return { outcome: inserted ? "created" : "loaded", fingerprint: inserted ? created.ca.fingerprintSha256 : undefined };
}
