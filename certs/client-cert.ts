/**
 * The application-layer check of a presented client certificate, done once per TLS
 * connection: chains to a CA of the trust bundle, inside its validity, EKU
 * clientAuth, and exactly one SAN URI naming an executor of this trust domain.
 * Whether it is still that executor's current certificate is the caller's to check.
 */
import type { KeyObject, X509Certificate } from "node:crypto";
import {
  assertWellFormed, bitStringBytes, childrenOf, contentOf, contextTag, DerError, elementOf, expectChildren, readSingle, sameBytes, TAG, type Tlv,
} from "./der.ts";
import { signatureAlgorithmOfId, verifies } from "./signature-algorithms.ts";
import { certThumbprint, type CertThumbprint } from "../shared/fingerprint.ts";
import { EXECUTOR_ID_PATTERN } from "../shared/ids.ts";

export interface ClientCertIdentity {
  executorId: string;
  fingerprint: CertThumbprint;
  /** notAfter, unix ms. */
  notAfter: number;
}

export type ClientCertResult = { ok: true; identity: ClientCertIdentity } | { ok: false; reason: string };

const escapeRe = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
const sanPatterns = new Map<string, RegExp>();

function sanPattern(trustDomain: string): RegExp {
  let re = sanPatterns.get(trustDomain);
  if (!re) {
    re = new RegExp(`^spiffe://${escapeRe(trustDomain)}/executor/(${EXECUTOR_ID_PATTERN})$`);
    sanPatterns.set(trustDomain, re);
  }
  return re;
}

/**
 * What a certificate is, apart from the time: the trust-independent part of the check
 * (parse, EKU, SAN) and whether it chains to one of `trust`'s CAs. Time is checked by
 * the caller (`verdictAt`), so a verdict can be kept while the trust set is the same.
 */
interface Verdict {
  /** Set when the certificate is refused whatever the time: unparseable or untrusted (checked before the time), or a later rule. */
  refusedBeforeTime?: string;
  refusedAfterTime?: string;
  notBefore: number;
  notAfter: number;
  identity?: ClientCertIdentity;
}

const CLIENT_AUTH_OID = Buffer.from("2b06010505070302", "hex");
const EXT = { basicConstraints: "551d13", extKeyUsage: "551d25", subjectAltName: "551d11" } as const;
const VERSION_3 = Buffer.from([contextTag(0, true), 3, TAG.INTEGER, 1, 2]);
/** GeneralName uniformResourceIdentifier: [6] IMPLICIT IA5String. */
const SAN_URI = contextTag(6, false);

/** What the check reads of a certificate (RFC 5280 §4.1), from a strict DER parse. */
interface CertParts {
  tbs: Uint8Array;
  signatureAlgorithm: Uint8Array;
  signature: Uint8Array;
  issuer: Uint8Array;
  notBefore: number;
  notAfter: number;
  /** Extension contents (the OCTET STRING's), by OID hex; a repeated extension is refused. */
  extensions: Map<string, Uint8Array>;
}

/** UTCTime YYMMDDHHMMSSZ (1950–2049) or GeneralizedTime YYYYMMDDHHMMSSZ, as DER requires them: unix ms. */
function timeOf(der: Uint8Array, t: Tlv): number {
  const text = Buffer.from(contentOf(der, t)).toString("latin1");
  const m = t.tag === TAG.UTC_TIME ? /^(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})Z$/.exec(text) : t.tag === TAG.GENERALIZED_TIME ? /^(\d{4})(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})Z$/.exec(text) : null;
  if (!m) throw new DerError("bad time");
  const [y, mo, d, h, mi, sec] = m.slice(1).map(Number) as [number, number, number, number, number, number];
  const year = t.tag === TAG.UTC_TIME ? (y < 50 ? 2000 + y : 1900 + y) : y;
  const ms = Date.UTC(year, mo - 1, d, h, mi, sec);
  const back = new Date(ms);
  if (back.getUTCMonth() !== mo - 1 || back.getUTCDate() !== d || h > 23 || mi > 59 || sec > 59) throw new DerError("bad time");
  return ms;
}

