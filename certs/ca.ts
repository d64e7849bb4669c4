/**
 * The controller's certificate authority: created on first start in the data dir
 * (`ca.pem`, `ca.key`), loaded afterwards. The controller refuses to start when
 * `ca.key` is readable by group or others.
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { X509Certificate as NodeX509, createPrivateKey, createPublicKey } from "node:crypto";
import { assertPrivateFile, ensurePrivateDir, fileExists, writeFileAtomic } from "../shared/secure-fs.ts";
import { x509, randomSerialHex, subtle } from "./x509.ts";
import { generateKeyPair, generationParams, importPrivateKeyPem, KEY_ALGORITHMS, privateKeyToPem, signingParams, type KeyAlgorithmName } from "./keys.ts";
import { caFingerprint, type CaFingerprint } from "../shared/fingerprint.ts";

export type CaKeyType = "ed25519" | "p256";

export interface Ca {
  /** ca.pem contents. */
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

const keyAlgOf = (t: CaKeyType): KeyAlgorithmName => KEY_ALGORITHMS[t];
export const caKeyAlg = (ca: Pick<Ca, "keyType">): KeyAlgorithmName => keyAlgOf(ca.keyType);

/** Characters that would change the meaning of a string-form DN. */
export const stripDnSpecials = (s: string): string => s.replace(/[,+="\\<>;#\r\n]/g, "");

function toCa(certPem: string, privateKey: CryptoKey, alg: KeyAlgorithmName): Ca {
  const cert = new x509.X509Certificate(certPem);
  return {
    certPem,
    cert,
    privateKey,
    keyType: alg === "Ed25519" ? "ed25519" : "p256",
    notBefore: cert.notBefore,
    notAfter: cert.notAfter,
    fingerprintSha256: caFingerprint(new Uint8Array(cert.rawData)),
  };
}

async function createCaCert(keys: CryptoKeyPair, alg: KeyAlgorithmName, trustDomain: string, validityDays: number): Promise<string> {
  const now = Date.now();
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: randomSerialHex(),
    name: `CN=Tether CA, O=${stripDnSpecials(trustDomain) || "tether"}`,
    notBefore: new Date(now - 5 * 60_000),
    notAfter: new Date(now + validityDays * 86_400_000),
    signingAlgorithm: signingParams(alg),
    keys,
    extensions: [
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
    ],
  });
  return cert.toString("pem") + "\n";
}

export async function loadOrCreateCa(
  dataDir: string,
  opts: { keyType?: CaKeyType; trustDomain: string; validityDays?: number },
): Promise<{ ca: Ca; created: boolean }> {
  ensurePrivateDir(dataDir);
  const certPath = join(dataDir, CA_CERT_FILE);
  const keyPath = join(dataDir, CA_KEY_FILE);
  const validityDays = opts.validityDays ?? DEFAULT_CA_VALIDITY_DAYS;

  if (fileExists(keyPath)) {
    assertPrivateFile(keyPath);
    const keyPem = readFileSync(keyPath, "utf8");
    let imported: Awaited<ReturnType<typeof importPrivateKeyPem>>;
    try {
      imported = await importPrivateKeyPem(keyPem);
    } catch (e) {
      throw new Error(`${keyPath}: cannot read the CA key (${(e as Error).message})`);
    }
    if (imported.alg === "P-384") throw new Error(`${keyPath}: unsupported CA key type P-384 (use Ed25519 or P-256)`);
    if (!fileExists(certPath)) {
      // A crash after writing the key but before the certificate: nobody has seen this
      // CA's certificate yet, so make it again from the same key.
      const pub = createPublicKey(createPrivateKey(keyPem)).export({ type: "spki", format: "der" });
      const publicKey = await subtle.importKey("spki", pub, generationParams(imported.alg) as EcKeyImportParams, true, ["verify"]);
      const certPem = await createCaCert({ privateKey: imported.key, publicKey }, imported.alg, opts.trustDomain, validityDays);
      writeFileAtomic(certPath, certPem, 0o644);
      return { ca: toCa(certPem, imported.key, imported.alg), created: true };
    }
    const certPem = readFileSync(certPath, "utf8");
    let nodeCert: NodeX509;
    try {
      nodeCert = new NodeX509(certPem);
    } catch (e) {
      throw new Error(`${certPath}: cannot parse the CA certificate (${(e as Error).message})`);
    }
    if (!nodeCert.checkPrivateKey(createPrivateKey(keyPem))) throw new Error(`${certPath} does not match ${keyPath}`);
    if (!nodeCert.ca) throw new Error(`${certPath} is not a CA certificate`);
    return { ca: toCa(certPem, imported.key, imported.alg), created: false };
  }

  if (fileExists(certPath)) {
    throw new Error(`${certPath} exists but ${keyPath} is missing; restore the CA key from backup (or remove ${certPath} to start a new CA)`);
  }
  const alg = keyAlgOf(opts.keyType ?? "ed25519");
  const keys = await generateKeyPair(alg);
  const certPem = await createCaCert(keys, alg, opts.trustDomain, validityDays);
  const keyPem = await privateKeyToPem(keys.privateKey);
  // Key first: a crash in between leaves a key without a certificate, which the next
  // start completes from the same key.
  writeFileAtomic(keyPath, keyPem);
  writeFileAtomic(certPath, certPem, 0o644);
  const { key } = await importPrivateKeyPem(keyPem);
  return { ca: toCa(certPem, key, alg), created: true };
}
