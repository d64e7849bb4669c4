/** Start-up rules: declared guard chains, key file permissions, server certificate renewal. */
import { afterAll, describe, expect, it } from "vitest";
import { chmodSync, existsSync, statSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { connect } from "node:tls";
import { spawnTether, tether } from "../support/process.ts";
import { buildServer } from "../../controller/http/server.ts";
import { startTestController, type TestController } from "../support/controller.ts";
import { tempDir } from "../support/temp-dir.ts";

const opened: TestController[] = [];
afterAll(async () => {
  for (const t of opened) await t.close();
});

function peerCertSerial(port: number, ca: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = connect({ host: "127.0.0.1", port, ca, servername: "localhost" }, () => {
      const serial = s.getPeerCertificate().serialNumber;
      s.end();
      resolve(serial);
    });
    s.on("error", reject);
  });
}

describe("route declarations", () => {
  it("an executor route without a declared guard chain makes the server refuse to start", async () => {
    const tc = await startTestController();
    opened.push(tc);
    const creds = tc.c.serverCredentials();
    for (const config of [undefined, { route: { plane: "executor" } }, { route: { plane: "executor", guards: ["jwt"] } }, { route: { plane: "public" } }]) {
      const app = buildServer(tc.c.ctx, { key: creds.keyPem, cert: creds.certPem, ca: tc.caPem }, { logLevel: "silent" });
      const start = async () => {
        app.post("/v1/executors/:id/sneaky", { config: config as never }, async () => ({}));
        await app.ready();
      };
      await expect(start()).rejects.toThrow(/declares no plane|must declare its guard chain|not on the executor plane/);
      await app.close().catch(() => {});
    }
  });
});

describe("data dir and keys", () => {
  it("creates the documented files with private modes", async () => {
    const tc = await startTestController();
    opened.push(tc);
    expect(statSync(tc.dataDir).mode & 0o777).toBe(0o700);
    for (const f of ["ca.pem", "server.pem", "server.key", "tether.db", "audit.log", "hmac.kek"]) {
      expect(existsSync(join(tc.dataDir, f)), f).toBe(true);
    }
    // CA and JWT keys live in the database, encrypted under hmac.kek; ca.pem is the trust bundle, for operators.
    for (const f of ["ca.key", "jwt.key"]) expect(existsSync(join(tc.dataDir, f)), f).toBe(false);
    expect(statSync(join(tc.dataDir, "ca.pem")).mode & 0o777).toBe(0o644);
    for (const f of ["server.key", "hmac.kek"]) expect(statSync(join(tc.dataDir, f)).mode & 0o777, f).toBe(0o600);
  });

  it("the database alone reveals no HMAC key", async () => {
    const tc = await startTestController();
    opened.push(tc);
    const { register } = await import("../support/wire.ts");
    const e = await register(tc.url, tc.caPem, await tc.createToken());
    await e.client.close();
    const db = readFileSync(join(tc.dataDir, "tether.db"));
    const wal = existsSync(join(tc.dataDir, "tether.db-wal")) ? readFileSync(join(tc.dataDir, "tether.db-wal")) : Buffer.alloc(0);
    for (const blob of [db, wal]) {
      expect(blob.includes(e.hmacKey)).toBe(false);
      expect(blob.includes(Buffer.from(e.reg.hmac_key))).toBe(false);
    }
  });

  it("refuses to start, naming the file, when the key that encrypts the CA keys is readable by others", async () => {
    const dataDir = join(tempDir(), "data");
    const first = spawnTether(["controller", "start", "--data-dir", dataDir, "--listen", "127.0.0.1:0", "--log-level", "silent"]);
    await first.waitFor(/listening on https:\/\/127\.0\.0\.1:\d+/);
    expect(await first.stop()).toBe(0);
    chmodSync(join(dataDir, "hmac.kek"), 0o640);
    const r = tether(["controller", "start", "--data-dir", dataDir, "--listen", "127.0.0.1:0"]);
    expect(r.status).not.toBe(0);
    expect(r.stderr).toContain(join(dataDir, "hmac.kek"));
    expect(r.stderr.trim().split("\n")).toHaveLength(1);
  }, 40_000);
});

describe("server certificate", () => {
  it("is renewed before expiry without a restart", async () => {
    const tc = await startTestController({ serverCertTtlSeconds: 2 });
    opened.push(tc);
    const before = await peerCertSerial(tc.c.port, tc.caPem);
    expect(await tc.c.renewServerCertIfDue()).toBe(true);
    const after = await peerCertSerial(tc.c.port, tc.caPem);
    expect(after).not.toBe(before);
    expect(after).toBe(new (await import("node:crypto")).X509Certificate(readFileSync(join(tc.dataDir, "server.pem"))).serialNumber);
  });
});
