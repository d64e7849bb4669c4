/** `npm run bench -- …`: the options, parsed and checked once (bench/run.ts and its phases read them from here). */
import { parseArgs } from "node:util";
import { storeKindOf } from "../controller/store/store-url.ts";

const USAGE = `Usage: npm run bench -- [options]

  --store URL           the controller's store: sqlite (default, in its data dir) or postgres://USER@HOST:PORT/DB —
                        the run then creates a database of its own on that server (dropped at the end unless
                        --keep; the URL's database is only used to connect) and a KEK file, and adds the
                        revocation propagation phase across two replicas
  --metrics             run the controller with --metrics-listen on loopback and scrape /metrics every
                        5 s during the whole run (to measure what metrics cost; compare runs with and without)
  --revocations K       executors revoked through a second replica, timing until the first refuses them
                        (PostgreSQL only; 0 skips the phase) (default 50)
  --executors N         simulated executors registered and kept connected (default 10000)
  --duration S          seconds of each throughput measurement (bare and full) (default 10)
  --latency-duration S  seconds of the open-loop latency phase (default max(duration, N/rate, 2))
  --rate R              offered heartbeats/s in the latency and rotation phases (default 1000)
  --registrations R     registrations (and handshakes) timed for the rate ratio (default min(1000, N))
  --concurrency K       requests in flight at saturation (default 64)
  --reg-concurrency C   registrations / handshakes in flight (default 16)
  --workers W           generator threads (default 2)
  --restart-timeout S   give up waiting for the restart storm to recover after S seconds (default 120)
  --no-rotation         skip the rotation phase (CA rotate + activate, JWT key rotation under load)
  --rotation-timeout S  give up each wait of the rotation phase after S seconds (default 300)
  --heartbeat-interval S the controller's heartbeat interval; idle executors heartbeat this often and,
                        after a CA activation, renew within one to two of it (default 10)
  --jwt-ttl S           the controller's JWT lifetime (default: max(60, N × 0.024) with the rotation
                        phase, so the next key may sign when the phase starts; 7200 without it)
  --max-seconds S       hard limit for the whole run (default 3600)
  --daemon-idle S       meanwhile, measure one real executor daemon idle against its own small controller
                        for S seconds (bench/daemon-idle.ts): started with the run, waited for at its end
                        → daemon_idle_rss_mb, daemon_idle_cpu_pct; 0 skips it (default: 600 in the full
                        run — no --executors given — else 0: a smaller run would wait for it)
  --daemon-idle-warmup S seconds between the daemon being ready and its window (default: bench/daemon-idle.ts's)
  --report DIR          also write DIR/index.html (self-contained: inline SVG, no script, nothing fetched),
                        each chart as DIR/<name>.svg, the JSON as DIR/bench.json and the charts' data as
                        DIR/series.json (\`node --import tsx bench/report.ts DIR\` redraws from those)
  --cpu-prof DIR        run the controller with --cpu-prof, profiles written to DIR
  --controller-log FILE append the controller's stderr to FILE
  --stop-after connect  stop after connecting the fleet (for profiling that part; partial JSON)
  --keep                keep the controller's data dir (and the PostgreSQL database)
  --json                print one JSON object as the last stdout line
  --help
`;

const { values: opt } = parseArgs({
  options: {
    store: { type: "string", default: "sqlite" },
    revocations: { type: "string", default: "50" },
    metrics: { type: "boolean", default: false },
    executors: { type: "string" }, // default 10000 (below: whether it was given decides --daemon-idle's default)
    duration: { type: "string", default: "10" },
    "latency-duration": { type: "string" },
    rate: { type: "string", default: "1000" },
    registrations: { type: "string" },
    concurrency: { type: "string", default: "64" },
    "reg-concurrency": { type: "string", default: "16" },
    workers: { type: "string", default: "2" },
    "restart-timeout": { type: "string", default: "120" },
    "no-rotation": { type: "boolean", default: false },
    "rotation-timeout": { type: "string", default: "300" },
    "heartbeat-interval": { type: "string", default: "10" },
    "jwt-ttl": { type: "string" },
    "max-seconds": { type: "string", default: "3600" },
    "daemon-idle": { type: "string" },
    "daemon-idle-warmup": { type: "string" },
    report: { type: "string" },
    "cpu-prof": { type: "string" },
    "controller-log": { type: "string" },
    "stop-after": { type: "string" },
    keep: { type: "boolean", default: false },
    json: { type: "boolean", default: false },
    help: { type: "boolean", default: false },
  },
  strict: true,
});
if (opt.help) {
  process.stdout.write(USAGE);
  process.exit(0);
}

function num(name: string, v: string | undefined, min: number, max: number): number {
  const n = Number(v);
  if (!Number.isFinite(n) || n < min || n > max) {
    process.stderr.write(`bench: --${name} must be a number in [${min}, ${max}], got "${v}"\n`);
    process.exit(2);
  }
  return n;
}

