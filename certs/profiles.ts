/** Certificate profiles: the executor client certificate (PROTOCOL §2) and the controller's server certificate. */
import { KeyObject, sign as nodeSign, webcrypto } from "node:crypto";
import { isIP } from "node:net";
import { executorSpiffeId } from "../shared/protocol.ts";
import { certThumbprint, type CertThumbprint } from "../shared/fingerprint.ts";
import { EXECUTOR_ID_RE } from "../shared/ids.ts";
import { x509, randomSerialHex, toPem } from "./x509.ts";
import { certificateSpki } from "./spki.ts";
import { issuerOf } from "./issuer.ts";
import { executorTbs, signCertificate } from "./executor-cert.ts";
import { generateKeyPair, privateKeyToPem, signingParams } from "./keys.ts";
import { caKeyAlg, stripDnSpecials, type Ca } from "./ca.ts";

export interface IssuedCert {
  pem: string;
  der: Uint8Array;
  /** The JWT `cnf.x5t#S256`. */
  fingerprint: CertThumbprint;
  serialHex: string;
  notBefore: Date;
  notAfter: Date;
}

/** notBefore is back-dated this much to tolerate clock skew. */
export const BACKDATE_MS = 5 * 60_000;

function validity(ca: Ca, ttlSeconds: number, now: Date): { notBefore: Date; notAfter: Date } {
  if (!Number.isFinite(ttlSeconds) || ttlSeconds <= 0) throw new Error(`invalid certificate lifetime ${ttlSeconds}s`);
  const notBefore = new Date(now.getTime() - BACKDATE_MS);
  const notAfter = new Date(Math.min(now.getTime() + ttlSeconds * 1000, ca.notAfter.getTime()));
  if (notAfter.getTime() <= now.getTime()) throw new Error(`the CA expired at ${ca.notAfter.toISOString()}`);
  return { notBefore, notAfter };
}

/** The issuer-side pieces every issued certificate shares, computed once per CA. */
const issuerCache = new WeakMap<Ca, Promise<{ aki: x509.AuthorityKeyIdentifierExtension; sign: Algorithm | EcdsaParams }>>();

function issuerParts(ca: Ca) {
  let p = issuerCache.get(ca);
  if (!p) {
    p = (async () => {
      const ski = ca.cert.getExtension(x509.SubjectKeyIdentifierExtension);
      const aki = ski ? new x509.AuthorityKeyIdentifierExtension(ski.keyId) : await x509.AuthorityKeyIdentifierExtension.create(ca.cert.publicKey);
      return { aki, sign: signingParams(caKeyAlg(ca)) };
    })();
    issuerCache.set(ca, p);
  }
  return p;
}

/**
 * A minimal WebCrypto stand-in for X509CertificateGenerator.create that signs
 * synchronously with node:crypto: saves two thread-pool round trips per certificate.
 * create() only calls subtle.sign here (the public key is passed as SPKI bytes and
 * the serial number is given). Signatures are in WebCrypto's format (raw r||s for ECDSA).
 */
const privateKeyObjects = new WeakMap<CryptoKey, KeyObject>();
const syncSigner = {
  getRandomValues: webcrypto.getRandomValues.bind(webcrypto),
  subtle: {
    async sign(alg: Algorithm | EcdsaParams, key: CryptoKey, data: BufferSource): Promise<ArrayBuffer> {
      let ko = privateKeyObjects.get(key);
      if (!ko) {
        ko = KeyObject.from(key as webcrypto.CryptoKey);
        privateKeyObjects.set(key, ko);
      }
      const bytes = ArrayBuffer.isView(data) ? Buffer.from(data.buffer, data.byteOffset, data.byteLength) : Buffer.from(data);
      let sig: Buffer;
      if (alg.name === "Ed25519") sig = nodeSign(null, bytes, ko);
      else if (alg.name === "ECDSA") {
        const hash = (alg as EcdsaParams).hash;
        const h = (typeof hash === "string" ? hash : hash.name).replace("-", "").toLowerCase();
        sig = nodeSign(h, bytes, { key: ko, dsaEncoding: "ieee-p1363" });
      } else throw new Error(`unsupported signing algorithm ${alg.name}`);
      return sig.buffer.slice(sig.byteOffset, sig.byteOffset + sig.byteLength) as ArrayBuffer;
    },
  },
} as unknown as Crypto;

