/**
 * The guard-chain rules (controller/domain/executor-auth.ts), one test per rejection
 * path and per boundary, the way jose tests validateClaimsSet. The same rules are
 * exercised end to end over real TLS in test/integration/guard-chain.test.ts.
 */
import { describe, expect, it } from "vitest";
import {
  checkBearerShape, checkEpoch, checkExecutorCertificate, checkMayRotate, checkPresentedCertificate, checkSignatureHeaders, checkTimestamp,
  validateExecutorClaims, type ExecutorClaims,
} from "../../controller/domain/executor-auth.ts";
import type { ExecutorAuthState } from "../../controller/store/types.ts";
import type { CertThumbprint } from "../../shared/fingerprint.ts";

const NOW = 1_767_225_600_000;
const tp = (s: string) => s.padEnd(43, "A") as CertThumbprint;
const CURRENT = tp("current");
const PREVIOUS = tp("previous");

function authState(over: Partial<ExecutorAuthState> = {}): ExecutorAuthState {
  return {
    id: "ex_a", epoch: 3, certFingerprint: CURRENT, prevCertFingerprint: PREVIOUS, prevCertGraceUntil: NOW + 60_000,
    certIssuedAt: NOW - 3_600_000, certExpiresAt: NOW + 3_600_000, drain: false, revoked: false, certConfirmed: true, certCaId: null, ...over,
  };
}

describe("mTLS rules", () => {
  const identity = { executorId: "ex_a", fingerprint: CURRENT, notAfter: NOW + 1 };

  it("accepts a certificate naming the path's executor while it is valid", () => {
    expect(checkPresentedCertificate(identity, "ex_a", NOW)).toEqual({ ok: true });
  });

  it("refuses an expired certificate (at notAfter exactly) as CERT_REQUIRED", () => {
    expect(checkPresentedCertificate({ ...identity, notAfter: NOW }, "ex_a", NOW)).toEqual({ ok: false, code: "CERT_REQUIRED", reason: "expired" });
  });

  it("refuses executor A's certificate on executor B's path as IDENTITY_MISMATCH", () => {
    expect(checkPresentedCertificate(identity, "ex_b", NOW)).toMatchObject({ ok: false, code: "IDENTITY_MISMATCH" });
  });

  it("accepts the executor's current certificate and returns its state", () => {
    const auth = authState();
    expect(checkExecutorCertificate(auth, CURRENT, NOW)).toEqual({ ok: true, auth, previous: false });
  });

  it("refuses an unknown executor as CERT_REQUIRED", () => {
    expect(checkExecutorCertificate(undefined, CURRENT, NOW)).toMatchObject({ ok: false, code: "CERT_REQUIRED", reason: "unknown executor" });
  });

  it("refuses a revoked executor as CERT_REVOKED, even with its current certificate", () => {
    expect(checkExecutorCertificate(authState({ revoked: true }), CURRENT, NOW)).toMatchObject({ ok: false, code: "CERT_REVOKED" });
  });

  it("accepts the previous certificate only inside the grace window", () => {
    expect(checkExecutorCertificate(authState({ prevCertGraceUntil: NOW + 1 }), PREVIOUS, NOW)).toMatchObject({ ok: true, previous: true });
    expect(checkExecutorCertificate(authState({ prevCertGraceUntil: NOW }), PREVIOUS, NOW)).toMatchObject({ ok: false, code: "CERT_REQUIRED" });
    expect(checkExecutorCertificate(authState({ prevCertGraceUntil: null }), PREVIOUS, NOW)).toMatchObject({ ok: false, code: "CERT_REQUIRED" });
  });

  it("lets only the current certificate rotate credentials, unless the current one was never used", () => {
    expect(checkMayRotate({ auth: { certConfirmed: true }, viaPrevious: false })).toEqual({ ok: true });
    expect(checkMayRotate({ auth: { certConfirmed: false }, viaPrevious: false })).toEqual({ ok: true });
    expect(checkMayRotate({ auth: { certConfirmed: false }, viaPrevious: true })).toEqual({ ok: true });
    expect(checkMayRotate({ auth: { certConfirmed: true }, viaPrevious: true })).toMatchObject({ ok: false, code: "CERT_REQUIRED" });
  });

  it("refuses any other certificate of a trusted CA as CERT_REQUIRED", () => {
    expect(checkExecutorCertificate(authState(), tp("other"), NOW)).toMatchObject({
      ok: false, code: "CERT_REQUIRED", reason: "not the executor's current certificate",
    });
  });
});

