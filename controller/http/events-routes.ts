/**
 * Live events (PROTOCOL §10.1): `POST /api/v1/ws-tickets` and the WebSocket
 * `GET /api/v1/events`. The upgrade is accepted without credentials; the first frame
 * authenticates (a ticket or an API token); after a failure the socket stays open for
 * another try, at most AUTH_TRIES in AUTH_WINDOW_MS, then it closes with 4401. Any other
 * frame before `auth-ok` counts as a failed try. Once authenticated, the socket gets the
 * event bus (controller/domain/events.ts); a socket whose token is revoked or expires is
 * closed (4401) within TOKEN_CHECK_MS.
 */
import websocket from "@fastify/websocket";
import type { FastifyInstance, FastifyRequest } from "fastify";
import type { TypeBoxTypeProvider } from "@fastify/type-provider-typebox";
import type { TLSSocket } from "node:tls";
import type { WebSocket, RawData } from "ws";
import { TetherError, ErrorCode } from "../../shared/errors.ts";
import { operatorRouteSchemas as schemas } from "../../shared/wire/operator.ts";
import type { ControllerContext } from "../context.ts";
import type { AuthFailure, OperatorPrincipal } from "../domain/api-tokens.ts";
import { isRole, roleHas } from "../domain/capabilities.ts";
import type { BusEvent, Subscription } from "../domain/events.ts";
import { operatorOf } from "./request-context.ts";
import { route } from "./operator-routes.ts";

export const EVENTS_PATH = "/api/v1/events";
export const AUTH_TRIES = 3;
export const AUTH_WINDOW_MS = 10_000;
/** A socket that has not authenticated by then is closed (4401). */
export const AUTH_DEADLINE_MS = 30_000;
/** How often the tokens behind open sockets are read again (revocation, expiry). */
export const TOKEN_CHECK_MS = 500;
/** A socket with more than this waiting to be sent is too slow: closed (1013), never buffered further. */
export const MAX_BUFFERED_BYTES = 1 << 20;
/** Client frames are small (an auth frame). */
const MAX_FRAME_BYTES = 4096;

export const CLOSE_UNAUTHENTICATED = 4401;
const CLOSE_TRY_AGAIN = 1013;
const CLOSE_GOING_AWAY = 1001;

interface Stream {
  socket: WebSocket;
  principal: OperatorPrincipal;
  sub: Subscription;
}

const send = (socket: WebSocket, frame: object) => {
  if (socket.readyState === socket.OPEN) socket.send(JSON.stringify(frame));
};

