/**
 * The identity store: modes, and crash safety — a crash between any two durable
 * steps of an enrollment, a certificate rotation (with the HMAC key that comes with
 * it) or an HMAC key change leaves an identity that loads and still authenticates
 * over mTLS with the HMAC key the controller expects; the trust bundle and its
 * version are one file.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { chmodSync, cpSync, readdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { randomBytes } from "node:crypto";
import { IdentityStore, IdentityStoreError, type IdentityRecord, type SessionRecord } from "../../executor/identity-store.ts";
import { newKeyAndCsr } from "../../executor/csr.ts";
import { certInfo, keyMatchesCert } from "../../executor/certificate.ts";
import { ExecutorClient } from "../../executor/client.ts";
import { createTestCa, type TestCa } from "../support/ca.ts";
import { tempDir } from "../support/temp-dir.ts";
import { startFakeController, type FakeController } from "./fake-controller.ts";

const ID = "ex_store01";
const hmacKey = randomBytes(32);
let ca: TestCa;
let fake: FakeController;

beforeAll(async () => {
  ca = await createTestCa();
  const server = await ca.serverCert();
  // This stand-in *requires* a client certificate chaining to the CA at the TLS layer.
  fake = await startFakeController({ ...server, caPem: ca.certPem, requireClientCert: true }, (r) =>
    r.certAuthorized && r.hmacOk ? { status: 200, body: { ok: true } } : { status: 401, body: { error: { code: "CERT_REQUIRED", message: "no" } } },
  );
  fake.hmacKey = hmacKey;
  fake.executorId = ID;
});
afterAll(async () => {
  await fake?.close();
});

function record(id = ID): IdentityRecord {
  return { version: 1, executor_id: id, hmac_key: hmacKey.toString("base64url"), controller_url: "https://x", labels: {}, key_type: "ed25519", enrolled_at: new Date().toISOString() };
}
function session(id = ID, epoch = 1): SessionRecord {
  return { version: 1, executor_id: id, epoch };
}

async function issued(id = ID, ttlMs = 3600_000) {
  const { keyPem, csrPem } = await newKeyAndCsr("ed25519");
  return { keyPem, certPem: await ca.issueForCsr(csrPem, id, { ttlMs }) };
}

async function enrolledDir(): Promise<{ dir: string; keyPem: string; certPem: string }> {
  const dir = join(tempDir(), "state");
  const store = new IdentityStore(dir);
  const { keyPem, certPem } = await issued();
  store.saveEnrollment({ record: record(), keyPem, certPem, caPem: ca.certPem, session: session() });
  return { dir, keyPem, certPem };
}

/** The identity authenticates: an mTLS request signed with its HMAC key is accepted by a controller expecting `expectKey`. */
async function works(dir: string, expectKey: Buffer = hmacKey): Promise<void> {
  const loaded = new IdentityStore(dir).load()!;
  expect(loaded).toBeDefined();
  expect(keyMatchesCert(loaded.keyPem, loaded.certPem)).toBe(true);
  const client = new ExecutorClient({ baseUrl: fake.url });
  client.setCredentials({ executorId: loaded.executorId, keyPem: loaded.keyPem, certPem: loaded.certPem, trustPem: ca.certPem, hmacKey: loaded.hmacKey });
  fake.hmacKey = expectKey;
  try {
    const res = await client.call<{ ok: boolean }>("POST", `/v1/executors/${ID}/heartbeat`, { status: "ready", running: 0, capacity: 1, leases: [] }, "no-jwt");
    expect(res.data.ok).toBe(true);
  } finally {
    fake.hmacKey = hmacKey;
    await client.close();
  }
}

class Crash extends Error {}

/**
 * Runs a rotation (stage key → the controller issues a certificate and a new HMAC
 * key → stage both → promote), crashing after step `crashAt`. `newHmac: null`: an
 * answer without an HMAC key (a controller from before key rotation).
 */
async function rotate(dir: string, crashAt: number | undefined, steps: string[] = [], newHmac: Buffer | null = rotatedHmacKey): Promise<{ keyPem: string; certPem: string }> {
  let n = 0;
  const store = new IdentityStore(dir, (step) => {
    steps.push(step);
    if (crashAt !== undefined && n++ === crashAt) throw new Crash(step);
  });
  const { keyPem, csrPem } = await newKeyAndCsr("p256");
  const fresh = { keyPem, certPem: "" };
  store.stageKey(keyPem);
  fresh.certPem = await ca.issueForCsr(csrPem, ID, { ttlMs: 2 * 3600_000 });
  store.stageCert(fresh.certPem, newHmac?.toString("base64url"));
  store.promote();
  return fresh;
}

