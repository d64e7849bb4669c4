/**
 * A deliberately low-level executor-side client for the integration tests: every
 * header, body byte and certificate is explicit, so each attack in PROTOCOL §3.2
 * can be made by hand over a real TLS connection.
 */
import { webcrypto } from "node:crypto";
import { Agent, request } from "undici";
import "reflect-metadata";
import * as x509 from "@peculiar/x509";
import { signRequestHeaders } from "../../shared/hmac.ts";
import { newNonce } from "../../shared/random.ts";
import type { RegisterResponse } from "../../shared/wire/executor.ts";

x509.cryptoProvider.set(webcrypto as unknown as Crypto);

export type KeyAlg = "Ed25519" | "P-256" | "P-384";

export interface KeyAndCsr {
  keyPem: string;
  csrPem: string;
  keys: CryptoKeyPair;
}

function algorithms(alg: KeyAlg) {
  if (alg === "Ed25519") return { gen: { name: "Ed25519" }, sign: { name: "Ed25519" } };
  return { gen: { name: "ECDSA", namedCurve: alg }, sign: { name: "ECDSA", hash: alg === "P-256" ? "SHA-256" : "SHA-384" } };
}

export function pem(label: string, der: ArrayBuffer): string {
  const b64 = Buffer.from(der).toString("base64").replace(/(.{64})/g, "$1\n").replace(/\n$/, "");
  return `-----BEGIN ${label}-----\n${b64}\n-----END ${label}-----\n`;
}

export async function newKeyAndCsr(alg: KeyAlg = "Ed25519", opts: { cn?: string; sans?: string[] } = {}): Promise<KeyAndCsr> {
  const a = algorithms(alg);
  const keys = (await webcrypto.subtle.generateKey(a.gen as EcKeyGenParams, true, ["sign", "verify"])) as CryptoKeyPair;
  const extensions = opts.sans ? [new x509.SubjectAlternativeNameExtension(opts.sans.map((v) => ({ type: v.startsWith("spiffe:") ? "url" : "dns", value: v }) as x509.JsonGeneralName))] : [];
  const csr = await x509.Pkcs10CertificateRequestGenerator.create({ name: `CN=${opts.cn ?? "executor"}`, keys, signingAlgorithm: a.sign, extensions });
  const keyPem = pem("PRIVATE KEY", await webcrypto.subtle.exportKey("pkcs8", keys.privateKey));
  return { keyPem, csrPem: csr.toString("pem"), keys };
}

export interface Response {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  text: string;
  json: any;
}

export class WireClient {
  readonly agent: Agent;
  constructor(
    readonly url: string,
    caPem: string,
    cert?: { certPem: string; keyPem: string },
  ) {
    this.agent = new Agent({ connect: { ca: caPem, ...(cert ? { cert: cert.certPem, key: cert.keyPem } : {}) } });
  }

  async send(method: string, path: string, opts: { body?: string | Buffer; headers?: Record<string, string> } = {}): Promise<Response> {
    const res = await request(this.url + path, {
      method: method as "POST",
      dispatcher: this.agent,
      body: opts.body,
      headers: { ...(opts.body !== undefined ? { "content-type": "application/json" } : {}), ...(opts.headers ?? {}) },
    });
    const text = await res.body.text();
    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch {
      json = undefined;
    }
    return { status: res.statusCode, headers: res.headers as Response["headers"], text, json };
  }

  close(): Promise<void> {
    return this.agent.close();
  }
}

export interface Enrolled {
  id: string;
  epoch: number;
  jwt: string;
  hmacKey: Buffer;
  certPem: string;
  keyPem: string;
  reg: RegisterResponse;
  client: WireClient;
}

export async function register(
  url: string,
  caPem: string,
  token: string,
  opts: { alg?: KeyAlg; name?: string; labels?: Record<string, string> } = {},
): Promise<Enrolled> {
  const { keyPem, csrPem } = await newKeyAndCsr(opts.alg);
  const anon = new WireClient(url, caPem);
  const res = await anon.send("POST", "/v1/executors/register", {
    body: JSON.stringify({ enrollment_token: token, csr_pem: csrPem, name: opts.name, labels: opts.labels, capacity: 2 }),
  });
  await anon.close();
  if (res.status !== 201) throw new Error(`register failed: ${res.status} ${res.text}`);
  const reg = res.json as RegisterResponse;
  return {
    id: reg.executor_id, epoch: reg.epoch, jwt: reg.jwt, hmacKey: Buffer.from(reg.hmac_key, "base64url"),
    certPem: reg.certificate_pem, keyPem, reg, client: new WireClient(url, caPem, { certPem: reg.certificate_pem, keyPem }),
  };
}

/** Sends a fully authenticated executor request (mTLS + JWT + HMAC) unless told otherwise. */
export async function executorCall(
  e: Pick<Enrolled, "id" | "jwt" | "hmacKey" | "client">,
  method: string,
  path: string,
  body: unknown,
  opts: { jwt?: string | null; timestamp?: string; nonce?: string; signAs?: { path?: string; body?: string; id?: string }; headers?: Record<string, string>; client?: WireClient } = {},
): Promise<Response> {
  const raw = body === undefined ? undefined : typeof body === "string" ? body : JSON.stringify(body);
  const sig = signRequestHeaders(
    e.hmacKey,
    { method, target: opts.signAs?.path ?? path, executorId: opts.signAs?.id ?? e.id, body: opts.signAs?.body ?? raw, timestamp: opts.timestamp, nonce: opts.nonce },
    newNonce,
  );
  const jwt = opts.jwt === undefined ? e.jwt : opts.jwt;
  return (opts.client ?? e.client).send(method, path, {
    body: raw,
    headers: { ...sig, ...(jwt ? { authorization: `Bearer ${jwt}` } : {}), ...(opts.headers ?? {}) },
  });
}

export const HEARTBEAT = { status: "ready", running: 0, capacity: 2, leases: [] as string[] };
