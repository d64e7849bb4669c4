/**
 * The executor daemon's client (executor/client.ts) against a real controller over real
 * TLS: it keeps its TLS session per controller origin and resumes it after the controller
 * restarts (the restart storm's reconnects skip the asymmetric crypto on both sides); it
 * keeps it when only the trust bundle changes, and never offers it with another
 * certificate or key.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { TLSSocket } from "node:tls";
import type { Server } from "node:https";
import { ExecutorClient } from "../../executor/client.ts";
import { newKeyAndCsr } from "../../executor/csr.ts";
import { startTestController, type TestController } from "../support/controller.ts";

let tc: TestController;
beforeAll(async () => {
  tc = await startTestController();
});
afterAll(async () => tc?.close());

/** Whether each new TLS connection the controller accepted (from now on) was a resumed one. */
function watchResumption(): boolean[] {
  const seen: boolean[] = [];
  (tc.c.app.server as unknown as Server).on("secureConnection", (s: TLSSocket) => seen.push(s.isSessionReused()));
  return seen;
}

async function enrolledClient() {
  const client = new ExecutorClient({ baseUrl: tc.url });
  const { keyPem, csrPem } = await newKeyAndCsr("ed25519");
  const reg = (await client.register({ enrollment_token: await tc.createToken(), csr_pem: csrPem }, tc.caPem)).data;
  const creds = { executorId: reg.executor_id, keyPem, certPem: reg.certificate_pem, trustPem: reg.ca_bundle_pem, hmacKey: Buffer.from(reg.hmac_key, "base64url"), jwt: reg.jwt };
  client.setCredentials(creds);
  return { client, creds };
}

const beat = (c: ExecutorClient) => c.heartbeat({ status: "ready", running: 0, capacity: 1, leases: [] });

describe("the daemon's TLS sessions", () => {
  it("resume after the controller restarted; a trust-only change keeps them; a new key and certificate never offer them", async () => {
    const { client, creds } = await enrolledClient();
    expect((await beat(client)).status).toBe(200);
    await tc.restart(); // its keep-alive connection is gone with the old process
    let seen = watchResumption();
    expect((await beat(client)).status).toBe(200);
    expect(seen).toEqual([true]);

    // The trust bundle changes (a CA rotation): a new agent, the same certificate and key — the session is kept.
    client.setCredentials({ ...creds, trustPem: creds.trustPem + "\n" });
    seen = watchResumption();
    expect((await beat(client)).status).toBe(200);
    expect(seen).toEqual([true]);

    // A renewal with a new key: the next connection is a full handshake with the new certificate.
    const { keyPem, csrPem } = await newKeyAndCsr("ed25519");
    const renewed = (await client.renew(csrPem)).data;
    client.setCredentials({ ...creds, keyPem, certPem: renewed.certificate_pem!, hmacKey: Buffer.from(renewed.hmac_key!, "base64url"), jwt: renewed.jwt });
    seen = watchResumption();
    expect((await beat(client)).status).toBe(200);
    expect(seen).toEqual([false]);
    await client.close();
  });
});
