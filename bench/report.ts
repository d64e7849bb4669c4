/**
 * `npm run bench -- --report DIR`: the run's pictures. Writes into DIR
 *
 *   index.html   one self-contained page (inline SVG and CSS, no script, nothing fetched):
 *                the run's parameters and date, the headline figures, every chart, the JSON
 *   <chart>.svg  each chart on its own (bench/report-charts.ts), for docs to embed
 *   bench.json   the run's JSON line (what `--json` prints)
 *   series.json  the time series the charts are drawn from, and the run's parameters
 *
 * `node --import tsx bench/report.ts DIR` draws index.html and the SVGs again from
 * DIR/bench.json and DIR/series.json (after a change to the charts, without a new run).
 */
import { spawnSync } from "node:child_process";
import { mkdirSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import { cpus, release, totalmem } from "node:os";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { redactStoreUrl } from "../controller/store/store-url.ts";
import { buildCharts, type Chart } from "./report-charts.ts";
import type { RunSeries } from "./report-series.ts";
import { escapeXml } from "./report-svg.ts";

/** Where and how the run was made: shown at the top of the page. */
export interface RunMeta {
  /** ISO 8601, when the run started. */
  date: string;
  /** The bench's arguments as given. */
  command: string;
  machine: string;
  /** The run's parameters after defaults (--executors, --duration …), as name → value. */
  parameters: Record<string, string | number | boolean>;
  /** `git describe`-like: the commit the tree was at, "+ changes" when it had uncommitted ones. */
  tree?: string;
}

export interface ReportInput {
  result: Record<string, unknown>;
  series: RunSeries;
  meta: RunMeta;
}

/** The headline figures with what they mean, in the order of the issue's targets; those absent from the run are left out. */
const HEADLINES: [string, string][] = [
  ["heartbeat_ratio_vs_bare_tls", "heartbeats/s ÷ bare route/s at saturation"],
  ["heartbeat_cpu_ratio_vs_bare_tls", "the same in controller CPU per request"],
  ["heartbeat_p50_ms", "heartbeat p50 at the offered rate, open loop (ms)"],
  ["heartbeat_p99_ms", "heartbeat p99 (ms)"],
  ["bare_p99_ms", "bare route p99, same timetable (ms)"],
  ["registration_ratio_vs_handshake", "registrations/s ÷ bare TLS handshakes/s"],
  ["restart_recovery_s", "SIGTERM → every executor heartbeating again (s)"],
  ["reenrollments", "executors that would have had to enroll again"],
  ["rotation_failed_requests", "failed executor requests during the rotation phase"],
  ["rotation_fleet_moved_s", "CA activation → every executor on the new CA (s)"],
  ["rss_mb", "controller RSS with every executor connected (MB)"],
  ["daemon_idle_rss_mb", "idle executor daemon RSS (MB)"],
  ["daemon_idle_cpu_pct", "idle executor daemon CPU (% of one core)"],
  ["revocation_propagation_ms_p99", "revocation through one replica → refused by the other, p99 (ms)"],
];

const CSS = `
body { font: 15px/1.45 Helvetica, Arial, sans-serif; color: #111; margin: 2em auto; max-width: 900px; padding: 0 1em; }
h1 { font-size: 1.6em; margin-bottom: 0.2em; }
h2 { font-size: 1.2em; margin-top: 2em; border-bottom: 1px solid #ccc; }
table { border-collapse: collapse; margin: 0.5em 0; }
td, th { border: 1px solid #ccc; padding: 0.2em 0.6em; text-align: left; vertical-align: top; }
td.n { text-align: right; font-variant-numeric: tabular-nums; }
code, pre { font-family: Menlo, Consolas, monospace; font-size: 0.9em; }
pre { background: #f5f5f5; padding: 0.8em; overflow-x: auto; white-space: pre-wrap; word-break: break-all; }
figure { margin: 1.5em 0; }
figure svg { max-width: 100%; height: auto; }
figcaption { color: #333; margin-top: 0.3em; }
.meta { color: #444; }
`;

function fmtValue(v: unknown): string {
  if (typeof v === "number") return Number.isFinite(v) ? v.toLocaleString("en-US", { maximumFractionDigits: 3 }) : "—";
  return String(v);
}

export function renderHtml(input: ReportInput, charts: Chart[]): string {
  const { result, meta } = input;
  const e = escapeXml;
  const rows = (list: [string, string, unknown][]) =>
    list.map(([k, what, v]) => `<tr><td><code>${e(k)}</code></td><td>${e(what)}</td><td class="n">${e(fmtValue(v))}</td></tr>`).join("\n");
  const headlines = HEADLINES.filter(([k]) => k in result).map(([k, what]) => [k, what, result[k]] as [string, string, unknown]);
  const params = Object.entries(meta.parameters).map(([k, v]) => `<tr><td><code>${e(k)}</code></td><td class="n">${e(fmtValue(v))}</td></tr>`).join("\n");
  const figures = charts
    .map((c) => `<figure>\n${c.svg.replace(/^<\?xml[^>]*>\s*/, "")}<figcaption><strong>${e(c.title)}</strong> (<code>${e(c.name)}.svg</code>). ${e(c.caption)}</figcaption>\n</figure>`)
    .join("\n");
  return `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8"/>
<meta name="viewport" content="width=device-width, initial-scale=1"/>
<title>Tether benchmark, ${e(meta.date)}</title>
<style>${CSS}</style>
</head>
<body>
<h1>Tether benchmark</h1>
<p class="meta">Run started ${e(meta.date)}${meta.tree ? `, tree ${e(meta.tree)}` : ""}.<br/>
<code>npm run bench -- ${e(meta.command)}</code><br/>
${e(meta.machine)}</p>
<h2>Headline figures</h2>
<table>
<tr><th>key</th><th>what</th><th>value</th></tr>
${headlines.length ? rows(headlines) : `<tr><td colspan="3">none in this run</td></tr>`}
</table>
<h2>Charts</h2>
${charts.length ? figures : "<p>No phase with a chart ran.</p>"}
<h2>Parameters</h2>
<table>
<tr><th>parameter</th><th>value</th></tr>
${params}
</table>
<h2>Every figure of the run</h2>
<details><summary>bench.json (the <code>--json</code> line)</summary>
<pre>${e(JSON.stringify(result, null, 1))}</pre>
</details>
</body>
</html>
`;
}

function writeAtomic(path: string, text: string): void {
  const tmp = `${path}.tmp-${process.pid}`;
  writeFileSync(tmp, text);
  renameSync(tmp, path);
}

/** Writes the report into `dir` (made if missing); returns the files written, index.html first. */
export function writeReport(dir: string, input: ReportInput): string[] {
  mkdirSync(dir, { recursive: true });
  const charts = buildCharts(input.series, input.result);
  const files: string[] = [];
  const put = (name: string, text: string) => {
    writeAtomic(join(dir, name), text);
    files.push(join(dir, name));
  };
  put("index.html", renderHtml(input, charts));
  for (const c of charts) put(`${c.name}.svg`, `<?xml version="1.0" encoding="UTF-8"?>\n${c.svg}`);
  put("bench.json", JSON.stringify(input.result) + "\n");
  put("series.json", JSON.stringify({ meta: input.meta, series: input.series }) + "\n");
  return files;
}

/** The page's header: when, with what arguments (store URLs without their password), on what machine, at which commit. */
export function runMeta(startedMs: number, argv: string[], parameters: RunMeta["parameters"]): RunMeta {
  const root = fileURLToPath(new URL("..", import.meta.url));
  const git = (args: string[]) => {
    const r = spawnSync("git", args, { cwd: root, encoding: "utf8" });
    return r.status === 0 ? r.stdout.trim() : "";
  };
  const head = git(["rev-parse", "--short=12", "HEAD"]);
  const changed = head !== "" && git(["status", "--porcelain", "--untracked-files=no"]) !== "";
  const c = cpus();
  return {
    date: new Date(startedMs).toISOString(),
    command: argv.map((a) => a.replace(/postgres(ql)?:\/\/\S+/g, (u) => redactStoreUrl(u))).join(" "),
    machine: `${c.length} × ${c[0]?.model ?? "?"}, ${(totalmem() / 2 ** 30).toFixed(1)} GiB, Linux ${release()}, Node ${process.version}`,
    parameters,
    ...(head ? { tree: `${head}${changed ? " + uncommitted changes" : ""}` } : {}),
  };
}

// `node --import tsx bench/report.ts DIR`: draw again from a run's saved data.
if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const dir = process.argv[2];
  if (!dir || dir.startsWith("-")) {
    process.stderr.write("usage: node --import tsx bench/report.ts DIR   (DIR written by npm run bench -- --report DIR)\n");
    process.exit(2);
  }
  const result = JSON.parse(readFileSync(join(dir, "bench.json"), "utf8")) as Record<string, unknown>;
  const { meta, series } = JSON.parse(readFileSync(join(dir, "series.json"), "utf8")) as { meta: RunMeta; series: RunSeries };
  for (const f of writeReport(dir, { result, series, meta })) process.stderr.write(`${f}\n`);
}
