/**
 * Cross-signing (PROTOCOL §7.2): the new CA's subject and key, certified by the previous
 * CA. After an activation the controller serves it after its server certificate, so a
 * client that still trusts only the previous CA builds server → new CA (this certificate)
 * → previous CA. pathLenConstraint 0: below it only leaf certificates. Its validity lies
 * within the issuer's; its key identifier is the new CA's own, so the server certificate's
 * authority key identifier matches either form of the new CA.
 */
import { x509, randomSerialHex } from "./x509.ts";
import { caKeyAlg, type Ca } from "./ca.ts";
import { signingParams } from "./keys.ts";

const BACKDATE_MS = 5 * 60_000;

function keyIdOf(ca: Ca): string {
  const ski = ca.cert.getExtension(x509.SubjectKeyIdentifierExtension);
  if (!ski) throw new Error(`CA ${ca.fingerprintSha256} has no subject key identifier`);
  return ski.keyId;
}

export async function crossSign(subject: Ca, issuer: Ca, now = new Date()): Promise<string> {
  const notBefore = new Date(Math.max(now.getTime() - BACKDATE_MS, issuer.notBefore.getTime(), subject.notBefore.getTime()));
  const notAfter = new Date(Math.min(subject.notAfter.getTime(), issuer.notAfter.getTime()));
  if (notAfter.getTime() <= now.getTime()) throw new Error(`the issuing CA ${issuer.fingerprintSha256} has expired`);
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: randomSerialHex(),
    subject: subject.cert.subjectName,
    issuer: issuer.cert.subjectName,
    notBefore,
    notAfter,
    publicKey: subject.cert.publicKey,
    signingKey: issuer.privateKey,
    signingAlgorithm: signingParams(caKeyAlg(issuer)),
    extensions: [
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
      new x509.SubjectKeyIdentifierExtension(keyIdOf(subject)),
      new x509.AuthorityKeyIdentifierExtension(keyIdOf(issuer)),
    ],
  });
  return cert.toString("pem") + "\n";
}
