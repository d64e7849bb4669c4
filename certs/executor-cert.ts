/**
 * The executor client certificate (PROTOCOL §2) as a DER template: encoded directly and
 * signed with node:crypto, no ASN.1 library on the request path. The bytes are those
 * @peculiar/x509's X509CertificateGenerator wrote for the same profile before
 * (test/certs/executor-cert.test.ts compares them):
 *
 *   version v3, serial, signature = the CA's algorithm, issuer = the CA's subject,
 *   validity (whole seconds; UTCTime through 2049, then GeneralizedTime), subject CN=<id>
 *   (PrintableString when the id is printable, else UTF8String — an id with "_"),
 *   the key, and the extensions in this order:
 *     basicConstraints  critical  CA:FALSE
 *     keyUsage          critical  digitalSignature
 *     extKeyUsage                 clientAuth
 *     subjectAltName              URI spiffe://<trust domain>/executor/<id>
 *     authorityKeyId              keyIdentifier = the CA's subjectKeyIdentifier
 */
import { bitString, certTime, seq, tlv, TAG, contextTag, unsignedInteger } from "./der.ts";
import { signWith } from "./signature-algorithms.ts";
import type { IssuerParts } from "./issuer.ts";

export interface ExecutorCertFields {
  /** Positive serial, big-endian. */
  serial: Uint8Array;
  /** Whole seconds. */
  notBefore: Date;
  notAfter: Date;
  executorId: string;
  spiffeId: string;
  /** The key's SubjectPublicKeyInfo DER as the certificate carries it (certs/spki.ts `certificateSpki`). */
  spki: Uint8Array;
}

const hex = (h: string) => Buffer.from(h, "hex");
const VERSION_3 = hex("a003020102");
const OID_COMMON_NAME = tlv(TAG.OID, hex("550403"));
/** BasicConstraints, critical, SEQUENCE {} (cA FALSE is the default, so absent in DER). */
const BASIC_CONSTRAINTS = hex("300c0603551d130101ff04023000");
/** KeyUsage, critical, BIT STRING digitalSignature (bit 0: 7 unused bits, 0x80). */
const KEY_USAGE = hex("300e0603551d0f0101ff040403020780");
/** ExtendedKeyUsage, not critical, id-kp-clientAuth. */
const EXT_KEY_USAGE = hex("30130603551d25040c300a06082b06010505070302");
const OID_SAN = tlv(TAG.OID, hex("551d11"));
const OID_AKI = tlv(TAG.OID, hex("551d23"));

/** The characters of an X.520 PrintableString: @peculiar/x509 writes a name value as one when it can. */
const PRINTABLE = /^[A-Za-z0-9 '()+,\-./:=?]*$/;
const IA5 = /^[\x00-\x7f]*$/;

function commonNameValue(id: string): Buffer {
  return tlv(PRINTABLE.test(id) ? TAG.PRINTABLE_STRING : TAG.UTF8_STRING, Buffer.from(id, "utf8"));
}

/** The TBSCertificate DER. */
export function executorTbs(issuer: IssuerParts, f: ExecutorCertFields): Buffer {
  if (!IA5.test(f.spiffeId)) throw new Error(`the SPIFFE id ${JSON.stringify(f.spiffeId)} is not ASCII (an IA5String URI)`);
  const subject = seq(tlv(TAG.SET, seq(OID_COMMON_NAME, commonNameValue(f.executorId))));
  const san = seq(OID_SAN, tlv(TAG.OCTET_STRING, seq(tlv(contextTag(6, false), Buffer.from(f.spiffeId, "latin1")))));
  const aki = seq(OID_AKI, tlv(TAG.OCTET_STRING, seq(tlv(contextTag(0, false), issuer.keyId))));
  return seq(
    VERSION_3,
    unsignedInteger(f.serial),
    issuer.signatureAlgorithm.id,
    issuer.name,
    seq(certTime(f.notBefore), certTime(f.notAfter)),
    subject,
    f.spki,
    tlv(contextTag(3, true), seq(BASIC_CONSTRAINTS, KEY_USAGE, EXT_KEY_USAGE, san, aki)),
  );
}

/** The Certificate DER: `tbs` signed with the issuer's key. */
export function signCertificate(issuer: IssuerParts, tbs: Buffer): Buffer {
  const signature = signWith(issuer.signatureAlgorithm, tbs, issuer.signingKey);
  return seq(tbs, issuer.signatureAlgorithm.id, bitString(signature));
}