const N = Math.floor(num("executors", opt.executors ?? "10000", 1, 18_000)); // one fd per executor in each process; ulimit is 20000 here
const DURATION_S = num("duration", opt.duration, 0.5, 600);
const RATE = num("rate", opt.rate, 1, 100_000);
const ROTATION = !opt["no-rotation"];
const MAX_S = num("max-seconds", opt["max-seconds"], 10, 24 * 3600);
const DAEMON_IDLE_S = num("daemon-idle", opt["daemon-idle"] ?? (opt.executors === undefined ? "600" : "0"), 0, MAX_S - 5);
if (opt.report !== undefined && (opt.report === "" || opt.report.startsWith("-"))) {
  process.stderr.write(`bench: --report needs a directory, got "${opt.report}"\n`);
  process.exit(2);
}
const STORE_URL = opt.store!;
const STORE = storeKindOf(STORE_URL);
if (!STORE) {
  process.stderr.write(`bench: --store must be sqlite or postgres://USER@HOST:PORT/DB, got "${STORE_URL}"\n`);
  process.exit(2);
}

export const options = {
  /** "sqlite", or the PostgreSQL server the run makes its database on. */
  STORE_URL,
  STORE,
  REVOCATIONS: Math.floor(num("revocations", opt.revocations, 0, 1000)),
  METRICS: opt.metrics,
  N,
  DURATION_S,
  RATE,
  LATENCY_S: num("latency-duration", opt["latency-duration"] ?? String(Math.max(DURATION_S, Math.min(N / RATE, 60), 2)), 0.5, 600),
  REGS: Math.floor(num("registrations", opt.registrations ?? String(Math.min(1000, N)), 1, N)),
  CONCURRENCY: Math.floor(num("concurrency", opt.concurrency, 1, 4096)),
  REG_CONCURRENCY: Math.floor(num("reg-concurrency", opt["reg-concurrency"], 1, 1024)),
  W: Math.floor(num("workers", opt.workers, 1, 32)),
  RESTART_TIMEOUT_S: num("restart-timeout", opt["restart-timeout"], 1, 3600),
  ROTATION,
  ROTATION_TIMEOUT_S: num("rotation-timeout", opt["rotation-timeout"], 5, 3600),
  /** The controller's heartbeat interval, and how often idle simulated executors heartbeat between phases. */
  HEARTBEAT_INTERVAL_S: Math.floor(num("heartbeat-interval", opt["heartbeat-interval"], 1, 3600)),
  /**
   * The controller's JWT lifetime. A JWT key rotation is refused until the next key has been
   * published for one lifetime (PROTOCOL §7.3), so with the rotation phase it is short enough
   * for the key published at start to sign by then — and long enough that renewals (one per
   * executor every ⅔ of it, N/(⅔·ttl) per second, ≤ 62/s) stay a small share of the load.
   */
  JWT_TTL_S: Math.floor(num("jwt-ttl", opt["jwt-ttl"] ?? String(ROTATION ? Math.max(60, Math.ceil(N * 0.024)) : 7200), 5, 86_400)),
  MAX_S,
  /** Seconds of the idle-daemon measurement run alongside (0: none). */
  DAEMON_IDLE_S,
  /** Its warm-up (undefined: the measurement's own default). */
  DAEMON_IDLE_WARMUP_S: opt["daemon-idle-warmup"] === undefined ? undefined : num("daemon-idle-warmup", opt["daemon-idle-warmup"], 0, 3600),
  /** Where the HTML/SVG report goes (bench/report.ts); none without --report. */
  report: opt.report,
  cpuProf: opt["cpu-prof"],
  controllerLog: opt["controller-log"],
  stopAfter: opt["stop-after"],
  keep: opt.keep,
  json: opt.json,
};

/** The run's parameters after defaults, as the report's header lists them (the store by kind: its URL may hold a password). */
export const parameters: Record<string, string | number | boolean> = {
  executors: options.N,
  store: options.STORE,
  "duration (s)": options.DURATION_S,
  "latency duration (s)": options.LATENCY_S,
  "offered rate (/s)": options.RATE,
  "registrations timed": options.REGS,
  "concurrency at saturation": options.CONCURRENCY,
  "registration concurrency": options.REG_CONCURRENCY,
  "generator threads": options.W,
  "rotation phase": options.ROTATION,
  "heartbeat interval (s)": options.HEARTBEAT_INTERVAL_S,
  "JWT lifetime (s)": options.JWT_TTL_S,
  "restart timeout (s)": options.RESTART_TIMEOUT_S,
  revocations: options.STORE === "postgres" ? options.REVOCATIONS : 0,
  metrics: options.METRICS,
  "daemon idle (s)": options.DAEMON_IDLE_S,
  ...(options.DAEMON_IDLE_WARMUP_S !== undefined ? { "daemon idle warm-up (s)": options.DAEMON_IDLE_WARMUP_S } : {}),
};
