/**
 * The controller's certificate authorities. A CA is created in memory (`createCa`): a
 * self-signed certificate with a subject no other Tether CA has and BasicConstraints
 * CA:true pathLenConstraint 1, so that a cross certificate (certs/cross-sign.ts) may sit
 * between a server certificate and the previous CA (PROTOCOL §7.2). The controller keeps
 * its CAs in the store, keys encrypted under the KEK (controller/domain/trust/).
 *
 * Versions before the CA set kept one CA in the data dir (`ca.pem`, `ca.key`, pathlen 0):
 * `readLegacyCa` reads it for the one-time import. `loadOrCreateCa` keeps that file
 * layout for standalone CAs (test fixtures, the fuzzer); the controller never uses it.
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { randomBytes, X509Certificate as NodeX509, createPrivateKey, createPublicKey } from "node:crypto";
import { assertPrivateFile, ensurePrivateDir, fileExists, writeFileAtomic } from "../shared/secure-fs.ts";
import { x509, randomSerialHex, subtle } from "./x509.ts";
import {
  generateKeyPair, generationParams, importPrivateKeyDer, KEY_ALGORITHMS, privateKeyToDer, signingParams, type KeyAlgorithmName,
} from "./keys.ts";
import { caFingerprint, type CaFingerprint } from "../shared/fingerprint.ts";

export type CaKeyType = "ed25519" | "p256";

export interface Ca {
  /** The CA certificate, PEM. */
  certPem: string;
  cert: x509.X509Certificate;
  /** WebCrypto private key the CA signs with. */
  privateKey: CryptoKey;
  keyType: CaKeyType;
  notBefore: Date;
  notAfter: Date;
  /** Uppercase hex with colons, as `openssl x509 -fingerprint -sha256` prints it. */
  fingerprintSha256: CaFingerprint;
}

export const CA_CERT_FILE = "ca.pem";
export const CA_KEY_FILE = "ca.key";
export const DEFAULT_CA_VALIDITY_DAYS = 3650;
/** A CA's notBefore is back-dated this much, as issued certificates are, for clock skew. */
const CA_BACKDATE_MS = 5 * 60_000;

const keyAlgOf = (t: CaKeyType): KeyAlgorithmName => KEY_ALGORITHMS[t];
export const caKeyAlg = (ca: Pick<Ca, "keyType">): KeyAlgorithmName => keyAlgOf(ca.keyType);