/** The HMAC key a rotation brings. */
const rotatedHmacKey = randomBytes(32);

describe("identity store: layout and modes", () => {
  it("creates the dir 0700 and every file 0600", async () => {
    const { dir } = await enrolledDir();
    expect(statSync(dir).mode & 0o777).toBe(0o700);
    const files = readdirSync(dir);
    expect(files.sort()).toEqual(["ca.pem", "cert.pem", "identity.json", "key.pem", "session.json"]);
    for (const f of files) expect(statSync(join(dir, f)).mode & 0o777, f).toBe(0o600);
  });

  it("tightens a too-open state dir", async () => {
    const dir = join(tempDir(), "state");
    new IdentityStore(dir).init();
    chmodSync(dir, 0o755);
    new IdentityStore(dir).init();
    expect(statSync(dir).mode & 0o777).toBe(0o700);
  });

  it("refuses a private key readable by others, naming the file", async () => {
    const { dir } = await enrolledDir();
    chmodSync(join(dir, "key.pem"), 0o644);
    expect(() => new IdentityStore(dir).load()).toThrow(/key\.pem.*readable by group or others/);
    expect(new IdentityStore(dir).load({ strictModes: false })).toBeDefined();
  });

  it("loads what was saved; a missing or foreign session.json only resets the epoch", async () => {
    const { dir, keyPem, certPem } = await enrolledDir();
    const l = new IdentityStore(dir).load()!;
    expect(l).toMatchObject({ executorId: ID, keyPem, certPem, caPem: ca.certPem, pendingPromotion: false });
    expect(l.hmacKey.equals(hmacKey)).toBe(true);
    writeFileSync(join(dir, "session.json"), "{garbage", { mode: 0o600 });
    expect(new IdentityStore(dir).load()!.session.epoch).toBe(0);
  });

  it("no identity → undefined; an identity without a matching key → a clear error", async () => {
    expect(new IdentityStore(join(tempDir(), "none")).load()).toBeUndefined();
    const { dir } = await enrolledDir();
    const other = await issued();
    writeFileSync(join(dir, "key.pem"), other.keyPem, { mode: 0o600 });
    expect(() => new IdentityStore(dir).load()).toThrow(IdentityStoreError);
  });
});

