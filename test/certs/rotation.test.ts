/**
 * The PKI of CA rotation (PROTOCOL §7.2, §7.5): new CAs, cross certificates, CRLs and the
 * legacy CA files, checked by the real `openssl verify` where a third party would check.
 */
import { describe, expect, it } from "vitest";
import { chmodSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { X509Certificate } from "node:crypto";
import { caFromDer, createCa, readLegacyCa, type Ca } from "../../certs/ca.ts";
import { crossSign } from "../../certs/cross-sign.ts";
import { buildCrl } from "../../certs/crl.ts";
import { issueExecutorCert, issueServerCert } from "../../certs/profiles.ts";
import { x509 } from "../../certs/x509.ts";
import { generateKeyPair } from "../../certs/keys.ts";
import { hasOpenssl } from "./helpers.ts";
import { spawnSync } from "node:child_process";
import { tempDir } from "../support/temp-dir.ts";
import { legacyCa, writeLegacyCa } from "../support/legacy-ca.ts";

const TD = "tether.local";
const newCa = async (o: { keyType?: "ed25519" | "p256"; validitySeconds?: number } = {}) =>
  (await createCa({ trustDomain: TD, validitySeconds: o.validitySeconds ?? 3600, keyType: o.keyType })).ca;

/** `openssl verify` in a temp dir with the given files; its output, and whether it said OK. */
function verify(files: Record<string, string>, args: string[]): { ok: boolean; output: string } {
  const dir = tempDir("tether-verify-");
  for (const [name, content] of Object.entries(files)) writeFileSync(join(dir, name), content);
  const r = spawnSync("openssl", ["verify", ...args], { cwd: dir, encoding: "utf8" });
  return { ok: r.status === 0, output: `${r.stdout}${r.stderr}` };
}

async function executorCert(ca: Ca, id: string) {
  const { publicKey } = await generateKeyPair("P-256");
  return issueExecutorCert(ca, { executorId: id, trustDomain: TD, publicKey, ttlSeconds: 600 });
}

describe("new CAs", () => {
  it("createCa: pathlen 1, a unique subject, the asked lifetime; its key round-trips through the store form", async () => {
    const now = new Date();
    const a = await createCa({ trustDomain: TD, validitySeconds: 7200, keyType: "p256", now });
    const b = await createCa({ trustDomain: TD, validitySeconds: 7200, now });
    expect(a.id).toMatch(/^ca_[0-9a-f]{12}$/);
    expect(a.ca.cert.subject).toBe(`CN=Tether CA ${now.toISOString().slice(0, 10)} ${a.id.slice(3)}, O=${TD}`);
    expect(b.ca.cert.subject).not.toBe(a.ca.cert.subject);
    expect(a.ca.cert.getExtension(x509.BasicConstraintsExtension)).toMatchObject({ ca: true, pathLength: 1, critical: true });
    // X.509 times have whole seconds.
    expect(a.ca.notAfter.getTime()).toBe(Math.floor((now.getTime() + 7200_000) / 1000) * 1000);
    const back = await caFromDer(a.ca.certPem, a.keyDer);
    expect(back.fingerprintSha256).toBe(a.ca.fingerprintSha256);
    expect(back.keyType).toBe("p256");
    await expect(caFromDer(a.ca.certPem, b.keyDer)).rejects.toThrow(/does not match its certificate/);
    await expect(createCa({ trustDomain: TD, validitySeconds: 0 })).rejects.toThrow(/invalid CA lifetime/);
  });
});

describe("cross certificates", () => {
  it("carry the new CA's subject and key, are issued by the previous CA with pathlen 0, and stay within its validity", async () => {
    const old = await newCa({ validitySeconds: 600 });
    const next = await newCa({ keyType: "p256", validitySeconds: 7200 });
    const pem = await crossSign(next, old);
    const cross = new x509.X509Certificate(pem);
    const node = new X509Certificate(pem);
    expect(cross.subject).toBe(next.cert.subject);
    expect(cross.issuer).toBe(old.cert.subject);
    expect(node.publicKey.export({ format: "jwk" })).toEqual(new X509Certificate(next.certPem).publicKey.export({ format: "jwk" }));
    expect(node.verify(new X509Certificate(old.certPem).publicKey)).toBe(true);
    expect(cross.getExtension(x509.BasicConstraintsExtension)).toMatchObject({ ca: true, pathLength: 0, critical: true });
    expect(cross.getExtension(x509.SubjectKeyIdentifierExtension)?.keyId).toBe(next.cert.getExtension(x509.SubjectKeyIdentifierExtension)?.keyId);
    expect(cross.getExtension(x509.AuthorityKeyIdentifierExtension)?.keyId).toBe(old.cert.getExtension(x509.SubjectKeyIdentifierExtension)?.keyId);
    expect(cross.notAfter.getTime()).toBe(old.notAfter.getTime());
    expect(cross.notBefore.getTime()).toBeGreaterThanOrEqual(old.notBefore.getTime());
  });

  it("refuses an issuer that has expired", async () => {
    const next = await newCa();
    const old = await newCa({ validitySeconds: 1 });
    await expect(crossSign(next, old, new Date(Date.now() + 5000))).rejects.toThrow(/has expired/);
  });

  it.skipIf(!hasOpenssl)("openssl: a server certificate of the new CA verifies against the old CA alone with the cross certificate as untrusted chain, and not without it", async () => {
    const old = await newCa();
    const next = await newCa({ keyType: "p256" });
    const files = {
      "old.pem": old.certPem, "next.pem": next.certPem, "cross.pem": await crossSign(next, old),
      "server.pem": (await issueServerCert(next, { sans: ["localhost"], ttlSeconds: 600 })).pem,
    };
    expect(verify(files, ["-CAfile", "old.pem", "-untrusted", "cross.pem", "server.pem"])).toMatchObject({ ok: true });
    // A client that adopted the new bundle verifies with the new CA (trusted first), cross or not.
    expect(verify(files, ["-CAfile", "next.pem", "-untrusted", "cross.pem", "server.pem"])).toMatchObject({ ok: true });
    const without = verify(files, ["-CAfile", "old.pem", "server.pem"]);
    expect(without.ok).toBe(false);
    expect(without.output).toMatch(/error 20 at 0 depth lookup: unable to get local issuer certificate/);
  });

  it.skipIf(!hasOpenssl)("openssl: under a CA of the earlier versions (pathlen 0) the cross chain is refused — the documented limitation", async () => {
    const { ca: old } = await legacyCa();
    const next = await newCa();
    const files = {
      "old.pem": old.certPem, "cross.pem": await crossSign(next, old),
      "server.pem": (await issueServerCert(next, { sans: ["localhost"], ttlSeconds: 600 })).pem,
    };
    const r = verify(files, ["-CAfile", "old.pem", "-untrusted", "cross.pem", "server.pem"]);
    expect(r.ok).toBe(false);
    expect(r.output).toMatch(/error 25 at 2 depth lookup: path length constraint exceeded/);
  });
});

describe("CRLs", () => {
  it("one v2 CRL signed by its CA: CRL number, authority key id, thisUpdate, nextUpdate, one entry per serial", async () => {
    const ca = await newCa({ keyType: "p256" });
    const revokedAt = new Date(Date.now() - 60_000);
    const thisUpdate = new Date();
    const pem = await buildCrl(ca, { entries: [{ serialHex: "0A0B", revokedAt }], crlNumber: 300, thisUpdate, nextUpdate: new Date(thisUpdate.getTime() + 86_400_000) });
    expect(pem).toMatch(/^-----BEGIN X509 CRL-----\n/);
    const crl = new x509.X509Crl(pem.replace(/X509 CRL/g, "CRL"));
    expect(crl.version).toBe(1); // v2
    expect(crl.issuer).toBe(ca.cert.subject);
    expect(await crl.verify({ publicKey: ca.cert.publicKey })).toBe(true);
    expect(crl.entries.map((e) => e.serialNumber)).toEqual(["0a0b"]);
    expect(Math.floor(crl.entries[0]!.revocationDate.getTime() / 1000)).toBe(Math.floor(revokedAt.getTime() / 1000));
    expect(crl.nextUpdate!.getTime() - crl.thisUpdate.getTime()).toBe(86_400_000);
    expect(crl.getExtension(x509.AuthorityKeyIdentifierExtension)?.keyId).toBe(ca.cert.getExtension(x509.SubjectKeyIdentifierExtension)?.keyId);
    await expect(buildCrl(ca, { entries: [], crlNumber: 1, thisUpdate, nextUpdate: thisUpdate })).rejects.toThrow(/nextUpdate/);
    await expect(buildCrl(ca, { entries: [], crlNumber: -1, thisUpdate, nextUpdate: new Date(thisUpdate.getTime() + 1000) })).rejects.toThrow(/CRL number/);
  });

  it.skipIf(!hasOpenssl)("openssl verify -crl_check: revoked for a listed certificate, OK for a live one, over a bundle of two CAs (Ed25519 and P-256)", async () => {
    const old = await newCa();
    const next = await newCa({ keyType: "p256" });
    const revoked = await executorCert(next, "ex_revoked");
    const live = await executorCert(next, "ex_live");
    const liveOld = await executorCert(old, "ex_old");
    const now = new Date();
    const window = { thisUpdate: now, nextUpdate: new Date(now.getTime() + 86_400_000) };
    const crls = (await buildCrl(old, { entries: [], crlNumber: 2, ...window })) +
      (await buildCrl(next, { entries: [{ serialHex: revoked.serialHex, revokedAt: now }], crlNumber: 7, ...window }));
    const files = { "bundle.pem": old.certPem + next.certPem, "crl.pem": crls, "revoked.pem": revoked.pem, "live.pem": live.pem, "old.pem": liveOld.pem };
    const args = (cert: string) => ["-crl_check", "-CAfile", "bundle.pem", "-CRLfile", "crl.pem", cert];
    const r = verify(files, args("revoked.pem"));
    expect(r.ok).toBe(false);
    expect(r.output).toMatch(/error 23 at 0 depth lookup: certificate revoked/);
    expect(verify(files, args("live.pem"))).toMatchObject({ ok: true });
    expect(verify(files, args("old.pem"))).toMatchObject({ ok: true });
    // Without the CRL of its CA a certificate is not judged: every CA of the bundle needs its own.
    const missing = verify({ ...files, "crl.pem": crls.slice(0, crls.indexOf("-----END X509 CRL-----") + 23) }, args("live.pem"));
    expect(missing.output).toMatch(/unable to get certificate CRL/);
  });
});

describe("the CA files of earlier versions", () => {
  it("readLegacyCa: nothing without ca.key; the CA with its key; refuses a key others can read, naming it, and a ca.pem of another key", async () => {
    const dir = tempDir();
    expect(await readLegacyCa(dir, { trustDomain: TD })).toBeUndefined();
    const written = await writeLegacyCa(dir);
    const read = await readLegacyCa(dir, { trustDomain: TD });
    expect(read?.ca.fingerprintSha256).toBe(written.ca.fingerprintSha256);
    expect(read?.completed).toBe(false);
    expect((await caFromDer(written.certPem, read!.keyDer)).fingerprintSha256).toBe(written.ca.fingerprintSha256);
    chmodSync(join(dir, "ca.key"), 0o640);
    await expect(readLegacyCa(dir, { trustDomain: TD })).rejects.toThrow(join(dir, "ca.key"));
    chmodSync(join(dir, "ca.key"), 0o600);
    writeFileSync(join(dir, "ca.pem"), (await newCa()).certPem);
    await expect(readLegacyCa(dir, { trustDomain: TD })).rejects.toThrow(/does not match/);
  });
});
