/** `tether jwt-key rotate` (PROTOCOL §6, §7.3): the next JWT key signs from now on. */
import { info, out, type Command } from "./command.ts";
import { jsonOption, table } from "./data-dir.ts";
import { OPERATOR_USAGE, operatorOptions, withOperator } from "./operator-client.ts";

export const jwtKeyRotate: Command = {
  spec: {
    name: "jwt-key rotate",
    usage: `jwt-key rotate ${OPERATOR_USAGE} [--json]`,
    summary:
      "Makes the published next JWT key the signing one, retires the current one (its tokens keep verifying until they " +
      "expire) and publishes a new next key. Refused while the next key has been in the JWKS for less than one JWT lifetime. Needs an admin.",
    options: { ...operatorOptions, ...jsonOption },
  },
  async run(args) {
    const keys = await withOperator(args, (op) => op.rotateJwtKey());
    const active = keys.find((k) => k.state === "active");
    info(`JWT key ${active?.kid ?? "?"} signs from now on`);
    out(args.flags.json ? JSON.stringify(keys, null, 2) : table(keys as unknown as Record<string, unknown>[], ["kid", "state", "created_at"]));
    return 0;
  },
};
