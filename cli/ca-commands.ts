/**
 * `tether ca …` (PROTOCOL §6, §7): the CA set over `--data-dir` (the store) or `--url`.
 * show / bundle / crl print what is; status adds adoption and the JWT key ring;
 * rotate prepares a CA, activate makes it the signing one once every live executor holds it.
 */
import { X509Certificate } from "node:crypto";
import { parseBundle } from "../certs/bundle.ts";
import { ErrorCode, TetherError } from "../shared/errors.ts";
import { caFingerprint } from "../shared/fingerprint.ts";
import type { CaView, TrustStatus } from "../shared/wire/operator.ts";
import type { ParsedArgs } from "./args.ts";
import { info, out, recordText, type Command } from "./command.ts";
import { jsonOption, table } from "./data-dir.ts";
import { OPERATOR_USAGE, operatorOptions, RemoteError, withOperator } from "./operator-client.ts";

const plain = (name: string, summary: string, extra: Command["spec"]["options"] = {}, usage = `${name} ${OPERATOR_USAGE}`): Command["spec"] => ({
  name, usage, summary, options: { ...operatorOptions, ...extra },
});

export const caShow: Command = {
  spec: plain("ca show", "Shows every CA of the trust bundle: state, subject, fingerprint, validity, key type.", jsonOption, `ca show ${OPERATOR_USAGE} [--json]`),
  async run(args) {
    const [bundle, status] = await withOperator(args, (op) => Promise.all([op.caBundle(), op.trustStatus()]));
    const states = new Map(status.cas.map((c) => [c.fingerprint_sha256, c.state]));
    const rows = parseBundle(bundle.pem).map((c: X509Certificate) => {
      const fingerprint = caFingerprint(c.raw);
      return {
        state: states.get(fingerprint) ?? "unknown",
        subject: c.subject.replace(/\n/g, ", "),
        fingerprint_sha256: fingerprint,
        not_before: new Date(c.validFrom).toISOString(),
        not_after: new Date(c.validTo).toISOString(),
        key_type: c.publicKey.asymmetricKeyType,
      };
    });
    if (args.flags.json) out(JSON.stringify(rows, null, 2));
    else out(rows.map((r) => recordText(r, 20)).join("\n\n"));
    return 0;
  },
};

export const caBundle: Command = {
  spec: plain("ca bundle", "Prints the trust bundle (every CA, PEM) to stdout, its version to stderr."),
  async run(args) {
    const bundle = await withOperator(args, (op) => op.caBundle());
    process.stdout.write(bundle.pem);
    info(`trust bundle version ${bundle.version}`);
    return 0;
  },
};

export const caCrl: Command = {
  spec: plain("ca crl", "Prints the revocation lists (one CRL per CA of the bundle, PEM) to stdout, for `openssl verify -crl_check`."),
  async run(args) {
    process.stdout.write(await withOperator(args, (op) => op.caCrl()));
    return 0;
  },
};

function statusText(s: TrustStatus): string {
  const cas = s.cas.map((c) => ({
    state: c.state, fingerprint: `SHA256:${c.fingerprint_sha256}`, not_after: c.not_after, adopted_by: c.adopted_by,
    pending: c.pending.length ? c.pending.join(" ") : "-",
  }));
  const keys = s.jwt_keys.map((k) => ({ state: k.state, kid: k.kid, created_at: k.created_at }));
  return [
    `trust bundle version ${s.trust_bundle_version}`, "", table(cas, ["state", "fingerprint", "not_after", "adopted_by", "pending"]).trimEnd(),
    ...(keys.length ? ["", table(keys, ["state", "kid", "created_at"]).trimEnd()] : []),
  ].join("\n");
}

export const caStatus: Command = {
  spec: plain("ca status", "Shows every CA and JWT key with its state, and which live executors have not adopted each CA yet.", jsonOption, `ca status ${OPERATOR_USAGE} [--json]`),
  async run(args) {
    const s = await withOperator(args, (op) => op.trustStatus());
    out(args.flags.json ? JSON.stringify(s, null, 2) : statusText(s));
    return 0;
  },
};

const printCa = (args: ParsedArgs, ca: CaView) => {
  if (args.flags.json) out(JSON.stringify(ca, null, 2));
};

export const caRotate: Command = {
  spec: plain(
    "ca rotate",
    "Prepares a new CA, cross-signed by the active one: it joins the trust bundle (executors adopt it at their next heartbeats) but signs nothing until `tether ca activate`. Needs an admin.",
    jsonOption,
  ),
  async run(args) {
    const ca = await withOperator(args, (op) => op.rotateCa());
    info(`prepared CA SHA256:${ca.fingerprint_sha256} (valid until ${ca.not_after}); activate it with: tether ca activate, once \`tether ca status\` shows no executor pending`);
    printCa(args, ca);
    return 0;
  },
};

/** The executors an ADOPTION_INCOMPLETE names, from a local or a remote refusal. */
function pendingOf(e: unknown): string[] | undefined {
  const isRefusal = (e instanceof TetherError || e instanceof RemoteError) && e.code === ErrorCode.ADOPTION_INCOMPLETE;
  if (!isRefusal) return undefined;
  const pending = e instanceof TetherError ? e.details?.pending : e.details.pending;
  return Array.isArray(pending) ? pending.map(String) : [];
}

export const caActivate: Command = {
  spec: plain(
    "ca activate",
    "Makes the prepared CA the signing one and retires the active one — refused while a live executor has not adopted it, unless --force. Needs an admin.",
    { ...jsonOption, force: { kind: "boolean", help: "activate even though live executors have not adopted the CA yet (they recover through the cross-signed chain)" } },
    `ca activate [--force] ${OPERATOR_USAGE} [--json]`,
  ),
  async run(args) {
    let ca: CaView;
    try {
      ca = await withOperator(args, (op) => op.activateCa(args.flags.force === true));
    } catch (e) {
      const pending = pendingOf(e);
      if (!pending) throw e;
      throw new Error(`refused: ${pending.length} live executor(s) have not adopted the prepared CA yet: ${pending.join(", ")} (wait for their next heartbeats, or pass --force)`);
    }
    info(`activated CA SHA256:${ca.fingerprint_sha256}; executors move to it at their next renewal, within about a heartbeat interval`);
    printCa(args, ca);
    return 0;
  },
};
