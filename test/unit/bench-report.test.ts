/**
 * The bench report (`npm run bench -- --report DIR`, bench/report.ts): every chart is a
 * well-formed standalone SVG with its axis labels, the page is self-contained (nothing to
 * fetch, no script), text is escaped, and a phase that recorded nothing still draws its
 * axes with a note instead of NaN coordinates. Also the series recorders themselves.
 */
import { describe, expect, it } from "vitest";
import { spawnSync } from "node:child_process";
import { readFileSync, rmSync, statSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { logHistogram, mergeTimelines, Timeline, timelineTotal, type RunSeries } from "../../bench/report-series.ts";
import { renderChart } from "../../bench/report-svg.ts";
import { writeReport, type RunMeta } from "../../bench/report.ts";
import { tempDir } from "../support/temp-dir.ts";
import { xmlProblem, type Element } from "../support/well-formed-xml.ts";

const ROOT = fileURLToPath(new URL("../..", import.meta.url));
const SVG_NS = "http://www.w3.org/2000/svg";
const T0 = 1_700_000_000_000;

const meta: RunMeta = {
  date: "2025-01-02T03:04:05.000Z",
  command: "--executors 300 --report /tmp/x",
  machine: "2 × test CPU, 1.0 GiB, Linux test, Node v20",
  parameters: { executors: 300, store: "sqlite", "rotation phase": true },
  tree: "0123456789ab",
};

/** Deterministic pseudo-random latencies: a body around 1 ms and a tail. */
function latencies(n: number, scale: number): Float64Array {
  const a = new Float64Array(n);
  let x = 12345;
  for (let i = 0; i < n; i++) {
    x = (x * 1103515245 + 12345) % 2 ** 31;
    const u = x / 2 ** 31;
    a[i] = scale * (0.3 + u * 1.5 + (u > 0.99 ? 40 * (u - 0.99) * 100 : 0));
  }
  return a.sort();
}

function fullSeries(): { series: RunSeries; result: Record<string, unknown> } {
  const reg = new Timeline(100, T0);
  for (let k = 0; k < 300; k++) reg.add("handshake", T0 + k * 2);
  for (let k = 0; k < 300; k++) reg.add("registration", T0 + 700 + k * 6);
  for (let k = 0; k < 500; k++) reg.add("registration (rest)", T0 + 2600 + k * 5);
  const stormFailures = new Timeline(100, T0);
  for (let k = 0; k < 400; k++) stormFailures.add(k % 3 ? "ECONNREFUSED" : "CONNECT_TIMEOUT", T0 + 100 + k * 3);
  const rot = new Timeline(100, T0);
  for (let k = 0; k < 6000; k++) rot.add("ok:heartbeat", T0 + k * 10);
  for (let k = 0; k < 300; k++) rot.add("ok:bundle", T0 + 20_000 + k);
  for (let k = 0; k < 300; k++) rot.add("ok:certificate renewal", T0 + 30_000 + k * 30);
  for (let k = 0; k < 3; k++) rot.add("failed:TIMEOUT", T0 + 31_000 + k * 400);
  const hb = latencies(5000, 1.2);
  const bare = latencies(2500, 0.8);
  return {
    series: {
      latency: { heartbeat: logHistogram(hb), bare: logHistogram(bare) },
      registration: { startMs: T0, completions: reg.toJSON() },
      storm: {
        termMs: T0, armed: 300, exitS: 0.1, listeningS: 1.2,
        recoveredS: Array.from({ length: 300 }, (_, k) => 1.3 + k * 0.007), failures: stormFailures.toJSON(),
      },
      rotation: {
        startMs: T0,
        outcomes: rot.toJSON(),
        steps: [
          { label: "JWT key rotated", atMs: T0 + 19_000 }, { label: "CA prepared", atMs: T0 + 19_900 },
          { label: "CA activated", atMs: T0 + 20_500 }, { label: "every executor on the new CA", atMs: T0 + 39_000 },
          { label: "never happened", atMs: 0 },
        ],
        unanswered: 0,
      },
    },
    result: {
      executors: 300, heartbeat_offered_per_s: 1000, heartbeat_p50_ms: 1.3, heartbeat_p99_ms: 7.1, heartbeat_p999_ms: 20, bare_p50_ms: 0.9, bare_p99_ms: 2,
      registrations_measured: 300, registration_concurrency: 16, registrations_per_s: 161, handshakes_per_s: 710, registration_ratio_vs_handshake: 0.227,
      restart_recovery_s: 3.4, reenrollments: 0, rotation_failed_requests: 3, rotation_requests: 6603, rotation_fleet_moved_s: 18.5,
      heartbeat_ratio_vs_bare_tls: 0.61, store: "sqlite",
    },
  };
}

/** Every check a chart file must pass; returns the elements for further checks. */
function checkSvg(svg: string): Element[] {
  const elements: Element[] = [];
  expect(xmlProblem(svg, { onElement: (e) => elements.push(e) })).toBeNull();
  expect(elements[0]!.name).toBe("svg");
  expect(elements[0]!.attributes.xmlns).toBe(SVG_NS);
  expect(svg).toContain("<title>");
  checkSelfContained(svg);
  // Coordinates and labels are numbers or "—", never NaN/Infinity.
  expect(svg).not.toMatch(/NaN|Infinity/);
  return elements;
}

/** Nothing that loads, runs or links: the only URL is the SVG namespace name. */
function checkSelfContained(text: string): void {
  expect(text.replaceAll(SVG_NS, "")).not.toMatch(/(https?|ftp|file|data):/i);
  expect(text).not.toMatch(/<script|\bhref=|\bsrc=|url\(|@import|\bon[a-z]+=/i);
}

describe("bench report", () => {
  it("writes index.html, one well-formed SVG per chart with its axis labels, bench.json and series.json", () => {
    const dir = join(tempDir(), "report");
    const { series, result } = fullSeries();
    const files = writeReport(dir, { result, series, meta });
    const names = ["latency-cdf", "latency-tail", "latency-histogram", "registrations", "restart-storm", "rotation"];
    expect(files.map((f) => f.slice(dir.length + 1))).toEqual(["index.html", ...names.map((n) => `${n}.svg`), "bench.json", "series.json"]);
    const labels: Record<string, string[]> = {
      "latency-cdf": ["latency (ms, log scale)", "answered within x (% of requests)", "heartbeat (full guard chain)", "bare route", "p99 7.1 ms", "p50 0.9 ms"],
      "latency-tail": ["latency (ms, log scale)", "nines scale", "p99.9 20 ms", ">99.9<"],
      "latency-histogram": ["latency (ms, log scale)", "% per bin"],
      registrations: ["time since the first timed handshake (s)", "completed per second", "bare TLS handshakes (timed)", "registrations (rest of the fleet, untimed)"],
      "restart-storm": ["time since SIGTERM (s)", "executors heartbeating again", "failed attempts per second", "failed: ECONNREFUSED", "new process listening", "300 executors"],
      rotation: ["time since the phase started (s)", "answered (2xx) per second", "failed per second", "failed: TIMEOUT", "CA activated", "heartbeats"],
    };
    for (const n of names) {
      const svg = readFileSync(join(dir, `${n}.svg`), "utf8");
      expect(svg.startsWith('<?xml version="1.0" encoding="UTF-8"?>'), n).toBe(true);
      const elements = checkSvg(svg);
      expect(elements.filter((e) => e.name === "path" || e.name === "circle").length, n).toBeGreaterThan(0);
      for (const l of labels[n]!) expect(svg, `${n}: ${l}`).toContain(l);
    }
    // A step that did not happen is not drawn.
    expect(readFileSync(join(dir, "rotation.svg"), "utf8")).not.toContain("never happened");

    const html = readFileSync(join(dir, "index.html"), "utf8");
    expect(xmlProblem(html, { doctype: true })).toBeNull();
    checkSelfContained(html);
    expect(html).toContain("<style>");
    expect(html).toContain(meta.date);
    expect(html).toContain("--executors 300 --report /tmp/x");
    expect(html).toContain("heartbeat_ratio_vs_bare_tls");
    for (const n of names) expect(html).toContain(`${n}.svg`);
    expect(html.match(/<svg /g)?.length).toBe(names.length);
    expect(JSON.parse(readFileSync(join(dir, "bench.json"), "utf8"))).toEqual(result);
    expect(JSON.parse(readFileSync(join(dir, "series.json"), "utf8")).meta).toEqual(meta);
  });

  it("draws every chart with its axes and a note when a phase recorded nothing", () => {
    const dir = join(tempDir(), "report");
    const empty = { originMs: T0, bucketMs: 100, counts: {} };
    const series: RunSeries = {
      latency: { heartbeat: logHistogram([]), bare: logHistogram([]) },
      registration: { startMs: T0, completions: empty },
      storm: { termMs: T0, armed: 10, exitS: 0.1, listeningS: 1, recoveredS: [], failures: empty },
      rotation: { startMs: T0, outcomes: empty, steps: [], unanswered: 4 },
    };
    writeReport(dir, { result: {}, series, meta });
    const notes: Record<string, string> = {
      "latency-cdf": "no latency samples", "latency-tail": "no latency samples", "latency-histogram": "no latency samples",
      registrations: "no registrations or handshakes completed", "restart-storm": "no executor recovered", rotation: "no request answered",
    };
    for (const [n, note] of Object.entries(notes)) {
      const svg = readFileSync(join(dir, `${n}.svg`), "utf8");
      checkSvg(svg);
      expect(svg, n).toContain(note);
      expect(svg, n).toContain("<text"); // axes and ticks are there
    }
    expect(readFileSync(join(dir, "restart-storm.svg"), "utf8")).toContain("no failed reconnect attempts");
    expect(readFileSync(join(dir, "rotation.svg"), "utf8")).toContain("4 still unanswered");
    expect(xmlProblem(readFileSync(join(dir, "index.html"), "utf8"), { doctype: true })).toBeNull();
  });

  it("leaves out the charts of phases that did not run", () => {
    const dir = join(tempDir(), "report");
    const files = writeReport(dir, { result: { executors: 1 }, series: {}, meta });
    expect(files.map((f) => f.slice(dir.length + 1))).toEqual(["index.html", "bench.json", "series.json"]);
    const html = readFileSync(join(dir, "index.html"), "utf8");
    expect(html).toContain("No phase with a chart ran.");
    expect(xmlProblem(html, { doctype: true })).toBeNull();
  });

  it("escapes text: an error code or title with <, & and quotes stays text", () => {
    const svg = renderChart({
      title: `a <b> & "c" 'd'`,
      x: { label: "x & y (s)" },
      panels: [{ y: { label: "<y>" }, series: [{ name: `failed: </text><script>"&`, points: [[0, 1], [1, 2]] }] }],
      events: [{ x: 0.5, label: "<&>" }],
    });
    checkSvg(svg);
    expect(svg).toContain("a &lt;b&gt; &amp; &quot;c&quot; &apos;d&apos;");
    expect(svg).toContain("failed: &lt;/text&gt;&lt;script&gt;&quot;&amp;");
    const html = readFileSync(
      writeReport(join(tempDir(), "report"), { result: { "k<&>": "<script>" }, series: {}, meta: { ...meta, command: `--x "<&>"` } })[0]!, "utf8",
    );
    expect(xmlProblem(html, { doctype: true })).toBeNull();
    checkSelfContained(html);
  });

  it("the checker itself refuses what is not well-formed", () => {
    expect(xmlProblem(`<svg xmlns="${SVG_NS}"><text>a & b</text></svg>`)).toMatch(/raw &/);
    expect(xmlProblem(`<svg><g></svg>`)).toMatch(/closes/);
    expect(xmlProblem(`<svg a="1" a="2"/>`)).toMatch(/duplicate/);
    expect(xmlProblem(`<svg a=1/>`)).toMatch(/not quoted/);
    expect(xmlProblem(`<svg/><svg/>`)).toMatch(/second root/);
    expect(xmlProblem(`<svg><g>`)).toMatch(/unclosed/);
    expect(xmlProblem(`<svg x="<"/>`)).toMatch(/< in attribute/);
    expect(xmlProblem(`<svg><text>&lt;&#60;&#x3c;</text></svg>`)).toBeNull();
  });

  it("node --import tsx bench/report.ts DIR draws the charts again from bench.json and series.json", () => {
    const dir = join(tempDir(), "report");
    const { series, result } = fullSeries();
    writeReport(dir, { result, series, meta });
    const before = readFileSync(join(dir, "restart-storm.svg"), "utf8");
    rmSync(join(dir, "restart-storm.svg"));
    rmSync(join(dir, "index.html"));
    const r = spawnSync(process.execPath, ["--import", "tsx", "bench/report.ts", dir], { cwd: ROOT, encoding: "utf8" });
    expect(r.status, r.stderr).toBe(0);
    expect(readFileSync(join(dir, "restart-storm.svg"), "utf8")).toBe(before);
    expect(statSync(join(dir, "index.html")).size).toBeGreaterThan(1000);
  });
});

describe("report series", () => {
  it("Timeline counts per bucket; timelines of different threads line up when merged", () => {
    const a = new Timeline(100, T0 + 30);
    const b = new Timeline(100, T0 + 250);
    a.add("ok", T0 + 50);
    a.add("ok", T0 + 99);
    a.add("ok", T0 + 100);
    a.add("ok", T0 + 100 + 100 * 1000); // grows past the first allocation
    b.add("ok", T0 + 250);
    b.add("failed:X", T0 + 399);
    const m = mergeTimelines([a.toJSON(), undefined, b.toJSON()]);
    expect(m.originMs).toBe(T0);
    expect(m.counts.ok!.slice(0, 4)).toEqual([2, 1, 1, 0]);
    expect(m.counts.ok![1001]).toBe(1);
    expect(m.counts["failed:X"]).toEqual([0, 0, 0, 1]);
    expect(timelineTotal(m)).toBe(6);
    expect(timelineTotal(m, "ok")).toBe(5);
    expect(() => mergeTimelines([a.toJSON(), new Timeline(250, T0).toJSON()])).toThrow(/bucket/);
  });

  it("Timeline keeps at most 24 kinds, counting the rest as other", () => {
    const t = new Timeline(100, T0);
    for (let k = 0; k < 30; k++) t.add(`failed:${k}`, T0);
    const kinds = Object.keys(t.toJSON().counts);
    expect(kinds.length).toBe(25);
    expect(t.toJSON().counts.other).toEqual([6]);
  });

  it("logHistogram keeps every sample, the extremes exactly, and bins 2.3 % wide", () => {
    const s = Float64Array.from({ length: 1000 }, (_, i) => i + 1); // 1 … 1000 ms
    const h = logHistogram(s);
    expect(h.samples).toBe(1000);
    expect(h.lowestMs).toBe(1);
    expect(h.highestMs).toBe(1000);
    // The bin holding the median (500 ms) spans [≈ 490, ≈ 501] ms.
    let cum = 0;
    let i = 0;
    for (; cum < 500; i++) cum += h.counts[i]!;
    const upper = h.minMs * 10 ** (i / h.perDecade);
    expect(upper).toBeGreaterThanOrEqual(500);
    expect(upper).toBeLessThan(500 * 1.047);
    const e = logHistogram([]);
    expect(e.samples).toBe(0);
    expect(Number.isNaN(e.lowestMs)).toBe(true);
  });
});
