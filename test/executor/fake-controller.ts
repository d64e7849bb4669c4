/**
 * A scripted HTTPS stand-in for the controller, for unit tests of the client and
 * of the daemon's reactions to answers the real controller rarely gives
 * (CLOCK_SKEW, NONCE_REPLAY, 503…). It checks the HMAC with the shared verifier
 * and records what each request presented.
 *
 * Replicas (PROTOCOL §8): `addReplica(fake, tls)` listens on another port with the
 * same handler and state, as a second controller process on one store would;
 * `Recorded.via` says which listener took a request, `kill()` drops a replica's
 * connections and stops it listening, as a `kill -9` would.
 */
import { createServer, type Server } from "node:https";
import type { IncomingMessage, ServerResponse } from "node:http";
import type { TLSSocket } from "node:tls";
import { certThumbprint, type CertThumbprint } from "../../shared/fingerprint.ts";
import type { AddressInfo } from "node:net";
import { HEADER_NONCE, HEADER_SIGNATURE, HEADER_TIMESTAMP, verifySignature } from "../../shared/hmac.ts";

export interface Recorded {
  method: string;
  url: string;
  headers: IncomingMessage["headers"];
  body: Buffer;
  json: any;
  /** The client certificate, if one was presented. */
  certFingerprint?: CertThumbprint;
  certAuthorized: boolean;
  /** Whether the HMAC verified with the key given to the fake. */
  hmacOk: boolean;
  /** The URL of the listener (the fake's own, or a replica's) that took the request. */
  via: string;
  /** Whether the client's connection is gone (closed or destroyed) by now. */
  gone(): boolean;
}

/** `body` is sent as JSON; `text` as it is (e.g. a PEM bundle). */
/** `destroy`: drop the connection instead of answering (a replica dying with the request in hand). */
export type Reply = { status: number; body?: unknown; text?: string; headers?: Record<string, string>; delayMs?: number; destroy?: boolean };
export type Handler = (req: Recorded) => Reply | Promise<Reply>;

export interface FakeController {
  url: string;
  requests: Recorded[];
  handler: Handler;
  hmacKey?: Buffer;
  executorId?: string;
  /** Serves another certificate (chain: leaf first) from now on; open connections are closed. */
  serve(tls: { certPem: string; keyPem: string }): void;
  close(): Promise<void>;
}

type FakeTls = { certPem: string; keyPem: string; caPem: string; requireClientCert?: boolean };

/** One HTTPS listener answering with `fake`'s handler and recording into its requests. */
async function listen(fake: FakeController, tls: FakeTls): Promise<{ url: string; server: Server }> {
  let via = "";
  const server: Server = createServer(
    { cert: tls.certPem, key: tls.keyPem, ca: tls.caPem, requestCert: true, rejectUnauthorized: tls.requireClientCert ?? false },
    (req: IncomingMessage, res: ServerResponse) => {
      const chunks: Buffer[] = [];
      req.on("data", (c: Buffer) => chunks.push(c));
      req.on("end", async () => {
        const body = Buffer.concat(chunks);
        const socket = req.socket as TLSSocket;
        const peer = socket.getPeerCertificate?.(false);
        const raw = peer && "raw" in peer ? (peer.raw as Buffer | undefined) : undefined;
        const id = fake.executorId ?? /^\/v1\/executors\/([^/]+)\//.exec(req.url ?? "")?.[1] ?? "";
        const h = (n: string) => (typeof req.headers[n] === "string" ? (req.headers[n] as string) : "");
        const hmacOk =
          fake.hmacKey !== undefined &&
          verifySignature(fake.hmacKey, { method: req.method!, target: req.url!, executorId: id, timestamp: h(HEADER_TIMESTAMP), nonce: h(HEADER_NONCE), body }, h(HEADER_SIGNATURE));
        let json: unknown;
        try {
          json = body.length ? JSON.parse(body.toString("utf8")) : undefined;
        } catch {
          json = undefined;
        }
        const rec: Recorded = {
          method: req.method!, url: req.url!, headers: req.headers, body, json, hmacOk,
          certFingerprint: raw?.length ? certThumbprint(raw) : undefined,
          certAuthorized: socket.authorized,
          via,
          gone: () => socket.destroyed,
        };
        fake.requests.push(rec);
        let reply: Reply;
        try {
          reply = await fake.handler(rec);
        } catch (e) {
          reply = { status: 500, body: { error: { code: "INTERNAL", message: String(e) } } };
        }
        if (reply.delayMs) await new Promise((r) => setTimeout(r, reply.delayMs));
        if (reply.destroy) {
          socket.destroy();
          return;
        }
        const type = reply.text !== undefined ? "application/x-pem-file" : "application/json";
        res.writeHead(reply.status, { "content-type": type, ...(reply.headers ?? {}) });
        res.end(reply.text ?? (reply.body === undefined ? "" : JSON.stringify(reply.body)));
      });
    },
  );
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  via = `https://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return { url: via, server };
}

const serveOn = (server: Server, caPem: string) => (t: { certPem: string; keyPem: string }) => {
  server.setSecureContext({ cert: t.certPem, key: t.keyPem, ca: caPem });
  server.closeAllConnections();
};

const closeServer = (server: Server) => () =>
  new Promise<void>((r) => {
    server.closeAllConnections();
    server.close(() => r());
  });

export async function startFakeController(tls: FakeTls, handler: Handler): Promise<FakeController> {
  const fake: FakeController = { url: "", requests: [], handler, serve: () => {}, close: async () => {} };
  const { url, server } = await listen(fake, tls);
  fake.url = url;
  fake.serve = serveOn(server, tls.caPem);
  fake.close = closeServer(server);
  return fake;
}

export interface Replica {
  url: string;
  /** Serves another certificate from now on; open connections are closed. */
  serve(tls: { certPem: string; keyPem: string }): void;
  /** Every connection dropped and the port closed (connection refused from now on); idempotent. */
  kill(): Promise<void>;
}

/** Another listener of `fake` (same handler, same requests list): a second replica of the same controller. */
export async function addReplica(fake: FakeController, tls: FakeTls): Promise<Replica> {
  const { url, server } = await listen(fake, tls);
  const close = closeServer(server);
  let killed: Promise<void> | undefined;
  return { url, serve: serveOn(server, tls.caPem), kill: () => (killed ??= close()) };
}

export const wireError = (status: number, code: string, extra: Record<string, unknown> = {}, headers?: Record<string, string>): Reply => ({
  status,
  body: { error: { code, message: code.toLowerCase(), ...extra } },
  headers,
});
