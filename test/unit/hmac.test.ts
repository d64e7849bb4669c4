import { describe, expect, it } from "vitest";
import { bodySha256Hex, signatureFor, stringToSign, verifySignature, isValidNonce } from "../../shared/hmac.ts";

const key = Buffer.from("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8", "base64url");
const vector = {
  method: "POST",
  target: "/v1/executors/ex_test01/heartbeat",
  executorId: "ex_test01",
  timestamp: "1767225600000",
  nonce: "n0nce-AAAAAAAAAAAAAAAA",
  body: '{"status":"ready","running":0,"capacity":4,"leases":[]}',
};

describe("HMAC request signature (PROTOCOL §3.2)", () => {
  it("decodes the test vector key to bytes 0x00..0x1f", () => {
    expect([...key]).toEqual([...Array(32).keys()]);
  });

  it("hashes the test vector body", () => {
    expect(bodySha256Hex(vector.body)).toBe("485b5ad403eac7d08c70809d2cff5cb7c84b31a3e8a203c4c868fd4935fbf6a3");
  });

  it("reproduces the PROTOCOL test vector exactly", () => {
    expect(signatureFor(key, vector)).toBe("v1=f190113f0f1aaa71b61477fe1039849619a83ef988d95f417468a0e6ba832509");
  });

  it("builds seven lines with no trailing newline", () => {
    const s = stringToSign(vector);
    expect(s.split("\n")).toHaveLength(7);
    expect(s.endsWith("\n")).toBe(false);
    expect(s.split("\n")[0]).toBe("TETHER-HMAC-SHA256");
  });

  it("hashes an absent body as the empty string", () => {
    expect(bodySha256Hex(undefined)).toBe("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  });

  it("verifies the right signature and refuses every altered field", () => {
    const sig = signatureFor(key, vector);
    expect(verifySignature(key, vector, sig)).toBe(true);
    for (const change of [
      { method: "PUT" }, { target: "/v1/executors/ex_test01/renew" }, { executorId: "ex_test02" },
      { timestamp: "1767225600001" }, { nonce: "n0nce-BBBBBBBBBBBBBBBB" }, { body: vector.body + " " },
    ]) {
      expect(verifySignature(key, { ...vector, ...change }, sig)).toBe(false);
    }
    expect(verifySignature(key, vector, sig.toUpperCase())).toBe(false);
    expect(verifySignature(key, vector, sig.slice(0, -1))).toBe(false);
    expect(verifySignature(Buffer.alloc(32, 1), vector, sig)).toBe(false);
  });

  it("accepts only 16–64 chars of [A-Za-z0-9_-] as a nonce", () => {
    expect(isValidNonce("a".repeat(16))).toBe(true);
    expect(isValidNonce("a".repeat(64))).toBe(true);
    expect(isValidNonce("a".repeat(15))).toBe(false);
    expect(isValidNonce("a".repeat(65))).toBe(false);
    expect(isValidNonce("aaaaaaaaaaaaaaa=")).toBe(false);
  });
});