function certParts(der: Buffer): CertParts {
  const outer = readSingle(der);
  if (outer.tag !== TAG.SEQUENCE) throw new DerError("not a SEQUENCE");
  assertWellFormed(der, outer);
  const [tbs, sigAlg, signature] = expectChildren(der, outer, [TAG.SEQUENCE, TAG.SEQUENCE, TAG.BIT_STRING]) as [Tlv, Tlv, Tlv];
  const kids = childrenOf(der, tbs);
  // version [0] v3, serial, signature, issuer, validity, subject, subjectPublicKeyInfo, then [1] [2] optional, [3] extensions.
  const head = [contextTag(0, true), TAG.INTEGER, TAG.SEQUENCE, TAG.SEQUENCE, TAG.SEQUENCE, TAG.SEQUENCE, TAG.SEQUENCE];
  if (kids.length < head.length || head.some((tag, i) => kids[i]!.tag !== tag)) throw new DerError("unexpected structure");
  if (!VERSION_3.equals(elementOf(der, kids[0]!))) throw new DerError("not a version 3 certificate");
  const rest = kids.slice(head.length);
  const allowed = [contextTag(1, false), contextTag(2, false), contextTag(3, true)];
  let last = -1;
  for (const k of rest) {
    const i = allowed.indexOf(k.tag);
    if (i <= last) throw new DerError("unexpected structure");
    last = i;
  }
  const [notBefore, notAfter] = childrenOf(der, kids[4]!);
  if (!notBefore || !notAfter || childrenOf(der, kids[4]!).length !== 2) throw new DerError("bad validity");
  const extensions = new Map<string, Uint8Array>();
  const extWrapper = rest.find((k) => k.tag === contextTag(3, true));
  if (extWrapper) {
    const [list] = expectChildren(der, extWrapper, [TAG.SEQUENCE]) as [Tlv];
    for (const ext of childrenOf(der, list)) {
      if (ext.tag !== TAG.SEQUENCE) throw new DerError("bad extension");
      const parts = childrenOf(der, ext);
      const shape = parts.map((p) => p.tag).join(",");
      if (shape !== `${TAG.OID},${TAG.OCTET_STRING}` && shape !== `${TAG.OID},${TAG.BOOLEAN},${TAG.OCTET_STRING}`) throw new DerError("bad extension");
      const oid = Buffer.from(contentOf(der, parts[0]!)).toString("hex");
      if (extensions.has(oid)) throw new DerError("repeated extension");
      extensions.set(oid, contentOf(der, parts[parts.length - 1]!));
    }
  }
  const signatureAlgorithm = elementOf(der, sigAlg);
  if (!sameBytes(signatureAlgorithm, elementOf(der, kids[2]!))) throw new DerError("the two signature algorithms differ");
  return {
    tbs: elementOf(der, tbs),
    signatureAlgorithm,
    signature: bitStringBytes(der, signature),
    issuer: elementOf(der, kids[3]!),
    notBefore: timeOf(der, notBefore),
    notAfter: timeOf(der, notAfter),
    extensions,
  };
}

/** basicConstraints says cA TRUE. */
function isCa(value: Uint8Array | undefined): boolean {
  if (!value) return false;
  const bc = readSingle(value);
  if (bc.tag !== TAG.SEQUENCE) throw new DerError("bad basicConstraints");
  const first = childrenOf(value, bc)[0];
  return first?.tag === TAG.BOOLEAN && first.end - first.content === 1 && value[first.content] === 0xff;
}

/** extKeyUsage lists id-kp-clientAuth. */
function hasClientAuth(value: Uint8Array | undefined): boolean {
  if (!value) return false;
  const eku = readSingle(value);
  if (eku.tag !== TAG.SEQUENCE) throw new DerError("bad extKeyUsage");
  return childrenOf(value, eku).some((k) => k.tag === TAG.OID && sameBytes(contentOf(value, k), CLIENT_AUTH_OID));
}

/** The one name of subjectAltName when it is a single URI; undefined otherwise. */
function onlyUri(value: Uint8Array | undefined): string | undefined {
  if (!value) return undefined;
  const san = readSingle(value);
  if (san.tag !== TAG.SEQUENCE) throw new DerError("bad subjectAltName");
  const names = childrenOf(value, san);
  if (names.length !== 1 || names[0]!.tag !== SAN_URI) return undefined;
  return Buffer.from(contentOf(value, names[0]!)).toString("latin1");
}

/** A CA's subject Name DER and key, read once per CA object (`X509Certificate.publicKey` makes a new KeyObject on every access). */
const caIssuerOf = new WeakMap<X509Certificate, { subject: Uint8Array; key: KeyObject; kind: string | undefined }>();

function caIssuer(ca: X509Certificate): { subject: Uint8Array; key: KeyObject; kind: string | undefined } {
  let c = caIssuerOf.get(ca);
  if (!c) {
    const raw = ca.raw;
    const tbs = childrenOf(raw, readSingle(raw))[0]!;
    const subject = elementOf(raw, childrenOf(raw, tbs)[5]!);
    const key = ca.publicKey;
    c = { subject, key, kind: key.asymmetricKeyType };
    caIssuerOf.set(ca, c);
  }
  return c;
}