/** A certificate's SPKI for a WebCrypto public key (certs/spki.ts: an EC point always uncompressed). */
function spkiOf(publicKey: CryptoKey): Uint8Array<ArrayBuffer> {
  const der = certificateSpki(KeyObject.from(publicKey as webcrypto.CryptoKey));
  return new Uint8Array(der.buffer.slice(der.byteOffset, der.byteOffset + der.byteLength) as ArrayBuffer);
}

/** A certificate time holds whole seconds. */
const wholeSeconds = (d: Date): Date => new Date(Math.floor(d.getTime() / 1000) * 1000);

async function issue(
  ca: Ca,
  subject: string,
  publicKey: CryptoKey,
  ttlSeconds: number,
  now: Date,
  extensions: x509.Extension[],
): Promise<IssuedCert> {
  const { notBefore, notAfter } = validity(ca, ttlSeconds, now);
  const { aki, sign } = await issuerParts(ca);
  const serialHex = randomSerialHex();
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: serialHex,
    subject,
    issuer: ca.cert.subjectName,
    notBefore,
    notAfter,
    signingKey: ca.privateKey,
    signingAlgorithm: sign,
    publicKey: spkiOf(publicKey),
    extensions: [...extensions, aki],
  }, syncSigner);
  const der = new Uint8Array(cert.rawData);
  return { pem: cert.toString("pem") + "\n", der, fingerprint: certThumbprint(der), serialHex, notBefore: cert.notBefore, notAfter: cert.notAfter };
}

/**
 * The executor client certificate, exactly as PROTOCOL §2 says; nothing from the CSR but its
 * key. A DER template (certs/executor-cert.ts) signed with node:crypto: no ASN.1 library and
 * no WebCrypto round trip on the registration path.
 */
export async function issueExecutorCert(
  ca: Ca,
  opts: { executorId: string; trustDomain: string; publicKey: KeyObject | CryptoKey; ttlSeconds: number; now?: Date },
): Promise<IssuedCert> {
  if (!EXECUTOR_ID_RE.test(opts.executorId)) throw new Error(`invalid executor id ${JSON.stringify(opts.executorId)}`);
  const v = validity(ca, opts.ttlSeconds, opts.now ?? new Date());
  const notBefore = wholeSeconds(v.notBefore);
  const notAfter = wholeSeconds(v.notAfter);
  const issuer = issuerOf(ca);
  const serialHex = randomSerialHex();
  const key = opts.publicKey instanceof KeyObject ? opts.publicKey : KeyObject.from(opts.publicKey as webcrypto.CryptoKey);
  const tbs = executorTbs(issuer, {
    serial: Buffer.from(serialHex, "hex"), notBefore, notAfter, executorId: opts.executorId,
    spiffeId: executorSpiffeId(opts.trustDomain, opts.executorId), spki: certificateSpki(key),
  });
  const der = signCertificate(issuer, tbs);
  return { pem: toPem("CERTIFICATE", der), der: new Uint8Array(der), fingerprint: certThumbprint(der), serialHex, notBefore, notAfter };
}

/** Distinct SANs in order; entries that parse as an IPv4/IPv6 address are IP SANs, the rest DNS. */
export function sanEntries(sans: string[]): x509.JsonGeneralName[] {
  const seen = new Set<string>();
  const out: x509.JsonGeneralName[] = [];
  for (const raw of sans) {
    const s = raw.trim();
    if (!s || seen.has(s.toLowerCase())) continue;
    seen.add(s.toLowerCase());
    out.push({ type: isIP(s) ? "ip" : "dns", value: s } as x509.JsonGeneralName);
  }
  return out;
}

export async function issueServerCert(
  ca: Ca,
  opts: { sans: string[]; ttlSeconds: number; now?: Date },
): Promise<IssuedCert & { keyPem: string }> {
  const names = sanEntries(opts.sans);
  if (names.length === 0) throw new Error("the server certificate needs at least one SAN");
  // P-256 for the server key: the broadest TLS client support.
  const keys = await generateKeyPair("P-256");
  const cn = stripDnSpecials(names[0]!.value as string) || "tether-controller";
  const issued = await issue(ca, `CN=${cn}`, keys.publicKey, opts.ttlSeconds, opts.now ?? new Date(), [
    new x509.BasicConstraintsExtension(false, undefined, true),
    new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
    new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth], false),
    new x509.SubjectAlternativeNameExtension(names, false),
  ]);
  return { ...issued, keyPem: await privateKeyToPem(keys.privateKey) };
}
