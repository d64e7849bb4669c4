/**
 * The store alone, no network: a heartbeat's two writes (nonce, last seen) at a fixed
 * rate through the SQLite store's group commit, with SQLite's automatic WAL checkpoints on
 * the event loop vs the background checkpointer the controller uses — and the
 * event-loop delay each leaves behind. Isolates the checkpoint stalls from the network
 * and generator noise of `npm run bench`.
 *
 *   node --import tsx bench/store-stalls.ts [--rate 1000] [--seconds 12] [--rounds 3]
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { monitorEventLoopDelay } from "node:perf_hooks";
import { randomBytes } from "node:crypto";
import { parseArgs } from "node:util";
import { openStore } from "../controller/store/open-store.ts";
import type { CertThumbprint } from "../shared/fingerprint.ts";
/** Stores keep certificate thumbprints opaque; short stand-ins keep these tests readable. */
const tp = (s: string) => s as CertThumbprint;

const { values } = parseArgs({
  options: {
    rate: { type: "string", default: "1000" }, seconds: { type: "string", default: "12" }, rounds: { type: "string", default: "3" },
    help: { type: "boolean", default: false },
  },
});
if (values.help) {
  process.stdout.write("usage: node --import tsx bench/store-stalls.ts [--rate 1000] [--seconds 12] [--rounds 3]\n");
  process.exit(0);
}
const RATE = Math.min(20_000, Math.max(1, Number(values.rate)));
const SECONDS = Math.min(120, Math.max(1, Number(values.seconds)));
const ROUNDS = Math.min(10, Math.max(1, Number(values.rounds)));

async function run(background: boolean): Promise<string> {
  const dir = mkdtempSync(join(tmpdir(), "tether-store-stalls-"));
  // The controller's background duties, or none (SQLite's automatic checkpoints) as a CLI command opens it.
  const onError = (m: string) => process.stderr.write(`checkpoint: ${m}\n`);
  const handle = await openStore({ dataDir: dir, create: true, background: background ? { checkpointIntervalMs: 500, onError } : undefined });
  const { store } = handle;
  try {
    const tokenHash = randomBytes(32).toString("hex");
    const now = Date.now();
    await store.insertEnrollmentToken({ id: "enr_bench", tokenHash, createdAt: now, expiresAt: now + 3_600_000, maxUses: 1_000_000, uses: 0, revokedAt: null, labels: {} });
    const ids: string[] = [];
    for (let i = 0; i < 3000; i++) {
      const id = "ex_" + randomBytes(9).toString("base64url");
      ids.push(id);
      await store.enrollExecutor(tokenHash, {
        id, name: id, labels: {}, capacity: 1, certFingerprint: tp("fp"), certIssuedAt: now, certExpiresAt: now + 86_400_000, hmacKey: randomBytes(32), now,
      });
    }
    const delay = monitorEventLoopDelay({ resolution: 1 });
    delay.enable();
    const t0 = performance.now();
    let sent = 0;
    let inflight = 0;
    await new Promise<void>((resolve) => {
      const timer = setInterval(() => {
        const due = Math.min(RATE * SECONDS, Math.floor(((performance.now() - t0) / 1000) * RATE));
        for (; sent < due; sent++) {
          const id = ids[sent % ids.length]!;
          inflight++;
          store
            .rememberNonce(id, randomBytes(16).toString("base64url"), Date.now() + 600_000)
            .then(() => store.recordHeartbeat(id, "ready", Date.now()))
            .catch((e) => process.stderr.write(`write failed: ${(e as Error).message}\n`))
            .finally(() => inflight--);
        }
        if (sent >= RATE * SECONDS) {
          clearInterval(timer);
          resolve();
        }
      }, 1);
    });
    delay.disable();
    for (let i = 0; inflight > 0 && i < 1000; i++) await new Promise((r) => setTimeout(r, 5));
    const ms = (ns: number) => (ns / 1e6).toFixed(2).padStart(6);
    return `${background ? "background checkpointer" : "automatic checkpoints  "}  heartbeats ${sent}  event-loop delay p50 ${ms(delay.percentile(50))} ms  p99 ${ms(delay.percentile(99))} ms  p99.9 ${ms(delay.percentile(99.9))} ms  max ${ms(delay.max)} ms`;
  } finally {
    await handle.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

process.stdout.write(`${RATE} heartbeats/s for ${SECONDS} s, ${ROUNDS} rounds of each, alternating\n`);
for (let r = 0; r < ROUNDS; r++) {
  for (const bg of [false, true]) process.stdout.write((await run(bg)) + "\n");
}