/** Characters that would change the meaning of a string-form DN. */
export const stripDnSpecials = (s: string): string => s.replace(/[,+="\\<>;#\r\n]/g, "");

function caKeyTypeOf(alg: KeyAlgorithmName): CaKeyType {
  if (alg === "Ed25519") return "ed25519";
  if (alg === "P-256") return "p256";
  throw new Error(`unsupported CA key type ${alg} (use Ed25519 or P-256)`);
}

function toCa(certPem: string, privateKey: CryptoKey, alg: KeyAlgorithmName): Ca {
  const cert = new x509.X509Certificate(certPem);
  return {
    certPem,
    cert,
    privateKey,
    keyType: caKeyTypeOf(alg),
    notBefore: cert.notBefore,
    notAfter: cert.notAfter,
    fingerprintSha256: caFingerprint(new Uint8Array(cert.rawData)),
  };
}

/** `CN=Tether CA <date> <label>, O=<trust domain>`: unique, so CRLs and chains find their issuer by name. */
export function caSubject(trustDomain: string, label: string, now: Date): string {
  return `CN=Tether CA ${now.toISOString().slice(0, 10)} ${stripDnSpecials(label)}, O=${stripDnSpecials(trustDomain) || "tether"}`;
}

async function selfSign(keys: CryptoKeyPair, alg: KeyAlgorithmName, subject: string, notBefore: Date, notAfter: Date): Promise<string> {
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: randomSerialHex(),
    name: subject,
    notBefore,
    notAfter,
    signingAlgorithm: signingParams(alg),
    keys,
    extensions: [
      // pathlen 1: one cross certificate may stand between a leaf and this CA (PROTOCOL §7.2).
      new x509.BasicConstraintsExtension(true, 1, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
    ],
  });
  return cert.toString("pem") + "\n";
}

export interface CreatedCa {
  /** `ca_` + 12 hex characters; the same characters end the CA's common name. */
  id: string;
  ca: Ca;
  /** PKCS#8 DER of the private key, for the store to encrypt. */
  keyDer: Buffer;
}

/** A new CA, in memory only: the caller stores it (encrypted) before anyone may rely on it. */
export async function createCa(opts: { keyType?: CaKeyType; trustDomain: string; validitySeconds: number; now?: Date }): Promise<CreatedCa> {
  if (!Number.isFinite(opts.validitySeconds) || opts.validitySeconds <= 0) throw new Error(`invalid CA lifetime ${opts.validitySeconds}s`);
  const now = opts.now ?? new Date();
  const label = randomBytes(6).toString("hex");
  const alg = keyAlgOf(opts.keyType ?? "ed25519");
  const keys = await generateKeyPair(alg);
  const notBefore = new Date(now.getTime() - CA_BACKDATE_MS);
  const notAfter = new Date(now.getTime() + opts.validitySeconds * 1000);
  const certPem = await selfSign(keys, alg, caSubject(opts.trustDomain, label, now), notBefore, notAfter);
  return { id: `ca_${label}`, ca: toCa(certPem, keys.privateKey, alg), keyDer: await privateKeyToDer(keys.privateKey) };
}

/** A CA from its certificate and PKCS#8 DER key (as the store returns them); refuses a key that is not the certificate's. */
export async function caFromDer(certPem: string, keyDer: Buffer): Promise<Ca> {
  const cert = new NodeX509(certPem);
  if (!cert.checkPrivateKey(createPrivateKey({ key: keyDer, format: "der", type: "pkcs8" }))) {
    throw new Error(`the stored key of CA ${caFingerprint(cert.raw)} does not match its certificate`);
  }
  const { key, alg } = await importPrivateKeyDer(keyDer);
  return toCa(certPem, key, alg);
}

/** PKCS#8 DER of `ca.key` in `dataDir`, or undefined when there is none; refuses a key file others can read, naming it. */
export function readLegacyKey(dataDir: string): Buffer | undefined {
  const keyPath = join(dataDir, CA_KEY_FILE);
  if (!fileExists(keyPath)) return undefined;
  assertPrivateFile(keyPath);
  try {
    return createPrivateKey(readFileSync(keyPath, "utf8")).export({ type: "pkcs8", format: "der" });
  } catch (e) {
    throw new Error(`${keyPath}: cannot read the CA key (${(e as Error).message})`);
  }
}

/**
 * The CA of a data dir written by a version before the CA set (`ca.pem` + `ca.key`), or
 * undefined when there is no `ca.key`. Refuses a key readable by group or others, a
 * certificate that does not match the key or is no CA, and a `ca.pem` without its key.
 * A key without a certificate (a crash between the two writes of those versions) gets a
 * certificate made from it now: nobody can have seen the lost one.
 */
export async function readLegacyCa(dataDir: string, opts: { trustDomain: string; validityDays?: number }): Promise<{ ca: Ca; keyDer: Buffer; completed: boolean } | undefined> {
  const certPath = join(dataDir, CA_CERT_FILE);
  const keyPath = join(dataDir, CA_KEY_FILE);
  const keyDer = readLegacyKey(dataDir);
  if (!keyDer) return undefined;
  let imported: Awaited<ReturnType<typeof importPrivateKeyDer>>;
  try {
    imported = await importPrivateKeyDer(keyDer);
    caKeyTypeOf(imported.alg);
  } catch (e) {
    throw new Error(`${keyPath}: cannot read the CA key (${(e as Error).message})`);
  }
  if (!fileExists(certPath)) {
    const pub = createPublicKey(createPrivateKey({ key: keyDer, format: "der", type: "pkcs8" })).export({ type: "spki", format: "der" });
    const publicKey = await subtle.importKey("spki", pub, generationParams(imported.alg) as EcKeyImportParams, true, ["verify"]);
    const now = new Date();
    const validityMs = (opts.validityDays ?? DEFAULT_CA_VALIDITY_DAYS) * 86_400_000;
    const certPem = await selfSign(
      { privateKey: imported.key, publicKey }, imported.alg, caSubject(opts.trustDomain, randomBytes(6).toString("hex"), now),
      new Date(now.getTime() - CA_BACKDATE_MS), new Date(now.getTime() + validityMs),
    );
    return { ca: toCa(certPem, imported.key, imported.alg), keyDer, completed: true };
  }
  const certPem = readFileSync(certPath, "utf8");
  let nodeCert: NodeX509;
  try {
    nodeCert = new NodeX509(certPem);
  } catch (e) {
    throw new Error(`${certPath}: cannot parse the CA certificate (${(e as Error).message})`);
  }
  if (!nodeCert.checkPrivateKey(createPrivateKey({ key: keyDer, format: "der", type: "pkcs8" }))) throw new Error(`${certPath} does not match ${keyPath}`);
  if (!nodeCert.ca) throw new Error(`${certPath} is not a CA certificate`);
  return { ca: toCa(certPem, imported.key, imported.alg), keyDer, completed: false };
}

/**
 * A CA kept as files (`ca.pem`, `ca.key` 0600) in `dir`: read when there, else created.
 * For standalone CAs (test fixtures, the fuzzer); the controller keeps its CAs in the store.
 */
export async function loadOrCreateCa(
  dir: string,
  opts: { keyType?: CaKeyType; trustDomain: string; validityDays?: number },
): Promise<{ ca: Ca; created: boolean }> {
  ensurePrivateDir(dir);
  const certPath = join(dir, CA_CERT_FILE);
  const keyPath = join(dir, CA_KEY_FILE);
  const existing = await readLegacyCa(dir, opts);
  if (existing) {
    if (existing.completed) writeFileAtomic(certPath, existing.ca.certPem, 0o644);
    return { ca: existing.ca, created: existing.completed };
  }
  if (fileExists(certPath)) {
    throw new Error(`${certPath} exists but ${keyPath} is missing; restore the CA key from backup (or remove ${certPath} to start a new CA)`);
  }
  const { ca, keyDer } = await createCa({ keyType: opts.keyType, trustDomain: opts.trustDomain, validitySeconds: (opts.validityDays ?? DEFAULT_CA_VALIDITY_DAYS) * 86_400 });
  // Key first: a crash in between leaves a key without a certificate, which the next load completes.
  writeFileAtomic(keyPath, createPrivateKey({ key: keyDer, format: "der", type: "pkcs8" }).export({ type: "pkcs8", format: "pem" }));
  writeFileAtomic(certPath, ca.certPem, 0o644);
  return { ca, created: true };
}
