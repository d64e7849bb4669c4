/**
 * The running controller's settings that other processes on its data dir must share: a
 * CLI command there (`tether ca rotate`, `tether executors list`, `tether jwt-key rotate`)
 * makes CAs with the controller's `--ca-ttl`, judges liveness with its heartbeat interval,
 * and so on — not with its own defaults. `controller start` publishes them in the store;
 * every other opener of the data dir adopts them.
 */
import type { ControllerConfig } from "./config.ts";
import type { Store } from "./store/types.ts";

const NUMBERS = ["caTtlSeconds", "certTtlSeconds", "jwtTtlSeconds", "jwtKeyTtlSeconds", "heartbeatIntervalSeconds"] as const;

export async function publishSettings(store: Pick<Store, "writeSettings">, config: ControllerConfig, now = Date.now()): Promise<void> {
  const values: Record<string, string> = { trustDomain: config.trustDomain, caKeyType: config.caKeyType };
  for (const name of NUMBERS) values[name] = String(config[name]);
  await store.writeSettings(values, now);
}

/** `config` with the published settings in place of its own (each checked; a bad one is ignored). */
export async function adoptSettings(store: Pick<Store, "readSettings">, config: ControllerConfig): Promise<ControllerConfig> {
  const stored = await store.readSettings();
  const adopted: ControllerConfig = { ...config };
  for (const name of NUMBERS) {
    const v = Number(stored[name]);
    if (Number.isSafeInteger(v) && v > 0) adopted[name] = v;
  }
  const keyType = stored.caKeyType;
  if (keyType === "ed25519" || keyType === "p256") adopted.caKeyType = keyType;
  if (stored.trustDomain) adopted.trustDomain = stored.trustDomain;
  return adopted;
}
