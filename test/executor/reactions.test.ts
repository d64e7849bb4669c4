/** The reaction table: exactly one documented reaction for every code of PROTOCOL §3.2. */
import { describe, expect, it } from "vitest";
import { ErrorCode, TetherError } from "../../shared/errors.ts";
import { classify } from "../../executor/reactions.ts";
import { TransportError, parseWireError } from "../../executor/client.ts";

const err = (status: number, code: string, details?: Record<string, unknown>, headers?: Record<string, string>) =>
  new TetherError(status, code, "m", { details, headers });

describe("classify", () => {
  it.each([
    [401, ErrorCode.TOKEN_EXPIRED, "renew-jwt"],
    [401, ErrorCode.TOKEN_INVALID, "renew-jwt"],
    [401, ErrorCode.EPOCH_MISMATCH, "reregister"],
    [401, ErrorCode.CERT_REVOKED, "revoked"],
    [401, ErrorCode.CERT_REQUIRED, "identity-rejected"],
    [403, ErrorCode.IDENTITY_MISMATCH, "identity-rejected"],
    [409, ErrorCode.NONCE_REPLAY, "retry-now"],
    [401, ErrorCode.ENROLLMENT_DENIED, "enrollment-denied"],
    [400, ErrorCode.INVALID_CSR, "fatal"],
    [429, ErrorCode.RATE_LIMITED, "backoff"],
    [401, ErrorCode.SIGNATURE_INVALID, "backoff"],
    [500, ErrorCode.INTERNAL, "backoff"],
    [503, "HTTP_503", "backoff"],
    [400, ErrorCode.INVALID_REQUEST, "backoff"],
  ])("%i %s → %s", (status, code, kind) => {
    expect(classify(err(status, code)).kind).toBe(kind);
  });

  it("CLOCK_SKEW carries the offset measured from server_time", () => {
    const now = Date.parse("2026-01-01T00:00:00Z");
    const r = classify(err(401, ErrorCode.CLOCK_SKEW, { server_time: "2026-01-01T00:10:00Z" }), now);
    expect(r).toEqual({ kind: "clock-skew", code: "CLOCK_SKEW", offsetMs: 600_000 });
    expect(classify(err(401, ErrorCode.CLOCK_SKEW), now)).toMatchObject({ kind: "clock-skew", offsetMs: undefined });
  });

  it("network errors and 5xx back off as transient; unexpected 4xx back off but are not transient", () => {
    expect(classify(new TransportError("connect ECONNREFUSED", { code: "ECONNREFUSED" }))).toMatchObject({ kind: "backoff", transient: true, code: "ECONNREFUSED" });
    expect(classify(err(502, "INTERNAL"))).toMatchObject({ kind: "backoff", transient: true });
    expect(classify(err(409, ErrorCode.STALE_LEASE))).toMatchObject({ kind: "backoff", transient: false });
    expect(classify(new Error("boom"))).toMatchObject({ kind: "backoff", transient: false, code: "UNEXPECTED" });
  });

  it("RATE_LIMITED passes Retry-After on", () => {
    expect(classify(err(429, ErrorCode.RATE_LIMITED, undefined, { "retry-after": "7" }))).toMatchObject({ retryAfter: "7" });
  });

  it("an abort is not an error to react to", () => {
    const e = new Error("stop");
    e.name = "AbortError";
    expect(classify(e).kind).toBe("aborted");
  });
});

describe("parseWireError", () => {
  it("turns the PROTOCOL error body into a TetherError with code, message and extra fields", () => {
    const e = parseWireError(401, JSON.stringify({ error: { code: "CLOCK_SKEW", message: "too far", server_time: "2026-01-01T00:00:00Z" } }));
    expect(e).toBeInstanceOf(TetherError);
    expect(e).toMatchObject({ status: 401, code: "CLOCK_SKEW", message: "too far", details: { server_time: "2026-01-01T00:00:00Z" } });
  });
  it("keeps Retry-After", () => {
    expect(parseWireError(429, '{"error":{"code":"RATE_LIMITED","message":"slow down"}}', "3").headers).toEqual({ "retry-after": "3" });
  });
  it("copes with bodies that are not the error shape", () => {
    expect(parseWireError(502, "<html>bad gateway</html>")).toMatchObject({ status: 502, code: "INTERNAL" });
    expect(parseWireError(404, "")).toMatchObject({ status: 404, code: "HTTP_404", message: "HTTP 404" });
    expect(parseWireError(400, '{"error":"nope"}')).toMatchObject({ code: "HTTP_400" });
  });
});
