/**
 * The fuzz run: a real controller as its own process (production posture), a world set
 * up through the real API and /register, then N workers sending generated cases until
 * the request or time budget is spent, the controller dies, or too many distinct
 * findings piled up. Every answer goes through the oracles (oracle.ts) and updates the
 * model (world.ts); the controller's RSS is sampled throughout.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { DEFAULT_TRUST_DOMAIN } from "../shared/protocol.ts";
import type { Case } from "./case.ts";
import { executorCase } from "./cases-executor.ts";
import { operatorCase } from "./cases-operator.ts";
import { publicCase } from "./cases-public.ts";
import { rawCase } from "./cases-raw.ts";
import { registerCase } from "./cases-register.ts";
import type { FuzzContext } from "./context.ts";
import { bootstrapAdmin, readCaPem, startController, type ControllerProcess } from "./controller-process.ts";
import { Material } from "./material.ts";
import { isBlank, judge, type Failure } from "./oracle.ts";
import { describeFailure, Findings, writeReproducers, type FailureGroup } from "./report.ts";
import { Rng } from "./rng.ts";
import { Replenisher, setupWorld } from "./setup.ts";
import { Transport, type Outcome } from "./transport.ts";
import { withExecutorLock, World } from "./world.ts";

export interface FuzzOptions {
  seed: string;
  /** Stop after this many requests. */
  requests?: number;
  /** Stop after this many seconds of fuzzing (setup not counted). */
  seconds?: number;
  concurrency: number;
  /** Fail when the controller's RSS grows more than this over the run (after warm-up). */
  maxRssGrowthMb: number;
  executors: number;
  /** Run the controller with --dev (the dev-only route is then fuzzed as mounted). */
  dev: boolean;
  /** Stop after this many distinct findings. */
  maxFindings: number;
  /** Where reproducers are written (default: a temp dir, kept only when there are findings). */
  outDir?: string;
  /** Keep the controller's data dir. */
  keep: boolean;
  log: (line: string) => void;
}

export interface FuzzReport {
  seed: string;
  requests: number;
  durationS: number;
  findings: FailureGroup[];
  rss: { startMb: number; baselineMb: number; peakMb: number; growthMb: number; boundMb: number };
  stats: Stats;
  /** The controller state the run built (world.ts summary). */
  world: string;
  outDir?: string;
}

export interface Stats {
  byPlane: Record<string, number>;
  byStatus: Record<string, number>;
  /** Requests whose every credential was right (past the guards). */
  authenticated: number;
  /** …of which answered 2xx. */
  authenticated2xx: number;
  /** Mutated in an auth-relevant part (a 2xx would be a bypass)… */
  mustNotPass: number;
  /** …and refused. */
  refused: number;
  raw: number;
  noResponse: number;
  /** …of which raw bytes that cannot start a request, and raw bytes unanswered when the fuzzer half-closed (not findings). */
  noResponseBlank: number;
  noResponseHalfClosed: number;
  abandoned: number;
  byRoute: Record<string, Record<string, number>>;
  /** First answers by the client certificate the request was sent with (and TLS 1.2 or 1.3). */
  byIdentity: Record<string, Record<string, number>>;
}

const MIX = [[38, "executor"], [26, "operator"], [8, "register"], [10, "public"], [18, "raw"]] as const;

async function buildCase(n: number, ctx: FuzzContext, seed: string): Promise<Case | undefined> {
  const rng = Rng.forCase(seed, n);
  switch (rng.weighted(MIX)) {
    case "executor": return executorCase(n, rng, ctx);
    case "operator": return operatorCase(n, rng, ctx);
    case "register": return registerCase(n, rng, ctx);
    case "public": return publicCase(n, rng, ctx);
    default: return rawCase(n, rng, ctx);
  }
}

function code(res: { body: Buffer }): string | undefined {
  try {
    return (JSON.parse(res.body.toString("utf8")) as { error?: { code?: string } }).error?.code;
  } catch {
    return undefined;
  }
}