export async function eventRoutes(scope: FastifyInstance, ctx: ControllerContext): Promise<void> {
  await scope.register(websocket, { options: { maxPayload: MAX_FRAME_BYTES } });
  const app = scope.withTypeProvider<TypeBoxTypeProvider>();
  /** Authenticated sockets, by API token id. */
  const streams = new Map<string, Set<Stream>>();
  const pending = new Set<WebSocket>();

  app.post("/api/v1/ws-tickets", { config: route("events:read"), schema: schemas.createWsTicket }, async (request, reply) =>
    reply.code(201).send(ctx.wsTickets.mint(operatorOf(request).tokenId)),
  );

  const failed = (request: FastifyRequest, reason: AuthFailure | "bad_frame" | "bad_ticket" | "client_certificate", tokenId?: string) => {
    ctx.metrics.guardRejection(ErrorCode.UNAUTHENTICATED);
    ctx.audit.rejected("operator.auth_failed", { source: request.ip, reason, ...(tokenId ? { token_id: tokenId } : {}) }, { method: "GET", path: EVENTS_PATH });
  };

  /** The principal behind a ticket: the token that minted it, as the store knows it now. */
  const byTicket = async (ticket: unknown, now = Date.now()): Promise<{ ok: true; principal: OperatorPrincipal } | { ok: false; reason: AuthFailure | "bad_ticket"; tokenId?: string }> => {
    const tokenId = ctx.wsTickets.redeem(ticket);
    if (tokenId === undefined) return { ok: false, reason: "bad_ticket" };
    const t = await ctx.store.getApiToken(tokenId);
    if (!t || !isRole(t.role)) return { ok: false, reason: "unknown", tokenId };
    if (t.revokedAt !== null) return { ok: false, reason: "revoked", tokenId };
    if (t.expiresAt !== null && t.expiresAt <= now) return { ok: false, reason: "expired", tokenId };
    return { ok: true, principal: { tokenId: t.id, name: t.name, role: t.role, expiresAt: t.expiresAt } };
  };

  const attach = (socket: WebSocket, principal: OperatorPrincipal): Stream => {
    const stream: Stream = {
      socket, principal,
      sub: ctx.events.subscribe(
        (e: BusEvent) => {
          if (socket.bufferedAmount > MAX_BUFFERED_BYTES) throw new Error("too slow");
          send(socket, { type: "event", event: e.event, at: e.at, data: e.data });
        },
        () => socket.close(CLOSE_TRY_AGAIN, "too slow"),
      ),
    };
    let set = streams.get(principal.tokenId);
    if (!set) streams.set(principal.tokenId, (set = new Set()));
    set.add(stream);
    return stream;
  };

  const detach = (stream: Stream) => {
    stream.sub.close();
    const set = streams.get(stream.principal.tokenId);
    set?.delete(stream);
    if (set?.size === 0) streams.delete(stream.principal.tokenId);
  };

  app.route({
    method: "GET",
    url: EVENTS_PATH,
    websocket: true,
    // The first frame authenticates (server.ts runs the API-token guard only on plain HTTP requests).
    config: { route: { plane: "operator", capability: "events:read", auth: "in-band" } },
    onRequest: async (request) => {
      if (!request.ws) {
        throw new TetherError(426, ErrorCode.INVALID_REQUEST, `${EVENTS_PATH} is a WebSocket: upgrade the connection`, { headers: { upgrade: "websocket" } });
      }
    },
    handler: (socket: WebSocket, request: FastifyRequest) => {
      let stream: Stream | undefined;
      let tries: number[] = [];
      let busy: Promise<void> = Promise.resolve();
      const tls = request.raw.socket as TLSSocket;
      const clientCert = typeof tls.getPeerCertificate === "function" && (tls.getPeerCertificate(false)?.raw?.length ?? 0) > 0;
      pending.add(socket);
      const deadline = setTimeout(() => {
        if (!stream) socket.close(CLOSE_UNAUTHENTICATED, "unauthenticated");
      }, AUTH_DEADLINE_MS);
      deadline.unref();

      const authenticate = async (raw: RawData, isBinary: boolean): Promise<void> => {
        if (stream || socket.readyState !== socket.OPEN) return; // after auth-ok, client frames are ignored
        let frame: { type?: unknown; ticket?: unknown; token?: unknown } | undefined;
        try {
          frame = isBinary ? undefined : (JSON.parse(raw.toString()) as typeof frame);
        } catch {
          frame = undefined;
        }
        let result: Awaited<ReturnType<typeof byTicket>> | Awaited<ReturnType<typeof ctx.apiTokens.authenticate>> | { ok: false; reason: "bad_frame" | "client_certificate" };
        if (!frame || typeof frame !== "object" || frame.type !== "auth") result = { ok: false, reason: "bad_frame" };
        // An executor's connection (client certificate) is never an operator's (PROTOCOL §5).
        else if (clientCert) result = { ok: false, reason: "client_certificate" };
        else if (typeof frame.token === "string") result = await ctx.apiTokens.authenticate(frame.token, request.ip);
        else if (frame.ticket !== undefined) result = await byTicket(frame.ticket);
        else result = { ok: false, reason: "bad_frame" };
        if (socket.readyState !== socket.OPEN) return;
        if (result.ok && roleHas(result.principal.role, "events:read")) {
          clearTimeout(deadline);
          pending.delete(socket);
          stream = attach(socket, result.principal);
          send(socket, { type: "auth-ok", role: result.principal.role });
          return;
        }
        failed(request, result.ok ? "unknown" : result.reason, result.ok ? undefined : "tokenId" in result ? result.tokenId : undefined);
        const now = Date.now();
        tries = [...tries.filter((t) => now - t < AUTH_WINDOW_MS), now];
        send(socket, { type: "auth-failed" });
        if (tries.length >= AUTH_TRIES) socket.close(CLOSE_UNAUTHENTICATED, "unauthenticated");
      };

      socket.on("message", (raw: RawData, isBinary: boolean) => {
        // One frame at a time, in order.
        busy = busy.then(() => authenticate(raw, isBinary)).catch((err: unknown) => {
          // A store that cannot be reached is never taken for a refusal: try again later.
          if (!(err instanceof TetherError && err.code === ErrorCode.UNAVAILABLE)) request.log.error({ err }, "events socket authentication failed");
          socket.close(CLOSE_TRY_AGAIN, "try again later");
        });
      });
      socket.on("close", () => {
        clearTimeout(deadline);
        pending.delete(socket);
        if (stream) detach(stream);
      });
    },
  });

  // Revoked or expired tokens end their sockets: the store is read again for each token with open sockets.
  let checking = false;
  const checkTokens = async () => {
    if (checking || streams.size === 0) return;
    checking = true;
    try {
      const now = Date.now();
      for (const [tokenId, set] of [...streams]) {
        const t = await ctx.store.getApiToken(tokenId).catch(() => "unavailable" as const);
        if (t === "unavailable") continue; // an outage is not a revocation
        const dead = !t || t.revokedAt !== null || (t.expiresAt !== null && t.expiresAt <= now);
        if (dead) for (const s of [...set]) s.socket.close(CLOSE_UNAUTHENTICATED, "token revoked or expired");
      }
    } finally {
      checking = false;
    }
  };
  const tokenTimer = setInterval(() => void checkTokens(), TOKEN_CHECK_MS);
  tokenTimer.unref();
  // Status changes that happen by time (suspect, offline) are found by a sweep, while anyone listens.
  const sweepMs = Math.max(1000, ctx.config.heartbeatIntervalSeconds * 1000);
  const sweepTimer = setInterval(() => {
    if (streams.size > 0) ctx.executors.sweepLiveness().catch(() => undefined);
  }, sweepMs);
  sweepTimer.unref();

  scope.addHook("preClose", async () => {
    clearInterval(tokenTimer);
    clearInterval(sweepTimer);
    for (const set of streams.values()) for (const s of set) s.socket.close(CLOSE_GOING_AWAY, "controller shutting down");
    for (const socket of pending) socket.close(CLOSE_GOING_AWAY, "controller shutting down");
  });
}
