/**
 * `npm run fuzz -- [--requests N] [--seconds S] [--seed SEED] …` — see USAGE below and
 * docs/security.md ("Fuzzing"). Exit 0: nothing found; 1: findings (each printed with
 * its reproducing request); 2: bad usage or the run could not start.
 */
import { parseArgs } from "node:util";
import { runFuzz, type FuzzReport } from "./fuzzer.ts";
import { describeFailure } from "./report.ts";

const USAGE = `Usage: npm run fuzz -- [options]

Starts a real controller as its own process (production posture), registers executors
through /register, mints admin/operator/viewer API tokens, then sends mutated requests
over real TLS to every executor, public and operator route, plus raw HTTP framing.
Fails on: the controller dying, a 5xx other than 503, a non-2xx answer outside the
contract's error shape, a request answered without an HTTP response, RSS growth over
the bound, and any request let past a guard it should not pass.

  --requests N          stop after N requests
  --seconds S           stop after S seconds of fuzzing (default 60 when neither is given)
  --seed SEED           generator seed (default: random; printed, so a run can be repeated)
  --concurrency C       requests in flight (default 8)
  --executors E         live executors to fuzz with (default 4)
  --max-rss-growth MB   RSS growth of the controller allowed after warm-up (default 256)
  --max-findings K      stop after K distinct findings (default 50)
  --out DIR             write one reproducer per finding under DIR (default: a temp dir)
  --dev                 run the controller with --dev (fuzzes the dev-only route as mounted)
  --keep                keep the controller's data dir
  --json                print the report as one JSON line on stdout
  --help
`;

function fail(msg: string): never {
  process.stderr.write(`fuzz: ${msg}\n${USAGE}`);
  process.exit(2);
}

let args: ReturnType<typeof parse>;
function parse() {
  return parseArgs({
    options: {
      requests: { type: "string" }, seconds: { type: "string" }, seed: { type: "string" }, concurrency: { type: "string", default: "8" },
      executors: { type: "string", default: "4" }, "max-rss-growth": { type: "string", default: "256" }, "max-findings": { type: "string", default: "50" },
      out: { type: "string" }, dev: { type: "boolean", default: false },
      keep: { type: "boolean", default: false }, json: { type: "boolean", default: false }, help: { type: "boolean", default: false },
    },
    strict: true,
  }).values;
}
try {
  args = parse();
} catch (e) {
  fail((e as Error).message);
}
if (args.help) {
  process.stdout.write(USAGE);
  process.exit(0);
}

function num(name: string, v: string | undefined, min: number, max: number): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!Number.isFinite(n) || n < min || n > max) fail(`--${name} must be a number in [${min}, ${max}], got "${v}"`);
  return n;
}

const requests = num("requests", args.requests, 1, 1e9);
const seconds = num("seconds", args.seconds, 1, 7 * 86400) ?? (requests === undefined ? 60 : undefined);
const seed = args.seed ?? Math.random().toString(36).slice(2, 10);
const log = (line: string) => process.stderr.write(line + "\n");
// Exit through process.exit so the controller process is stopped with us (controller-process.ts).
for (const signal of ["SIGINT", "SIGTERM"] as const) process.once(signal, () => process.exit(130));

let report: FuzzReport;
try {
  report = await runFuzz({
    seed, requests, seconds, concurrency: num("concurrency", args.concurrency, 1, 256)!, executors: num("executors", args.executors, 2, 64)!,
    maxRssGrowthMb: num("max-rss-growth", args["max-rss-growth"], 1, 1e6)!, maxFindings: num("max-findings", args["max-findings"], 1, 10_000)!,
    outDir: args.out, dev: args.dev, keep: args.keep, log,
  });
} catch (e) {
  process.stderr.write(`fuzz: the run could not complete: ${(e as Error).stack ?? e}\n`);
  process.exit(2);
}

const s = report.stats;
log(`\nfuzz: seed ${JSON.stringify(report.seed)}: ${report.requests} requests in ${report.durationS.toFixed(1)} s (${(report.requests / report.durationS).toFixed(0)}/s)`);
log(`  world: ${report.world}`);
log(`  by plane: ${JSON.stringify(s.byPlane)}; raw framing ${s.raw}`);
log(`  by status: ${JSON.stringify(s.byStatus)}; no HTTP response ${s.noResponse} (raw: ${s.noResponseBlank} blank, ${s.noResponseHalfClosed} unanswered at the half-close); abandoned at the end ${s.abandoned}`);
log(`  fully authenticated ${s.authenticated} (answered 2xx: ${s.authenticated2xx}); must-not-pass ${s.mustNotPass} (refused: ${s.refused})`);
log(`  controller RSS: ${report.rss.startMb.toFixed(0)} MB at start, ${report.rss.baselineMb.toFixed(0)} MB after warm-up, peak ${report.rss.peakMb.toFixed(0)} MB (growth ${report.rss.growthMb.toFixed(0)} MB, bound ${report.rss.boundMb} MB)`);
for (const [title, table] of [["route", s.byRoute], ["client certificate", s.byIdentity]] as const) {
  log(`  first answers by ${title}:`);
  for (const [row, counts] of Object.entries(table).sort()) {
    const total = Object.values(counts).reduce((a, b) => a + b, 0);
    log(`    ${row.padEnd(70)} ${String(total).padStart(6)}  ${Object.entries(counts).sort().map(([k, v]) => `${k}:${v}`).join(" ")}`);
  }
}
if (report.findings.length) {
  log(`\nfuzz: ${report.findings.length} finding(s):\n`);
  for (const g of report.findings) log(describeFailure(g, report.seed) + "\n");
  log(`reproducers: ${report.outDir}`);
} else log("fuzz: no findings");
if (args.json) process.stdout.write(JSON.stringify({ ...report, findings: report.findings.map((g) => ({ key: g.key, oracle: g.oracle, count: g.count, message: g.example.message })) }) + "\n");
process.exit(report.findings.length ? 1 : 0);