describe("JWT rules", () => {
  const expected = { issuer: "spiffe://tether.local/controller", audience: "tether-controller", sub: "ex_a", thumbprint: CURRENT };
  const claims: ExecutorClaims = {
    iss: expected.issuer, aud: expected.audience, sub: "ex_a", epoch: 3, iat: NOW / 1000 - 60, exp: NOW / 1000 + 60,
    jti: "j", cnf: { "x5t#S256": CURRENT },
  };

  it("accepts claims that match in every respect", () => {
    expect(validateExecutorClaims(claims, expected, NOW)).toEqual({ ok: true });
  });

  it.each([
    ["iss", { iss: "spiffe://other/controller" }, "wrong iss"],
    ["aud", { aud: "someone-else" }, "wrong aud"],
    ["sub", { sub: "ex_b" }, "wrong sub"],
    ["cnf", { cnf: { "x5t#S256": tp("other") } }, "cnf does not match the client certificate"],
    ["missing cnf", { cnf: undefined as unknown as ExecutorClaims["cnf"] }, "cnf does not match the client certificate"],
  ])("refuses a wrong %s as TOKEN_INVALID", (_what, change, reason) => {
    expect(validateExecutorClaims({ ...claims, ...change }, expected, NOW)).toEqual({ ok: false, code: "TOKEN_INVALID", reason });
  });

  it("refuses a token at its exp exactly as TOKEN_EXPIRED, one millisecond before it accepts", () => {
    const exp = NOW / 1000 + 60;
    expect(validateExecutorClaims({ ...claims, exp }, expected, exp * 1000)).toMatchObject({ ok: false, code: "TOKEN_EXPIRED" });
    expect(validateExecutorClaims({ ...claims, exp }, expected, exp * 1000 - 1).ok).toBe(true);
  });

  it("calls a foreign token that is also expired invalid, not expired (expired means: renew)", () => {
    expect(validateExecutorClaims({ ...claims, sub: "ex_b", exp: 1 }, expected, NOW)).toMatchObject({ code: "TOKEN_INVALID" });
  });

  it("refuses a token of another epoch, older or newer, as EPOCH_MISMATCH", () => {
    expect(checkEpoch({ epoch: 3 }, { epoch: 3 })).toEqual({ ok: true });
    expect(checkEpoch({ epoch: 2 }, { epoch: 3 })).toEqual({ ok: false, code: "EPOCH_MISMATCH", reason: "token epoch 2, current 3" });
    expect(checkEpoch({ epoch: 4 }, { epoch: 3 })).toMatchObject({ ok: false, code: "EPOCH_MISMATCH" });
  });

  it("refuses a missing bearer value, and operator or enrollment tokens, as TOKEN_INVALID", () => {
    expect(checkBearerShape(undefined)).toMatchObject({ ok: false, code: "TOKEN_INVALID", reason: "no bearer token" });
    expect(checkBearerShape("")).toMatchObject({ ok: false, code: "TOKEN_INVALID" });
    expect(checkBearerShape("tet_pat_" + "a".repeat(43))).toMatchObject({ ok: false, code: "TOKEN_INVALID" });
    expect(checkBearerShape("tet_enr_" + "a".repeat(43))).toMatchObject({ ok: false, code: "TOKEN_INVALID" });
    expect(checkBearerShape("a.b.c")).toEqual({ ok: true, token: "a.b.c" });
  });
});

describe("HMAC rules", () => {
  const good = { timestamp: String(NOW), nonce: "n0nce-AAAAAAAAAAAAAAAA", signature: "v1=" + "0".repeat(64) };

  it("accepts three well-formed headers", () => {
    expect(checkSignatureHeaders(good)).toEqual({ ok: true, headers: good });
  });

  it.each([
    ["no timestamp", { timestamp: undefined }, "missing signature headers"],
    ["no nonce", { nonce: undefined }, "missing signature headers"],
    ["no signature", { signature: undefined }, "missing signature headers"],
    ["an empty signature", { signature: "" }, "missing signature headers"],
    ["a timestamp with letters", { timestamp: "17672256000x0" }, "malformed timestamp"],
    ["a timestamp of 17 digits", { timestamp: "1".repeat(17) }, "malformed timestamp"],
    ["a nonce of 15 characters", { nonce: "a".repeat(15) }, "malformed nonce"],
    ["a nonce of 65 characters", { nonce: "a".repeat(65) }, "malformed nonce"],
    ["a nonce outside [A-Za-z0-9_-]", { nonce: "n0nce+AAAAAAAAAAAAAAAA" }, "malformed nonce"],
  ])("refuses %s as SIGNATURE_INVALID", (_what, change, reason) => {
    expect(checkSignatureHeaders({ ...good, ...change })).toEqual({ ok: false, code: "SIGNATURE_INVALID", reason });
  });

  it("accepts a timestamp up to 300 s away on either side and refuses one millisecond more as CLOCK_SKEW", () => {
    expect(checkTimestamp(NOW - 300_000, NOW).ok).toBe(true);
    expect(checkTimestamp(NOW + 300_000, NOW).ok).toBe(true);
    expect(checkTimestamp(NOW - 300_001, NOW)).toEqual({ ok: false, code: "CLOCK_SKEW", reason: "skew 300001 ms" });
    expect(checkTimestamp(NOW + 300_001, NOW)).toEqual({ ok: false, code: "CLOCK_SKEW", reason: "skew -300001 ms" });
  });
});
