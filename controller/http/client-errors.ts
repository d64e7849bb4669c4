/**
 * Errors answered before a request reaches a route — by Node's HTTP parser and timers
 * (`clientError`), by Node for an unknown `Expect`, by fastify's router — written in the
 * contract's shape like every other error (PROTOCOL §1), with meaningful status codes.
 */
import { STATUS_CODES, type IncomingMessage, type ServerResponse } from "node:http";
import type { Socket } from "node:net";
import type { Duplex } from "node:stream";
import type { FastifyError, FastifyReply, FastifyRequest } from "fastify";
import { ErrorCode, TetherError } from "../../shared/errors.ts";

/** A whole HTTP response carrying `err`, for sockets no `ServerResponse` writes to. */
function rawResponse(err: TetherError): string {
  const body = JSON.stringify(err.toWire());
  return `HTTP/1.1 ${err.status} ${STATUS_CODES[err.status]}\r\ncontent-type: application/json; charset=utf-8\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`;
}

/** Node's limit on the request line and headers together (its default, set explicitly). */
export const MAX_HEADER_BYTES = 16 * 1024;
/** fastify's limit on one path parameter (its default, set explicitly); ids and lease ids are shorter. */
export const MAX_PARAM_LENGTH = 100;

function answerFor(code: string): TetherError | undefined {
  if (code === "HPE_HEADER_OVERFLOW") return new TetherError(431, ErrorCode.HEADERS_TOO_LARGE, `the request line and headers exceed ${MAX_HEADER_BYTES} bytes`);
  if (code === "ERR_HTTP_REQUEST_TIMEOUT") return new TetherError(408, ErrorCode.REQUEST_TIMEOUT, "the request did not arrive in time");
  if (code.startsWith("HPE_")) return new TetherError(400, ErrorCode.INVALID_REQUEST, "malformed HTTP request");
  return undefined; // TLS failures, resets: there is no HTTP channel to answer on
}

/**
 * fastify's `clientErrorHandler`: the parser failed or a deadline passed. The connection
 * is closed after the answer; nothing is written when a response is already under way
 * (a second status line would corrupt it) or when the error is below HTTP.
 */
export function answerClientError(err: NodeJS.ErrnoException, socket: Socket): void {
  const answer = answerFor(err.code ?? "");
  // Node keeps the response in progress on the socket; its headers may be on the wire already.
  const inFlight = (socket as Socket & { _httpMessage?: ServerResponse })._httpMessage;
  if (answer && socket.writable && !inFlight?.headersSent) {
    socket.write(rawResponse(answer));
    socket.destroySoon();
    return;
  }
  socket.destroy();
}

/** Node answers an `Expect` other than `100-continue` with a bare 417 unless this listener does. */
export function answerUnknownExpectation(_req: IncomingMessage, res: ServerResponse): void {
  const body = JSON.stringify(new TetherError(417, ErrorCode.EXPECTATION_FAILED, "only Expect: 100-continue is supported").toWire());
  res.writeHead(417, { "content-type": "application/json; charset=utf-8", "content-length": Buffer.byteLength(body), connection: "close" });
  res.end(body);
}

/** Node closes a CONNECT request without a word unless this listener answers it; no route takes CONNECT. */
export function answerConnect(req: IncomingMessage, socket: Duplex): void {
  socket.on("error", () => socket.destroy());
  // Destroyed once written: the parser has let go of this socket, so no deadline would close it.
  socket.end(rawResponse(new TetherError(404, ErrorCode.NOT_FOUND, `no route ${req.method ?? "CONNECT"} (CONNECT is not supported)`)), () => socket.destroy());
}

/** fastify's `frameworkErrors`: the router could not decode the URL or a path parameter is too long. */
export function answerFrameworkError(err: FastifyError, _request: FastifyRequest, reply: FastifyReply): void {
  // The server's error handler is not in effect yet at this stage: shape the answer here.
  let answer = new TetherError(500, ErrorCode.INTERNAL, "internal error");
  if (err.code === "FST_ERR_MAX_PARAM_LENGTH") {
    answer = new TetherError(414, ErrorCode.URI_TOO_LONG, `a path parameter is longer than ${MAX_PARAM_LENGTH} characters`);
  } else if (err.code === "FST_ERR_BAD_URL") {
    answer = new TetherError(400, ErrorCode.INVALID_REQUEST, "the URL is not valid (bad percent-encoding)");
  } else {
    reply.log.error({ err }, "request failed before routing");
  }
  void reply.code(answer.status).send(answer.toWire());
}