export async function runFuzz(opts: FuzzOptions): Promise<FuzzReport> {
  const log = opts.log;
  const dataRoot = mkdtempSync(join(tmpdir(), "tether-fuzz-"));
  const dataDir = join(dataRoot, "data");
  const findings = new Findings();
  const stats: Stats = { byPlane: {}, byStatus: {}, authenticated: 0, authenticated2xx: 0, mustNotPass: 0, refused: 0, raw: 0, noResponse: 0, noResponseBlank: 0, noResponseHalfClosed: 0, abandoned: 0, byRoute: {}, byIdentity: {} };
  let controller: ControllerProcess | undefined;
  let transport: Transport | undefined;
  let material: Material | undefined;
  let sampler: NodeJS.Timeout | undefined;
  const rss = { startMb: NaN, baselineMb: NaN, peakMb: 0, growthMb: 0, boundMb: opts.maxRssGrowthMb };
  let sent = 0;
  let started = Date.now();
  let outDir = opts.outDir;
  try {
    log(`fuzz: starting a controller (${opts.dev ? "--dev" : "production"}) in ${dataDir}`);
    controller = await startController(dataDir, { dev: opts.dev });
    const admin = bootstrapAdmin(dataDir);
    const caPem = readCaPem(dataDir);
    transport = new Transport("127.0.0.1", controller.port, caPem);
    material = await Material.create(dataDir, DEFAULT_TRUST_DOMAIN);
    const world = new World("127.0.0.1", controller.port, caPem, DEFAULT_TRUST_DOMAIN);
    const { jwksX } = await setupWorld(transport, world, material, admin, opts.executors);
    const ctx: FuzzContext = { world, material, jwksX, authority: `127.0.0.1:${controller.port}`, dev: opts.dev };
    const replenisher = new Replenisher(transport, world, material, opts.executors, admin);
    log(`fuzz: ${controller.url} pid ${controller.pid}; ${world.executors.size} executors, ${world.operatorTokens.length} API tokens; seed ${JSON.stringify(opts.seed)}`);

    // ---- RSS
    rss.startMb = controller.rssMb();
    started = Date.now();
    const warmUpMs = Math.min(3_000, ((opts.seconds ?? 60) * 1000) / 10);
    sampler = setInterval(() => {
      const mb = controller!.rssMb();
      if (!Number.isFinite(mb)) return;
      rss.peakMb = Math.max(rss.peakMb, mb);
      if (Number.isNaN(rss.baselineMb) && Date.now() - started >= warmUpMs) rss.baselineMb = mb;
    }, 200);

    // ---- the crash oracle
    const inFlight = new Map<number, Case>();
    const recent: Case[] = [];
    let crashed = false;
    let stop = false;
    void controller.exited.then((exit) => {
      if (controller!.stopping) return;
      crashed = true;
      stop = true;
      const suspects = [...inFlight.values(), ...recent.slice(-10)];
      const example = suspects.sort((a, b) => a.bytes.length - b.bytes.length)[0];
      findings.add({
        oracle: "crash", key: "crash",
        message: `the controller exited (code ${exit.code}, signal ${exit.signal}) with ${inFlight.size} requests in flight; the smallest suspect is shown, ${suspects.length} in all (in flight and the last 10 sent)\n${controller!.tail(3000)}`,
        case: example,
      });
    });

    const record = (f: Failure) => {
      if (findings.add(f)) log(describeFailure(findings.groups.get(f.key)!, opts.seed));
      if (findings.groups.size >= opts.maxFindings) stop = true;
    };

    const deadline = opts.seconds !== undefined ? started + opts.seconds * 1000 : Infinity;
    const budget = opts.requests ?? Infinity;
    let next = 0;
    let aborting = false;
    const handle = (c: Case, outcome: Outcome, sentAt: number) => {
      stats.byPlane[c.raw ? "raw" : c.plane] = (stats.byPlane[c.raw ? "raw" : c.plane] ?? 0) + 1;
      if (c.raw) stats.raw++;
      const route = (stats.byRoute[c.raw ? "raw" : c.label] ??= {});
      const who = (stats.byIdentity[`${c.identityDesc.replace(/ex_[A-Za-z0-9_-]+/g, "…")}, TLS 1.${c.identity.tls12 ? 2 : 3}`] ??= {});
      const first = outcome.kind === "responses" ? outcome.responses[0] : undefined;
      const status = first ? String(first.status) : "none";
      route[status] = (route[status] ?? 0) + 1;
      who[status] = (who[status] ?? 0) + 1;
      if (outcome.kind === "no-response") {
        stats.noResponse++;
        if (c.raw && isBlank(c.bytes)) stats.noResponseBlank++;
        else if (c.raw && outcome.afterHalfClose) stats.noResponseHalfClosed++;
      }
      if (first) {
        stats.byStatus[status] = (stats.byStatus[status] ?? 0) + 1;
        if (c.authenticated) {
          stats.authenticated++;
          if (first.status < 300) stats.authenticated2xx++;
        }
        if (c.expect[0]?.mustNotPass ?? c.dynamic?.(sentAt)) {
          stats.mustNotPass++;
          if (first.status >= 300) stats.refused++;
        }
      }
      for (const f of judge(c, outcome, sentAt)) record(f);
      if (!first) return;
      const extra = c.onAnswer?.(first);
      if (extra) record({ oracle: "contract", message: extra, key: `contract ${c.label} ${extra.replace(/ex_\S+|enr_\S+|\d+/g, "…")}`, case: c });
      if (first.status >= 200 && first.status < 300) {
        const broken = c.onSuccess?.(first, sentAt);
        if (broken) record({ oracle: "guard-bypass", message: broken, key: `guard-bypass ${c.label} ${broken.replace(/ex_\S+|enr_\S+|\d+/g, "…")}`, case: c });
        if (c.plane === "executor" && !c.raw && c.executorId) world.remember(world.accepted, { identity: c.identity, bytes: c.bytes, label: c.label, executorId: c.executorId }, 64);
      }
      // The first 2xx over an executor's current certificate confirms it (see ExecutorState.certConfirmedAt).
      const owner = c.executorId ? world.executors.get(c.executorId) : undefined;
      if (owner && first.status < 300 && c.identity.key.startsWith(`${owner.identity.key}@`)) owner.certConfirmedAt ??= Date.now();
      // An executor the controller calls revoked is no longer a subject (whatever the model thought).
      if (c.executorId && code(first) === "CERT_REVOKED" && c.identity.key.startsWith(`ex:${c.executorId}:`)) {
        const e = world.executors.get(c.executorId);
        if (e) e.lost = true;
      }
    };

    const worker = async () => {
      while (!stop && Date.now() < deadline && sent < budget) {
        const n = next++;
        try {
          await runCase(n);
        } catch (e) {
          // A bug in the fuzzer fails the run and is reported as such, never as the controller's.
          record({ oracle: "fuzzer-error", key: `fuzzer-error ${(e as Error).message}`, message: `case #${n}: ${(e as Error).stack ?? String(e)}` });
          stop = true;
        }
      }
    };
    const runCase = async (n: number) => {
      replenisher.poke();
      const c = await buildCase(n, ctx, opts.seed);
      if (!c || stop) return;
      sent++;
      inFlight.set(n, c);
      recent.push(c);
      if (recent.length > 50) recent.shift();
      let sentAt = 0;
      c.track?.start();
      const send = async () => {
        sentAt = Date.now();
        return c.raw ? transport!.raw(c.identity, c.bytes, c) : transport!.exchange(c.identity, c.bytes, c);
      };
      const outcome = c.lock ? await withExecutorLock(c.lock, send) : await send();
      inFlight.delete(n);
      if (crashed) return;
      if (aborting) {
        c.track?.end(false);
        stats.abandoned++;
        return;
      }
      handle(c, outcome, sentAt);
      // After the model learned what it could from the answer (handle → onSuccess).
      c.track?.end(!c.raw && outcome.kind === "responses");
    };
    const workers = Array.from({ length: opts.concurrency }, () => worker());
    const progress = setInterval(() => log(`fuzz: ${sent} requests, ${((Date.now() - started) / 1000).toFixed(0)} s, rss ${controller!.rssMb().toFixed(0)} MB, ${findings.groups.size} findings`), 10_000);
    // Long polls in flight when the budget is spent are abandoned after a short grace, not waited for.
    const allDone = Promise.all(workers);
    const budgetSpent = new Promise<void>((resolve) => {
      const t = setInterval(() => {
        if (stop || Date.now() >= deadline || sent >= budget) {
          clearInterval(t);
          resolve();
        }
      }, 100);
      void allDone.then(() => {
        clearInterval(t);
        resolve();
      });
    });
    await budgetSpent;
    const grace = new Promise((r) => setTimeout(r, 3_000));
    await Promise.race([allDone, grace]);
    aborting = true;
    transport.destroyAll();
    await allDone;
    clearInterval(progress);
    await replenisher.settle();
    clearInterval(sampler);

    // ---- the RSS oracle
    const endMb = controller.rssMb();
    if (Number.isNaN(rss.baselineMb)) rss.baselineMb = rss.startMb;
    if (Number.isFinite(endMb)) rss.peakMb = Math.max(rss.peakMb, endMb);
    rss.growthMb = rss.peakMb - rss.baselineMb;
    if (rss.growthMb > opts.maxRssGrowthMb) {
      record({ oracle: "rss", key: "rss", message: `controller RSS grew ${rss.growthMb.toFixed(0)} MB (from ${rss.baselineMb.toFixed(0)} MB after warm-up to a peak of ${rss.peakMb.toFixed(0)} MB), over the bound of ${opts.maxRssGrowthMb} MB` });
    }
    const durationS = (Date.now() - started) / 1000;
    const real = [...findings.groups.values()];
    if (real.length) {
      outDir ??= mkdtempSync(join(tmpdir(), "tether-fuzz-findings-"));
      writeReproducers(outDir, real, { caPem, port: controller.port, seed: opts.seed });
    }
    return { seed: opts.seed, requests: sent, durationS, findings: real, rss, stats, world: world.summary(), outDir: real.length ? outDir : undefined };
  } finally {
    clearInterval(sampler);
    transport?.destroyAll();
    await controller?.stop();
    material?.close();
    if (!opts.keep) rmSync(dataRoot, { recursive: true, force: true });
    else log(`fuzz: data dir kept: ${dataDir}`);
  }
}
