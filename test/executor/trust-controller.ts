/**
 * A stand-in controller with a trust lifecycle, over real TLS, for the daemon's
 * half of PROTOCOL §7: a CA set (the bundle and its `trust_bundle_version`), an
 * active CA that issues executor certificates, `GET /v1/ca/bundle.pem` with
 * `X-Tether-Bundle-Version`, HMAC key rotation (a renew with a CSR and every
 * re-register hand out a new key; the previous one stays accepted), and a served
 * certificate chain the test can change (`serve`, e.g. [server cert, cross cert]).
 * Like the real one, a heartbeat made with a certificate the active CA did not issue
 * is told to renew now (`cert_renew_after`).
 *
 *   const t = await startTrustController({ cas: [a], active: a });
 *   t.setBundle([a, b]);                 // version + 1
 *   t.activate(b);                       // issues from b; serves [server cert from b, b cross-signed by a]
 *   t.requests(r => r.route === "heartbeat").map(r => r.json.trust_bundle_version)
 */
import { randomBytes } from "node:crypto";
import { HEADER_NONCE, HEADER_SIGNATURE, HEADER_TIMESTAMP, verifySignature } from "../../shared/hmac.ts";
import { BUNDLE_VERSION_HEADER } from "../../shared/protocol.ts";
import { certInfo } from "../../executor/certificate.ts";
import type { ChainCa } from "../support/ca.ts";
import { startFakeController, wireError, type FakeController, type Recorded, type Reply } from "./fake-controller.ts";

const rfc = (ms: number) => new Date(ms).toISOString().replace(/\.\d{3}Z$/, "Z");

export interface TrustRequest extends Recorded {
  route: string;
  /** Which HMAC key signed it: the current one, the previous one (grace), or none the controller accepts. */
  hmacWith?: "current" | "previous";
}

export interface TrustController {
  fake: FakeController;
  url: string;
  id: string;
  epoch: number;
  bundle: ChainCa[];
  version: number;
  active: ChainCa;
  hmacKey: Buffer;
  previousHmacKey?: Buffer;
  /** Fingerprint (x5t#S256) of the last certificate issued. */
  certFingerprint?: string;
  certTtlMs: number;
  /** Scripted answers per route, taken before the normal handling. */
  script: Record<string, Reply[]>;
  log: TrustRequest[];
  requests(pred?: (r: TrustRequest) => boolean): TrustRequest[];
  /** A new bundle: its version grows by one. */
  setBundle(cas: ChainCa[], opts?: { pem?: string }): void;
  /** `next` signs from now on; the server certificate is re-issued by it and served with `next` cross-signed by the old active CA. */
  activate(next: ChainCa, opts?: { cross?: boolean }): Promise<void>;
  close(): Promise<void>;
}

