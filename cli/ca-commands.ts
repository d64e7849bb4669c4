import { readFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { X509Certificate } from "node:crypto";
import { requireString } from "./args.ts";
import { out, recordText, type Command } from "./command.ts";
import { dataDirOption, jsonOption } from "./data-dir.ts";
import { parseBundle } from "../certs/bundle.ts";
import { caFingerprint } from "../shared/fingerprint.ts";

function readBundle(args: Parameters<Command["run"]>[0]): string {
  const path = join(resolve(requireString(args, "data-dir")), "ca.pem");
  try {
    return readFileSync(path, "utf8");
  } catch {
    throw new Error(`cannot read ${path} (start the controller there first, or pass the right --data-dir)`);
  }
}

export const caShow: Command = {
  spec: { name: "ca show", summary: "Shows the CA's fingerprint and validity.", options: { ...dataDirOption, ...jsonOption } },
  async run(args) {
    const certs: X509Certificate[] = parseBundle(readBundle(args));
    const rows = certs.map((c) => ({
      subject: c.subject.replace(/\n/g, ", "),
      fingerprint_sha256: caFingerprint(c.raw),
      not_before: new Date(c.validFrom).toISOString(),
      not_after: new Date(c.validTo).toISOString(),
      key_type: c.publicKey.asymmetricKeyType,
    }));
    if (args.flags.json) out(JSON.stringify(rows.length === 1 ? rows[0] : rows, null, 2));
    else out(rows.map((r) => recordText(r, 20)).join("\n\n"));
    return 0;
  },
};

export const caBundle: Command = {
  spec: { name: "ca bundle", summary: "Prints the trust bundle (PEM) to stdout.", options: { ...dataDirOption } },
  async run(args) {
    process.stdout.write(readBundle(args));
    return 0;
  },
};