describe("identity store: crash safety of a certificate rotation", () => {
  let stepNames: string[];

  beforeAll(async () => {
    stepNames = [];
    const { dir } = await enrolledDir();
    await rotate(dir, undefined, stepNames);
  });

  it("has the documented steps: stage key, stage HMAC key and cert, promote HMAC key, key, cert, clean up", () => {
    expect(stepNames).toEqual([
      "write:key.next.pem", "write:hmac.next.json", "write:cert.next.pem",
      "write:identity.json", "write:key.pem", "write:cert.pem", "unlink:key.next.pem", "unlink:cert.next.pem", "unlink:hmac.next.json",
    ]);
  });

  it("a crash after any step leaves an identity that loads and authenticates over mTLS, the certificate and its HMAC key switching together", async () => {
    const commit = stepNames.indexOf("write:cert.next.pem");
    for (let k = 0; k < stepNames.length; k++) {
      const { dir, certPem: oldCert } = await enrolledDir();
      const fresh = await rotate(dir, k).then(
        () => undefined,
        (e) => {
          expect(e).toBeInstanceOf(Crash);
          return "crashed";
        },
      );
      expect(fresh, `crash at ${stepNames[k]}`).toBe("crashed");
      const loaded = new IdentityStore(dir).load()!;
      // Before the new certificate is on disk the old pair and the old HMAC key are used; from then on the new ones.
      const expectKey = k < commit ? hmacKey : rotatedHmacKey;
      if (k < commit) expect(loaded.certPem, stepNames[k]).toBe(oldCert);
      else expect(loaded.certPem, stepNames[k]).not.toBe(oldCert);
      expect(loaded.hmacKey.equals(expectKey), stepNames[k]).toBe(true);
      expect(loaded.pendingPromotion, stepNames[k]).toBe(k < stepNames.length - 1);
      await works(dir, expectKey);
      // Recovery finishes the rotation: promote is idempotent and leaves a clean dir.
      new IdentityStore(dir).promote();
      expect(readdirSync(dir).filter((f) => f.includes(".next")), stepNames[k]).toEqual([]);
      const after = new IdentityStore(dir).load()!;
      expect(after.certPem).toBe(loaded.certPem);
      expect(after.hmacKey.equals(expectKey), stepNames[k]).toBe(true);
      expect(after.pendingPromotion).toBe(false);
      await works(dir, expectKey);
    }
  });

  it("an answer without an HMAC key (older controller): the same steps as before, identity.json's key stays", async () => {
    const steps: string[] = [];
    const { dir } = await enrolledDir();
    await rotate(dir, undefined, steps, null);
    expect(steps).toEqual(["write:key.next.pem", "write:cert.next.pem", "write:key.pem", "write:cert.pem", "unlink:key.next.pem", "unlink:cert.next.pem"]);
    await works(dir, hmacKey);
  });

  it("an HMAC key staged for another certificate (a crash before that certificate arrived) is never used", async () => {
    const { dir } = await enrolledDir();
    const other = await issued();
    writeFileSync(join(dir, "hmac.next.json"), JSON.stringify({ version: 1, cert_fingerprint: certInfo(other.certPem).fingerprint, hmac_key: rotatedHmacKey.toString("base64url") }), { mode: 0o600 });
    expect(new IdentityStore(dir).load()!.hmacKey.equals(hmacKey)).toBe(true);
    await works(dir, hmacKey);
  });

  it("the controller's answer never arriving (key staged, no certificate) keeps the old pair; discardStagedKey cleans up", async () => {
    const { dir, certPem } = await enrolledDir();
    const store = new IdentityStore(dir);
    store.stageKey((await newKeyAndCsr()).keyPem);
    expect(new IdentityStore(dir).load()!.certPem).toBe(certPem);
    store.discardStagedKey();
    expect(readdirSync(dir)).not.toContain("key.next.pem");
    await works(dir);
  });

  it("a half-written temp file from a crash inside an atomic write is ignored", async () => {
    const { dir, certPem } = await enrolledDir();
    writeFileSync(join(dir, ".cert.pem.deadbeef0000.tmp"), "-----BEGIN CERTIFICATE-----\nMIIB", { mode: 0o600 });
    writeFileSync(join(dir, ".key.next.pem.deadbeef0001.tmp"), "", { mode: 0o600 });
    expect(new IdentityStore(dir).load()!.certPem).toBe(certPem);
    await works(dir);
  });

  it("prefers the newest matching pair; an expired staged certificate never wins over a valid one", async () => {
    const { dir, certPem } = await enrolledDir();
    const store = new IdentityStore(dir);
    const { keyPem, csrPem } = await newKeyAndCsr();
    store.stageKey(keyPem);
    store.stageCert(await ca.issueForCsr(csrPem, ID, { ttlMs: 1000, notBefore: new Date(Date.now() - 60_000) }));
    expect(new IdentityStore(dir).load()!.certPem).toBe(certPem);
  });
});

describe("identity store: a new HMAC key without a new certificate (re-registration)", () => {
  const reregKey = randomBytes(32);

  it("is saved in one step before use; a crash before it leaves the previous key, which the controller accepts for 5 minutes", async () => {
    const { dir } = await enrolledDir();
    const steps: string[] = [];
    new IdentityStore(dir, (s) => steps.push(s)).saveHmacKey(reregKey.toString("base64url"));
    expect(steps).toEqual(["write:identity.json"]);
    expect(new IdentityStore(dir).load()!.hmacKey.equals(reregKey)).toBe(true);
    await works(dir, reregKey);
  });

  it("during an unpromoted rotation it replaces the staged key too: after a crash at any step the certificate in use loads with a key the controller accepts", async () => {
    const steps: string[] = [];
    {
      const { dir } = await enrolledDir();
      await rotate(dir, 2).catch((e) => expect(e).toBeInstanceOf(Crash)); // crashed after staging the certificate: the rotation is pending
      new IdentityStore(dir, (s) => steps.push(s)).saveHmacKey(reregKey.toString("base64url"));
    }
    expect(steps).toEqual(["write:hmac.next.json", "write:identity.json"]);
    for (let k = 0; k <= steps.length; k++) {
      const { dir } = await enrolledDir();
      await rotate(dir, 2).catch((e) => expect(e).toBeInstanceOf(Crash));
      let n = 0;
      const store = new IdentityStore(dir, (s) => {
        if (n++ === k) throw new Crash(s);
      });
      try {
        store.saveHmacKey(reregKey.toString("base64url"));
      } catch (e) {
        expect(e).toBeInstanceOf(Crash);
      }
      // The rotation's certificate is the one in use; its key is the re-registration's from the first write on.
      await works(dir, reregKey);
      new IdentityStore(dir).promote();
      expect(JSON.parse(readFileSync(join(dir, "identity.json"), "utf8")).hmac_key).toBe(reregKey.toString("base64url"));
      await works(dir, reregKey);
    }
  });
});

