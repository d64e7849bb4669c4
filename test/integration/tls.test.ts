/**
 * The TLS layer, checked with clients we do not control: `openssl s_client` offering
 * one cipher suite at a time, asking to renegotiate; and client certificates from a
 * look-alike CA (same subject name, another key) on TLS 1.2 and 1.3, which must get
 * the contract's `401 CERT_REQUIRED`, never a reset (PROTOCOL §3.2).
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { spawn, spawnSync } from "node:child_process";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { X509Certificate } from "node:crypto";
import { startTestController, type TestController } from "../support/controller.ts";
import { rawExchange } from "../support/raw-http.ts";
import { register, type Enrolled } from "../support/wire.ts";
import { tempDir } from "../support/temp-dir.ts";
import { selfSignedCa, writeCaFiles } from "../support/legacy-ca.ts";

const haveOpenssl = spawnSync("sh", ["-c", "command -v openssl"]).status === 0;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

let tc: TestController;
let caFile: string;
beforeAll(async () => {
  tc = await startTestController();
  caFile = join(tempDir("tether-tls-"), "ca.pem");
  writeFileSync(caFile, tc.caPem);
});
afterAll(async () => {
  await tc?.close();
});

/**
 * Runs `openssl s_client` against the controller (asynchronously: the controller runs in
 * this process) for 5 s at most. `talk` writes to its stdin. EOF on stdin is ignored (the
 * server closes) unless `commands` is set: then lines like `R` are s_client commands.
 */
function sClient(
  args: string[],
  talk: (stdin: NodeJS.WritableStream) => Promise<void>,
  opts: { commands?: boolean } = {},
): Promise<{ code: number | null; out: string; err: string }> {
  return new Promise((resolve) => {
    const p = spawn("openssl", ["s_client", "-connect", `127.0.0.1:${tc.c.port}`, "-servername", "localhost", "-CAfile", caFile, ...(opts.commands ? [] : ["-ign_eof"]), ...args]);
    let out = "";
    let err = "";
    p.stdout.on("data", (d) => (out += d));
    p.stderr.on("data", (d) => (err += d));
    p.stdin.on("error", () => {}); // s_client may be gone already
    const timer = setTimeout(() => p.kill(), 5_000);
    p.on("exit", (code) => {
      clearTimeout(timer);
      resolve({ code, out, err });
    });
    void talk(p.stdin).finally(() => p.stdin.end());
  });
}
const HEALTHZ = "GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";
const negotiated = (out: string) => /Cipher is (\S+)/.exec(out)?.[1];

describe.skipIf(!haveOpenssl)("cipher suites and renegotiation (openssl s_client)", () => {
  it.each(["ECDHE-ECDSA-AES128-GCM-SHA256", "ECDHE-ECDSA-AES256-GCM-SHA384", "ECDHE-ECDSA-CHACHA20-POLY1305"])("TLS 1.2 with %s connects", async (cipher) => {
    const r = await sClient(["-tls1_2", "-cipher", cipher], async (stdin) => void stdin.write(HEALTHZ));
    expect(negotiated(r.out), r.err).toBe(cipher);
    expect(r.out).toContain("HTTP/1.1 200 OK");
  });

  it.each([
    ["CBC only (ECDHE-ECDSA-AES128-SHA)", "ECDHE-ECDSA-AES128-SHA"],
    ["CBC with SHA-256 (ECDHE-ECDSA-AES128-SHA256)", "ECDHE-ECDSA-AES128-SHA256"],
    ["RSA key exchange (AES128-GCM-SHA256)", "AES128-GCM-SHA256"],
  ])("TLS 1.2 offering %s fails the handshake", async (_name, cipher) => {
    const r = await sClient(["-tls1_2", "-cipher", cipher], async (stdin) => void stdin.write(HEALTHZ));
    expect(r.code).not.toBe(0);
    expect(negotiated(r.out)).toBe("(NONE)");
    expect(r.out).not.toContain("HTTP/1.1");
  });

  it("TLS 1.3 is unchanged (default suites)", async () => {
    const r = await sClient(["-tls1_3"], async (stdin) => void stdin.write(HEALTHZ));
    expect(negotiated(r.out), r.err).toMatch(/^TLS_/);
    expect(r.out).toContain("HTTP/1.1 200 OK");
  });

  it("a client-initiated renegotiation (R on TLS 1.2) is refused and the connection closed", async () => {
    const r = await sClient(["-tls1_2"], async (stdin) => {
      await sleep(300);
      stdin.write("R\n");
      await sleep(500);
      stdin.write(HEALTHZ);
      await sleep(500);
    }, { commands: true });
    expect(r.err).toContain("RENEGOTIATING");
    expect(r.err).toMatch(/no renegotiation|alert/);
    expect(r.out).not.toContain("HTTP/1.1 200 OK");
    // The listener is unharmed.
    const after = await rawExchange(tc.c.port, HEALTHZ);
    expect(after.status).toBe(200);
  });
});

describe("a client certificate from a look-alike CA (same subject name, another key)", () => {
  let other: TestController;
  let foreign: Enrolled;
  beforeAll(async () => {
    // Our CA's very subject (CA subjects are unique, an attacker copies one), imported as the other
    // controller's CA; same trust domain, so its certificates carry a SAN of our shape.
    const otherDir = join(tempDir("tether-tls-other-"), "data");
    writeCaFiles(otherDir, await selfSignedCa(new X509Certificate(tc.caPem).subject.replace(/\n/g, ", ")));
    other = await startTestController({ dataDir: otherDir });
    expect(new X509Certificate(other.caPem).subject).toBe(new X509Certificate(tc.caPem).subject);
    foreign = await register(other.url, other.caPem, await other.createToken(), { alg: "P-256" });
    await foreign.client.close();
  });
  afterAll(async () => {
    await other?.close();
  });

  it.each(["TLSv1.2", "TLSv1.3"] as const)("over %s → 401 CERT_REQUIRED, every time", async (version) => {
    for (let i = 0; i < 5; i++) {
      const r = await rawExchange(
        tc.c.port,
        `POST /v1/executors/${foreign.id}/heartbeat HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 2\r\nconnection: close\r\n\r\n{}`,
        { ca: tc.caPem, rejectUnauthorized: true, cert: foreign.certPem, key: foreign.keyPem, minVersion: version, maxVersion: version },
      );
      expect([r.status, r.json?.error?.code], r.text).toEqual([401, "CERT_REQUIRED"]);
    }
  });

  it.skipIf(!haveOpenssl)("with openssl s_client over TLS 1.2 and 1.3 → 401 CERT_REQUIRED", async () => {
    const dir = tempDir("tether-lookalike-");
    writeFileSync(join(dir, "cert.pem"), foreign.certPem);
    writeFileSync(join(dir, "key.pem"), foreign.keyPem);
    for (const v of ["-tls1_2", "-tls1_3"]) {
      const r = await sClient([v, "-cert", join(dir, "cert.pem"), "-key", join(dir, "key.pem"), "-quiet"], async (stdin) =>
        void stdin.write(`POST /v1/executors/${foreign.id}/heartbeat HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}`),
      );
      expect(r.out, `${v}: ${r.err}`).toContain("HTTP/1.1 401 Unauthorized");
      expect(r.out).toContain('"code":"CERT_REQUIRED"');
    }
  });
});