/** Issued by `ca`: its issuer is the CA's subject, byte for byte, and the CA's key verifies its signature. */
function issuedBy(parts: CertParts, ca: X509Certificate): boolean {
  const { subject, key, kind } = caIssuer(ca);
  if (!sameBytes(parts.issuer, subject)) return false;
  const alg = signatureAlgorithmOfId(parts.signatureAlgorithm);
  return alg !== undefined && alg.keys === kind && verifies(alg, parts.tbs, key, parts.signature);
}

/**
 * The verdict on a certificate, apart from the time: a strict DER parse (certs/der.ts)
 * and a node:crypto signature check — node:crypto's X509Certificate costs ~0.3 ms to
 * construct on Node 20, more than the rest of a resumed connection's certificate work.
 */
function judge(der: Buffer, trust: { caCerts: X509Certificate[]; trustDomain: string }): Verdict {
  let parts: CertParts;
  try {
    parts = certParts(der);
  } catch {
    return { refusedBeforeTime: "unparseable certificate", notBefore: 0, notAfter: 0 };
  }
  if (!trust.caCerts.some((ca) => issuedBy(parts, ca))) return { refusedBeforeTime: "untrusted issuer", notBefore: 0, notAfter: 0 };
  const v: Verdict = { notBefore: parts.notBefore, notAfter: parts.notAfter };
  try {
    if (isCa(parts.extensions.get(EXT.basicConstraints))) return { ...v, refusedAfterTime: "a CA certificate" };
    if (!hasClientAuth(parts.extensions.get(EXT.extKeyUsage))) return { ...v, refusedAfterTime: "no clientAuth EKU" };
    const executorId = sanPattern(trust.trustDomain).exec(onlyUri(parts.extensions.get(EXT.subjectAltName)) ?? "")?.[1];
    if (!executorId) return { ...v, refusedAfterTime: "bad SAN" };
    return { ...v, identity: { executorId, fingerprint: certThumbprint(der), notAfter: parts.notAfter } };
  } catch {
    return { refusedBeforeTime: "unparseable certificate", notBefore: 0, notAfter: 0 };
  }
}

function verdictAt(v: Verdict, nowMs: number): ClientCertResult {
  if (v.refusedBeforeTime) return { ok: false, reason: v.refusedBeforeTime };
  if (nowMs < v.notBefore) return { ok: false, reason: "not yet valid" };
  if (nowMs >= v.notAfter) return { ok: false, reason: "expired" };
  if (v.refusedAfterTime || !v.identity) return { ok: false, reason: v.refusedAfterTime ?? "bad SAN" };
  return { ok: true, identity: v.identity };
}

export function checkClientCert(
  der: Buffer | undefined,
  trust: { caCerts: X509Certificate[]; trustDomain: string },
  nowMs = Date.now(),
): ClientCertResult {
  if (!der || der.length === 0) return { ok: false, reason: "no certificate" };
  return verdictAt(judge(der, trust), nowMs);
}

/**
 * `checkClientCert` with its verdicts kept, by the certificate's SHA-256, for as long as
 * the trust set is the same object (a CA set change makes a new one: every verdict is
 * dropped) and the trust domain the same. The time is checked on every call. Parsing and
 * verifying a certificate is most of what a new connection costs the controller beyond
 * its handshake (a restart storm: every executor reconnects with the certificate it
 * had); a resumed TLS session skips the handshake's signatures, this skips the rest.
 * At most `max` verdicts, the oldest dropped first.
 */
export class ClientCertChecker {
  private verdicts = new Map<string, Verdict>();
  private caCerts: X509Certificate[] | undefined;
  private trustDomain: string | undefined;

  constructor(private readonly max = 50_000) {}

  check(der: Buffer | undefined, trust: { caCerts: X509Certificate[]; trustDomain: string }, nowMs = Date.now()): ClientCertResult {
    if (!der || der.length === 0) return { ok: false, reason: "no certificate" };
    if (trust.caCerts !== this.caCerts || trust.trustDomain !== this.trustDomain) {
      this.verdicts = new Map();
      this.caCerts = trust.caCerts;
      this.trustDomain = trust.trustDomain;
    }
    const key = certThumbprint(der);
    let v = this.verdicts.get(key);
    if (!v) {
      v = judge(der, trust);
      if (this.verdicts.size >= this.max) this.verdicts.delete(this.verdicts.keys().next().value!);
      this.verdicts.set(key, v);
    }
    return verdictAt(v, nowMs);
  }

  /** Verdicts held (for tests and metrics). */
  get size(): number {
    return this.verdicts.size;
  }
}