describe("identity store: the trust bundle and its version", () => {
  it("are one file, written atomically: the version line and the CAs it counts never come apart", async () => {
    const { dir } = await enrolledDir();
    expect(new IdentityStore(dir).readTrust()).toEqual({ pem: ca.certPem, version: 0 });
    const other = await createTestCa();
    const steps: string[] = [];
    new IdentityStore(dir, (s) => steps.push(s)).saveTrust({ pem: ca.certPem + other.certPem, version: 7 });
    expect(steps).toEqual(["write:ca.pem"]);
    expect(readFileSync(join(dir, "ca.pem"), "utf8")).toBe(`# tether-trust-bundle-version: 7\n${ca.certPem}${other.certPem}`);
    expect(statSync(join(dir, "ca.pem")).mode & 0o777).toBe(0o600);
    // A crash inside the next write leaves a temp file and the previous bundle with its own version.
    writeFileSync(join(dir, ".ca.pem.0123456789ab.tmp"), "# tether-trust-bundle-version: 8\n-----BEGIN CERT", { mode: 0o600 });
    const l = new IdentityStore(dir).load()!;
    expect({ pem: l.caPem, version: l.trustVersion }).toEqual({ pem: ca.certPem + other.certPem, version: 7 });
  });
});

describe("identity store: crash safety of an enrollment", () => {
  it("first enrollment: before identity.json is written there is no identity; after, a complete one", async () => {
    const steps: string[] = [];
    {
      const dir = join(tempDir(), "state");
      const { keyPem, certPem } = await issued();
      new IdentityStore(dir, (s) => steps.push(s)).saveEnrollment({ record: record(), keyPem, certPem, caPem: ca.certPem, session: session() });
    }
    const commit = steps.indexOf("write:identity.json");
    expect(commit).toBeGreaterThan(0);
    for (let k = 0; k < steps.length; k++) {
      const dir = join(tempDir(), "state");
      const { keyPem, certPem } = await issued();
      let n = 0;
      const store = new IdentityStore(dir, () => {
        if (n++ === k) throw new Crash();
      });
      expect(() => store.saveEnrollment({ record: record(), keyPem, certPem, caPem: ca.certPem, session: session() })).toThrow(Crash);
      const loaded = new IdentityStore(dir).load();
      if (k < commit) expect(loaded, steps[k]).toBeUndefined();
      else {
        expect(loaded?.certPem, steps[k]).toBe(certPem);
        await works(dir);
      }
    }
  });

  it("re-enrollment over an old identity: the old one loads until the new one is committed", async () => {
    const OLD = "ex_old0001";
    for (let k = 0; k < 7; k++) {
      const dir = join(tempDir(), "state");
      const old = await issued(OLD);
      new IdentityStore(dir).saveEnrollment({ record: record(OLD), keyPem: old.keyPem, certPem: old.certPem, caPem: ca.certPem, session: session(OLD, 4) });
      const fresh = await issued(ID);
      let n = 0;
      let crashed = false;
      const store = new IdentityStore(dir, (s) => {
        if (n++ === k) {
          crashed = true;
          throw new Crash(s);
        }
      });
      try {
        store.saveEnrollment({ record: record(ID), keyPem: fresh.keyPem, certPem: fresh.certPem, caPem: ca.certPem, session: session(ID, 1) });
      } catch (e) {
        expect(e).toBeInstanceOf(Crash);
      }
      const loaded = new IdentityStore(dir).load()!;
      expect([OLD, ID]).toContain(loaded.executorId);
      expect(certInfo(loaded.certPem).executorId).toBe(loaded.executorId);
      expect(keyMatchesCert(loaded.keyPem, loaded.certPem)).toBe(true);
      if (loaded.executorId === ID) await works(dir);
      if (!crashed) expect(loaded.executorId).toBe(ID);
    }
  });
});

describe("identity store: copies of a state dir", () => {
  it("a copied (backed-up) state dir loads the same identity", async () => {
    const { dir, certPem } = await enrolledDir();
    const copy = join(tempDir(), "copy");
    cpSync(dir, copy, { recursive: true });
    expect(new IdentityStore(copy).load()!.certPem).toBe(certPem);
  });
});

describe("the mTLS check used above is real", () => {
  it("refuses a certificate from another CA", async () => {
    const other = await createTestCa();
    const { keyPem, csrPem } = await newKeyAndCsr();
    const certPem = await other.issueForCsr(csrPem, ID);
    const client = new ExecutorClient({ baseUrl: fake.url });
    client.setCredentials({ executorId: ID, keyPem, certPem, trustPem: ca.certPem, hmacKey });
    await expect(client.call("POST", `/v1/executors/${ID}/heartbeat`, {}, "no-jwt")).rejects.toThrow();
    await client.close();
  });
});
