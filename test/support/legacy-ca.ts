/**
 * A CA as versions before the CA set wrote it: `CN=Tether CA, O=<domain>`, CA:true
 * pathLenConstraint 0, in `ca.pem` + `ca.key` (0600) of a data dir.
 *
 *   const legacy = await writeLegacyCa(dataDir);   // { ca, certPem, keyPem }
 *   const twin = await selfSignedCa(ca.cert.subject);  // same name, another key
 */
import { createPrivateKey } from "node:crypto";
import { join } from "node:path";
import { caFromDer, type Ca } from "../../certs/ca.ts";
import { generateKeyPair, privateKeyToDer, signingParams } from "../../certs/keys.ts";
import { randomSerialHex, x509 } from "../../certs/x509.ts";
import { ensurePrivateDir, writeFileAtomic } from "../../shared/secure-fs.ts";

export function legacyCa(trustDomain = "tether.local"): Promise<{ ca: Ca; certPem: string; keyPem: string }> {
  return selfSignedCa(`CN=Tether CA, O=${trustDomain}`);
}

/** A CA under any name (pathlen 0, Ed25519, ten years): e.g. a look-alike of another CA, which only its key tells apart. */
export async function selfSignedCa(name: string): Promise<{ ca: Ca; certPem: string; keyPem: string }> {
  const keys = await generateKeyPair("Ed25519");
  const now = Date.now();
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: randomSerialHex(),
    name,
    notBefore: new Date(now - 5 * 60_000),
    notAfter: new Date(now + 3650 * 86_400_000),
    signingAlgorithm: signingParams("Ed25519"),
    keys,
    extensions: [
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
    ],
  });
  const certPem = cert.toString("pem") + "\n";
  const keyDer = await privateKeyToDer(keys.privateKey);
  const keyPem = createPrivateKey({ key: keyDer, format: "der", type: "pkcs8" }).export({ type: "pkcs8", format: "pem" }).toString();
  return { ca: await caFromDer(certPem, keyDer), certPem, keyPem };
}

export async function writeLegacyCa(dataDir: string, trustDomain?: string): Promise<{ ca: Ca; certPem: string; keyPem: string }> {
  return writeCaFiles(dataDir, await legacyCa(trustDomain));
}

/** `ca.pem` + `ca.key` in a data dir, as the earlier versions kept their CA: the controller imports it on its first start. */
export function writeCaFiles<T extends { certPem: string; keyPem: string }>(dataDir: string, material: T): T {
  ensurePrivateDir(dataDir);
  writeFileAtomic(join(dataDir, "ca.key"), material.keyPem);
  writeFileAtomic(join(dataDir, "ca.pem"), material.certPem, 0o644);
  return material;
}
