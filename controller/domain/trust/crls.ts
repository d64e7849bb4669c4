/**
 * The revocation lists (PROTOCOL §7.5): one CRL per CA in the bundle, signed by it, listing
 * its unexpired certificates of revoked executors. The entries are read from the store on
 * every call (one indexed query per CA), so a revocation made by any process is in the
 * very next answer; a CRL is signed again, with the next CRL number, only when its entries
 * changed or it is an hour old. nextUpdate is 24 h after thisUpdate.
 */
import { buildCrl } from "../../../certs/crl.ts";
import type { Ca } from "../../../certs/ca.ts";
import type { CaStore } from "../../store/trust-types.ts";

export const CRL_VALIDITY_MS = 24 * 3600_000;
export const CRL_REISSUE_MS = 3600_000;

interface Issued {
  entries: string;
  thisUpdate: number;
  pem: string;
}

export class RevocationLists {
  private readonly issued = new Map<string, Issued>();
  /** One build at a time, so CRL numbers are handed out and cached in order. */
  private chain: Promise<unknown> = Promise.resolve();

  constructor(private readonly store: CaStore) {}

  /** The CRLs of `cas` (the bundle, oldest first), concatenated PEM. */
  pem(cas: { id: string; ca: Ca }[], now = Date.now()): Promise<string> {
    const run = this.chain.then(() => this.build(cas, now));
    this.chain = run.catch(() => undefined);
    return run;
  }

  private async build(cas: { id: string; ca: Ca }[], now: number): Promise<string> {
    const out: string[] = [];
    for (const { id, ca } of cas) {
      const revoked = await this.store.revokedSerials(id, now);
      const entries = revoked.map((r) => `${r.serialHex}@${r.revokedAt}`).join(",");
      let crl = this.issued.get(id);
      if (!crl || crl.entries !== entries || now - crl.thisUpdate >= CRL_REISSUE_MS) {
        const crlNumber = await this.store.nextCrlNumber(id);
        const pem = await buildCrl(ca, {
          entries: revoked.map((r) => ({ serialHex: r.serialHex, revokedAt: new Date(r.revokedAt) })),
          crlNumber, thisUpdate: new Date(now), nextUpdate: new Date(now + CRL_VALIDITY_MS),
        });
        crl = { entries, thisUpdate: now, pem };
        this.issued.set(id, crl);
      }
      out.push(crl.pem);
    }
    for (const id of this.issued.keys()) if (!cas.some((c) => c.id === id)) this.issued.delete(id);
    return out.join("");
  }
}