/** `registerVersion: false`: the registration answer carries no `trust_bundle_version` (a controller from before bundle versions). */
export async function startTrustController(o: { cas: ChainCa[]; active: ChainCa; certTtlMs?: number; heartbeatS?: number; registerVersion?: boolean }): Promise<TrustController> {
  const heartbeatS = o.heartbeatS ?? 0.2;
  let bundlePemOverride: string | undefined;
  const t: TrustController = {
    fake: undefined as never, url: "", id: "ex_trust01", epoch: 0, bundle: o.cas, version: 1, active: o.active,
    hmacKey: randomBytes(32), certTtlMs: o.certTtlMs ?? 3600_000, script: {}, log: [],
    requests: (pred) => (pred ? t.log.filter(pred) : t.log),
    setBundle(cas, opts = {}) {
      t.bundle = cas;
      bundlePemOverride = opts.pem;
      t.version++;
    },
    async activate(next, opts = {}) {
      const previous = t.active;
      t.active = next;
      const server = await next.serverCert();
      const chain = opts.cross === false ? server.certPem : server.certPem + (await previous.crossSign(next));
      t.fake.serve({ certPem: chain, keyPem: server.keyPem });
    },
    close: () => t.fake.close(),
  };
  /** Fingerprints of the executor certificates each CA issued. */
  const issuedBy = new Map<string, ChainCa>();
  const bundlePem = () => bundlePemOverride ?? t.bundle.map((c) => c.certPem).join("");
  const rotateHmac = () => {
    t.previousHmacKey = t.hmacKey;
    t.hmacKey = randomBytes(32);
  };
  const issue = async (csrPem: string) => {
    const cert = await t.active.issueForCsr(csrPem, t.id, { ttlMs: t.certTtlMs });
    t.certFingerprint = certInfo(cert).fingerprint;
    issuedBy.set(t.certFingerprint, t.active);
    return cert;
  };
  const credentials = async (r: Recorded, rotateKey: boolean) => {
    const now = Date.now();
    const out: Record<string, unknown> = {
      epoch: t.epoch, jwt: `jwt-${t.epoch}-${now}`, jwt_expires_at: rfc(now + 600_000), cert_expires_at: rfc(now + t.certTtlMs),
      ca_bundle_pem: bundlePem(), trust_bundle_version: t.version,
    };
    if (r.json?.csr_pem) out.certificate_pem = await issue(r.json.csr_pem);
    if (rotateKey) {
      rotateHmac();
      out.hmac_key = t.hmacKey.toString("base64url");
    }
    return out;
  };
  const signedWith = (r: Recorded): TrustRequest["hmacWith"] => {
    const h = (n: string) => (typeof r.headers[n] === "string" ? (r.headers[n] as string) : "");
    const input = { method: r.method, target: r.url, executorId: t.id, timestamp: h(HEADER_TIMESTAMP), nonce: h(HEADER_NONCE), body: r.body };
    if (verifySignature(t.hmacKey, input, h(HEADER_SIGNATURE))) return "current";
    if (t.previousHmacKey && verifySignature(t.previousHmacKey, input, h(HEADER_SIGNATURE))) return "previous";
    return undefined;
  };
  const handler = async (r: Recorded): Promise<Reply> => {
    const route = r.url.split("?")[0]!.split("/").pop()!;
    const req: TrustRequest = { ...r, route, hmacWith: route === "register" || route === "bundle.pem" ? undefined : signedWith(r) };
    t.log.push(req);
    const scripted = t.script[route]?.shift();
    if (scripted) return scripted;
    if (route === "bundle.pem") return { status: 200, text: bundlePem(), headers: { [BUNDLE_VERSION_HEADER]: String(t.version) } };
    if (route === "register") {
      t.epoch = 1;
      const cert = await issue(r.json.csr_pem);
      return {
        status: 201,
        body: {
          executor_id: t.id, epoch: 1, certificate_pem: cert, ca_bundle_pem: bundlePem(), cert_expires_at: rfc(Date.now() + t.certTtlMs),
          jwt: `jwt-1-${Date.now()}`, jwt_expires_at: rfc(Date.now() + 600_000), hmac_key: t.hmacKey.toString("base64url"), heartbeat_interval_s: heartbeatS,
          ...(o.registerVersion === false ? {} : { trust_bundle_version: t.version }),
        },
      };
    }
    if (!req.hmacWith) return wireError(401, "SIGNATURE_INVALID");
    if (route === "renew") return { status: 200, body: await credentials(r, Boolean(r.json?.csr_pem)) };
    if (route === "reregister") {
      t.epoch++;
      return { status: 200, body: await credentials(r, true) };
    }
    if (route === "heartbeat") {
      const now = Date.now();
      const renewCert = r.certFingerprint !== undefined && issuedBy.get(r.certFingerprint) !== t.active ? now : now + 3600_000;
      return {
        status: 200,
        body: {
          server_time: rfc(now), next_heartbeat_s: heartbeatS, jwt_renew_after: rfc(now + 3600_000), cert_renew_after: rfc(renewCert),
          drain: false, cancel_leases: [], trust_bundle_version: t.version,
        },
      };
    }
    return wireError(404, "NOT_FOUND");
  };
  const server = await o.active.serverCert();
  t.fake = await startFakeController({ ...server, caPem: o.cas.map((c) => c.certPem).join("") }, handler);
  t.url = t.fake.url;
  t.fake.executorId = t.id;
  return t;
}
