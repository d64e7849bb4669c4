/**
 * Key material the fuzzer sends: a pool of valid CSRs (with their keys), CSRs of key
 * types the contract refuses, and certificates an attacker could hold — from a foreign
 * CA with a look-alike name, or from the controller's active CA (read from the data
 * dir's store with its KEK, as an insider could) but not the executor's current one: a fresh key, expired, the
 * wrong EKU, another trust domain.
 */
import { caFromDer, caKeyAlg, type Ca } from "../certs/ca.ts";
import { openStore } from "../controller/store/open-store.ts";
import { signingParams } from "../certs/keys.ts";
import { issueExecutorCert } from "../certs/profiles.ts";
import { randomSerialHex, subtle, x509 } from "../certs/x509.ts";
import { DEFAULT_TRUST_DOMAIN, executorSpiffeId } from "../shared/protocol.ts";
import { newKeyAndCsr, pem, type KeyAlg } from "../test/support/wire.ts";
import { selfSignedCa } from "../test/support/legacy-ca.ts";

export interface CsrWithKey {
  alg: KeyAlg;
  csrPem: string;
  keyPem: string;
  keys: CryptoKeyPair;
}

export type ForgedKind = "fresh-key" | "expired" | "server-eku" | "other-trust-domain" | "foreign-ca";

export const FORGED_KINDS: readonly ForgedKind[] = ["fresh-key", "expired", "server-eku", "other-trust-domain", "foreign-ca"];

export class Material {
  private readonly forged = new Map<string, Promise<{ certPem: string; keyPem: string }>>();
  private constructor(
    readonly csrs: CsrWithKey[],
    /** CSRs whose key type PROTOCOL §2 refuses (RSA, P-521): never a 201. */
    readonly refusedCsrs: { what: string; csrPem: string }[],
    private readonly ownCa: Ca,
    private readonly foreignCa: Ca,
    readonly trustDomain: string,
  ) {}

  static async create(dataDir: string, trustDomain = DEFAULT_TRUST_DOMAIN): Promise<Material> {
    const algs: KeyAlg[] = ["Ed25519", "P-256", "P-384", "Ed25519", "P-256", "Ed25519"];
    const csrs = await Promise.all(algs.map(async (alg) => ({ alg, ...(await newKeyAndCsr(alg, { cn: "fuzz" })) })));
    const refusedCsrs = await Promise.all([
      refusedCsr("RSA 2048", { name: "RSASSA-PKCS1-v1_5", modulusLength: 2048, publicExponent: new Uint8Array([1, 0, 1]), hash: "SHA-256" }, { name: "RSASSA-PKCS1-v1_5" }),
      refusedCsr("ECDSA P-521", { name: "ECDSA", namedCurve: "P-521" }, { name: "ECDSA", hash: "SHA-512" }),
    ]);
    const ownCa = await activeCa(dataDir);
    // The very same issuer name: only the key tells them apart.
    const { ca: foreignCa } = await selfSignedCa(ownCa.cert.subject);
    return new Material(csrs, refusedCsrs, ownCa, foreignCa, trustDomain);
  }

  /** A certificate naming `executorId` that is not that executor's current one (made once per kind and id). */
  forgedCert(kind: ForgedKind, executorId: string): Promise<{ certPem: string; keyPem: string }> {
    const key = `${kind}/${executorId}`;
    let p = this.forged.get(key);
    if (!p) {
      p = this.forge(kind, executorId);
      this.forged.set(key, p);
    }
    return p;
  }

  private async forge(kind: ForgedKind, executorId: string): Promise<{ certPem: string; keyPem: string }> {
    const { keyPem, keys } = await newKeyAndCsr("P-256");
    const day = 86400_000;
    if (kind === "fresh-key" || kind === "foreign-ca") {
      const ca = kind === "foreign-ca" ? this.foreignCa : this.ownCa;
      const c = await issueExecutorCert(ca, { executorId, trustDomain: this.trustDomain, publicKey: keys.publicKey, ttlSeconds: 3600 });
      return { certPem: c.pem, keyPem };
    }
    const notBefore = new Date(Date.now() - (kind === "expired" ? 2 * day : 60_000));
    const notAfter = new Date(kind === "expired" ? Date.now() - day : Date.now() + day);
    const domain = kind === "other-trust-domain" ? "evil.example" : this.trustDomain;
    const cert = await x509.X509CertificateGenerator.create({
      serialNumber: randomSerialHex(),
      subject: `CN=${executorId}`,
      issuer: this.ownCa.cert.subjectName,
      publicKey: keys.publicKey,
      signingKey: this.ownCa.privateKey,
      signingAlgorithm: signingParams(caKeyAlg(this.ownCa)),
      notBefore,
      notAfter,
      extensions: [
        new x509.SubjectAlternativeNameExtension([{ type: "url", value: executorSpiffeId(domain, executorId) }]),
        new x509.ExtendedKeyUsageExtension([kind === "server-eku" ? x509.ExtendedKeyUsage.serverAuth : x509.ExtendedKeyUsage.clientAuth]),
        new x509.BasicConstraintsExtension(false),
      ],
    });
    return { certPem: cert.toString("pem"), keyPem };
  }

  close(): void {
    // Nothing on disk to remove: both CAs live in memory.
  }
}

/** The controller's active CA with its key, from the store in its data dir (decrypted with the KEK beside it). */
async function activeCa(dataDir: string): Promise<Ca> {
  const store = await openStore({ dataDir, create: false });
  try {
    const active = (await store.cas.trustBundle()).cas.find((c) => c.state === "active");
    if (!active) throw new Error(`no active CA in ${dataDir}`);
    return await caFromDer(active.certPem, await store.cas.caPrivateKey(active.id));
  } finally {
    await store.close();
  }
}

async function refusedCsr(what: string, gen: RsaHashedKeyGenParams | EcKeyGenParams, sign: Algorithm | EcdsaParams): Promise<{ what: string; csrPem: string }> {
  const keys = (await subtle.generateKey(gen, true, ["sign", "verify"])) as CryptoKeyPair;
  const csr = await x509.Pkcs10CertificateRequestGenerator.create({ name: "CN=fuzz", keys, signingAlgorithm: sign });
  return { what, csrPem: pem("CERTIFICATE REQUEST", csr.rawData) };
}
