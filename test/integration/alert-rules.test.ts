/**
 * docs/examples/alerts.yml (issue 13): the alerting rules operators load must load, and
 * must fire when they should.
 *
 * - Always: the YAML parses (the `yaml` package), every rule has what Prometheus and the
 *   docs need (expr, for, labels.severity, summary/description/runbook_url with a section
 *   in docs/observability.md), every expression parses with Prometheus' own PromQL grammar
 *   (@prometheus-io/lezer-promql) and uses only the metrics of PROTOCOL §9.1 (or `up`),
 *   with their labels. A broken copy is reported (proof that the check checks).
 * - With promtool (installed by .ci/run from Debian's `prometheus` package): `promtool
 *   check rules`, a broken copy refused, and `promtool test rules` driving every alert with
 *   input series so the joins, thresholds and `for` durations are tested, not just parsed.
 */
import { describe, expect, it } from "vitest";
import { spawnSync } from "node:child_process";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { parseDocument, stringify } from "yaml";
import { parser } from "@prometheus-io/lezer-promql";
import { tempDir } from "../support/temp-dir.ts";

const RULES = fileURLToPath(new URL("../../docs/examples/alerts.yml", import.meta.url));
const DOC = fileURLToPath(new URL("../../docs/observability.md", import.meta.url));
const promtool = spawnSync("sh", ["-c", "command -v promtool"]).status === 0;

/** PROTOCOL §9.1: every metric and its labels (`le` of the histogram added below). */
const METRICS: Record<string, string[]> = {
  tether_executors: ["status"],
  tether_http_requests_total: ["route", "code"],
  tether_http_request_duration_seconds: ["route"],
  tether_guard_rejections_total: ["code"],
  tether_registrations_total: ["result"],
  tether_certificates_issued_total: ["profile"],
  tether_ca_expiry_timestamp_seconds: ["fingerprint", "state"],
  tether_trust_bundle_version: [],
  tether_ca_adoption_pending: [],
  tether_nonces_stored: [],
  tether_tasks: ["status"],
  tether_lease_reclaims_total: [],
  tether_store_errors_total: [],
  tether_executor_ready: [],
  tether_executor_cert_expiry_timestamp_seconds: [],
  tether_executor_jwt_expiry_timestamp_seconds: [],
  tether_executor_renewals_total: ["kind", "result"],
  tether_executor_heartbeat_failures_total: ["code"],
  tether_executor_tasks_total: ["result"],
};
const HISTOGRAM = "tether_http_request_duration_seconds";
/** Label values fixed by the contract (liveness §3.3, task statuses §5, CA states §7.1, guard codes §3.2 and §5). */
const VALUES: Record<string, Record<string, string[]>> = {
  tether_executors: { status: ["ready", "draining", "suspect", "offline", "revoked"] },
  tether_tasks: { status: ["queued", "leased", "succeeded", "failed", "cancelled"] },
  tether_ca_expiry_timestamp_seconds: { state: ["prepared", "active", "retired"] },
  tether_guard_rejections_total: {
    code: ["CERT_REQUIRED", "IDENTITY_MISMATCH", "CERT_REVOKED", "TOKEN_INVALID", "TOKEN_EXPIRED", "EPOCH_MISMATCH", "CLOCK_SKEW", "SIGNATURE_INVALID", "NONCE_REPLAY",
      "UNAUTHENTICATED", "FORBIDDEN"],
  },
};
const TARGET_LABELS = ["job", "instance"];
const RULE_KEYS = new Set(["alert", "expr", "for", "keep_firing_for", "labels", "annotations"]);
const GROUP_KEYS = new Set(["name", "interval", "limit", "rules"]);
const DURATION = /^(\d+y)?(\d+w)?(\d+d)?(\d+h)?(\d+m)?(\d+s)?(\d+ms)?$/;

/** Which §9.1 metric a selector names (histogram series carry a suffix), or undefined. */
function metricOf(name: string): string | undefined {
  if (name in METRICS) return name;
  for (const suffix of ["_bucket", "_sum", "_count"]) if (name === HISTOGRAM + suffix) return HISTOGRAM;
  return undefined;
}

/** Problems of one PromQL expression: syntax errors, unknown metrics, labels or label values. */
function exprProblems(expr: string): string[] {
  const out: string[] = [];
  const tree = parser.parse(expr);
  tree.iterate({
    enter(n) {
      if (n.type.isError) out.push(`syntax error at ${n.from}: …${expr.slice(Math.max(0, n.from - 20), n.from + 20)}…`);
      if (n.name !== "VectorSelector") return;
      const id = n.node.getChild("Identifier");
      const name = id ? expr.slice(id.from, id.to) : "";
      if (name === "up") return;
      const metric = metricOf(name);
      if (!metric) return void out.push(`unknown metric ${JSON.stringify(name)} (not in PROTOCOL §9.1)`);
      const allowed = [...METRICS[metric]!, ...TARGET_LABELS, ...(name.endsWith("_bucket") ? ["le"] : [])];
      for (const m of n.node.getChild("LabelMatchers")?.getChildren("UnquotedLabelMatcher") ?? []) {
        const label = expr.slice(m.getChild("LabelName")!.from, m.getChild("LabelName")!.to);
        const op = expr.slice(m.getChild("MatchOp")!.from, m.getChild("MatchOp")!.to);
        const lit = m.getChild("StringLiteral");
        const value = lit ? expr.slice(lit.from + 1, lit.to - 1) : ""; // the quotes off; escapes never name a label value here
        if (!allowed.includes(label)) out.push(`${name} has no label ${label}`);
        const known = VALUES[metric]?.[label];
        // `=` and simple alternations under `=~` must name values the contract defines.
        const named = op === "=" || op === "!=" ? [value] : /^[A-Za-z_|]+$/.test(value) ? value.split("|") : [];
        if (known) for (const v of named) if (!known.includes(v)) out.push(`${name}{${label}} has no value ${JSON.stringify(v)}`);
      }
    },
  });
  return out;
}

interface Rule { alert?: string; expr?: unknown; for?: unknown; labels?: Record<string, unknown>; annotations?: Record<string, unknown>; [k: string]: unknown }

/** GitHub's heading anchors in docs/observability.md. */
function anchors(markdown: string): Set<string> {
  const slug = (h: string) => h.trim().toLowerCase().replace(/[^\p{L}\p{N}\s_-]/gu, "").replace(/\s/g, "-");
  return new Set([...markdown.matchAll(/^#{1,6}\s+(.+)$/gm)].map((m) => slug(m[1]!)));
}

/** Every problem of a rules file, each naming its rule: what the check without promtool reports. */
function lintRules(text: string, doc: string): string[] {
  const parsed = parseDocument(text, { uniqueKeys: true });
  if (parsed.errors.length) return parsed.errors.map((e) => `YAML: ${e.message}`);
  const root = parsed.toJS() as { groups?: { name?: string; rules?: Rule[]; [k: string]: unknown }[] };
  if (!Array.isArray(root?.groups) || root.groups.length === 0) return ["no groups"];
  const out: string[] = [];
  const docAnchors = anchors(doc);
  const names = new Set<string>();
  for (const g of root.groups) {
    for (const k of Object.keys(g)) if (!GROUP_KEYS.has(k)) out.push(`group ${g.name}: unknown field ${k}`);
    if (!g.name || !Array.isArray(g.rules) || g.rules.length === 0) out.push(`group ${g.name ?? "?"}: needs a name and rules`);
    for (const r of g.rules ?? []) {
      const at = `rule ${r.alert ?? "?"}`;
      for (const k of Object.keys(r)) if (!RULE_KEYS.has(k)) out.push(`${at}: unknown field ${k}`);
      if (typeof r.alert !== "string" || !/^[A-Za-z_][A-Za-z0-9_]*$/.test(r.alert)) out.push(`${at}: alert name missing or invalid`);
      else if (names.has(r.alert)) out.push(`${at}: alert name used twice`);
      else names.add(r.alert);
      if (typeof r.expr !== "string" || !r.expr.trim()) out.push(`${at}: no expr`);
      else out.push(...exprProblems(r.expr).map((p) => `${at}: ${p}`));
      if (typeof r.for !== "string" || !r.for || !DURATION.test(r.for)) out.push(`${at}: for must be a duration`);
      if (!["critical", "warning", "info"].includes(String(r.labels?.severity))) out.push(`${at}: labels.severity must be critical, warning or info`);
      for (const a of ["summary", "description", "runbook_url"]) if (typeof r.annotations?.[a] !== "string") out.push(`${at}: no annotations.${a}`);
      const anchor = String(r.annotations?.runbook_url ?? "").match(/^docs\/observability\.md#(.+)$/)?.[1];
      if (!anchor || !docAnchors.has(anchor)) out.push(`${at}: runbook_url ${String(r.annotations?.runbook_url)} names no section of docs/observability.md`);
    }
  }
  return out;
}

const rulesText = readFileSync(RULES, "utf8");
const docText = readFileSync(DOC, "utf8");
const alertNames = (text: string) => [...text.matchAll(/^\s*- alert: (\w+)$/gm)].map((m) => m[1]!);
/** The file with one expression broken (a parenthesis dropped). */
const broken = rulesText.replace("rate(tether_store_errors_total[5m])", "rate(tether_store_errors_total[5m]");

describe("docs/examples/alerts.yml without promtool (YAML + PromQL parse)", () => {
  it("has no problems", () => {
    expect(lintRules(rulesText, docText)).toEqual([]);
    expect(alertNames(rulesText).length).toBeGreaterThanOrEqual(15);
  });

  it("reports a broken expression, an unknown metric or label value, a missing field", () => {
    expect(broken).not.toBe(rulesText);
    expect(lintRules(broken, docText)).toEqual([expect.stringMatching(/^rule TetherStoreErrors: syntax error/)]);
    const typo = rulesText.replace("tether_executor_cert_expiry_timestamp_seconds - time() < 3600", "tether_executor_cert_expiry_seconds - time() < 3600");
    expect(lintRules(typo, docText)).toEqual([expect.stringContaining('rule TetherExecutorCertExpiryImminent: unknown metric "tether_executor_cert_expiry_seconds"')]);
    const value = rulesText.replace('tether_executors{status="ready"}) == 0', 'tether_executors{status="online"}) == 0');
    expect(lintRules(value, docText)).toEqual([expect.stringContaining('TetherTasksQueuedNoReadyExecutor: tether_executors{status} has no value "online"')]);
    const noFor = rulesText.replace(/(- alert: TetherCAAdoptionPending[\s\S]*?)\n\s+for: 30m/, "$1");
    expect(lintRules(noFor, docText)).toEqual(["rule TetherCAAdoptionPending: for must be a duration"]);
    expect(lintRules(rulesText, docText.replace("### TetherNonceStoreGrowing", "### Nonces"))).toEqual([
      expect.stringContaining("rule TetherNonceStoreGrowing: runbook_url docs/observability.md#tethernoncestoregrowing names no section"),
    ]);
    expect(lintRules("groups:\n  - name: a\n    name: b\n", docText)[0]).toMatch(/^YAML: /);
  });

  it("docs/observability.md describes every metric of PROTOCOL §9.1, and its links lead somewhere", () => {
    for (const m of Object.keys(METRICS)) expect(docText, m).toContain(`\`${m}\``);
    const dead: string[] = [];
    for (const [, target] of docText.matchAll(/\]\(([^)\s]+)\)/g)) {
      if (/^[a-z]+:/.test(target!)) continue;
      const [file, anchor] = target!.split("#") as [string, string | undefined];
      const path = file ? resolve(dirname(DOC), file) : DOC;
      if (!existsSync(path)) dead.push(target!);
      else if (anchor && !anchors(readFileSync(path, "utf8")).has(anchor)) dead.push(target!);
    }
    expect(dead).toEqual([]);
  });
});

// ---- promtool ----------------------------------------------------------------------

const C = { job: "tether-controller", instance: "ctl-a:9464" };
const C2 = { ...C, instance: "ctl-b:9464" };
const E = { job: "tether-executor", instance: "h1:9465" };
const HB = "/v1/executors/:id/heartbeat";
type Labels = Record<string, string>;
const series = (name: string, labels: Labels, values: string) => ({
  series: `${name}{${Object.entries(labels).map(([k, v]) => `${k}=${JSON.stringify(v)}`).join(",")}}`,
  values,
});
const job = (l: Labels) => ({ job: l.job! });
interface Case { name: string; series: { series: string; values: string }[]; evals: { at: string; alert: string; expect: Labels[] }[] }

/** Input series and what must fire (exactly: labels of every alert, severity included). */
const CASES: Case[] = [
  { name: "one replica down; all down", series: [series("up", C, "1 1 0x10"), series("up", C2, "1x6 0x4")], evals: [
    { at: "6m", alert: "TetherControllerDown", expect: [{ ...C, severity: "warning" }] },
    { at: "6m", alert: "TetherControllerAllDown", expect: [] },
    { at: "10m", alert: "TetherControllerAllDown", expect: [{ ...job(C), severity: "critical" }] }] },
  { name: "no controller target at all", series: [series("up", E, "1x5")], evals: [
    { at: "3m", alert: "TetherControllerAllDown", expect: [{ ...job(C), severity: "critical" }] }] },
  { name: "store errors", series: [series("tether_store_errors_total", C, "0+5x20")], evals: [
    { at: "15m", alert: "TetherStoreErrors", expect: [{ ...C, severity: "critical" }] }] },
  { name: "5xx ratio", series: [series("tether_http_requests_total", { ...C, route: HB, code: "200" }, "0+600x30"),
    series("tether_http_requests_total", { ...C, route: HB, code: "503" }, "0+60x30")], evals: [
    { at: "20m", alert: "TetherHighServerErrorRate", expect: [{ ...C, severity: "warning" }] }] },
  { name: "slow heartbeats, long poll left out", series: ["0.1", "1", "5", "+Inf"].flatMap((le) => [
    series("tether_http_request_duration_seconds_bucket", { ...C, route: HB, le }, le === "0.1" || le === "1" ? "0x30" : "0+60x30"),
    series("tether_http_request_duration_seconds_bucket", { ...C, route: "/v1/executors/:id/leases", le }, le === "0.1" || le === "1" ? "0x30" : "0+60x30")]), evals: [
    { at: "25m", alert: "TetherSlowRequests", expect: [{ ...C, route: HB, severity: "warning" }] }] },
  { name: "guard rejections: 10 % CLOCK_SKEW, a few TOKEN_EXPIRED, SIGNATURE_INVALID, operators UNAUTHENTICATED", series: [
    series("tether_http_requests_total", { ...C, route: HB, code: "200" }, "0+600x30"),
    series("tether_guard_rejections_total", { ...C, code: "CLOCK_SKEW" }, "0+60x30"),
    series("tether_guard_rejections_total", { ...C, code: "TOKEN_EXPIRED" }, "0+1x30"),
    series("tether_guard_rejections_total", { ...C2, code: "SIGNATURE_INVALID" }, "0+1x30"),
    series("tether_guard_rejections_total", { ...C, code: "UNAUTHENTICATED" }, "0+120x30")], evals: [
    { at: "25m", alert: "TetherGuardRejectionsHigh", expect: [{ ...job(C), code: "CLOCK_SKEW", severity: "warning" }] },
    { at: "25m", alert: "TetherGuardRejectionsSuspicious", expect: [{ ...job(C), code: "SIGNATURE_INVALID", severity: "warning" }] },
    { at: "25m", alert: "TetherOperatorAuthFailures", expect: [{ ...job(C), severity: "warning" }] }] },
  { name: "registrations denied", series: [series("tether_registrations_total", { ...C, result: "denied" }, "0+2x30"),
    series("tether_registrations_total", { ...C, result: "success" }, "0+100x30")], evals: [
    { at: "20m", alert: "TetherRegistrationsDenied", expect: [{ ...job(C), severity: "warning" }] }] },
  { name: "reclaims", series: [series("tether_lease_reclaims_total", C, "0+2x30")], evals: [
    { at: "25m", alert: "TetherLeaseReclaimsHigh", expect: [{ ...job(C), severity: "warning" }] }] },
  { name: "queued work, no ready executor (two replicas)", series: [C, C2].flatMap((r) => [
    series("tether_tasks", { ...r, status: "queued" }, "3x30"), series("tether_executors", { ...r, status: "ready" }, "0x30")]), evals: [
    { at: "15m", alert: "TetherTasksQueuedNoReadyExecutor", expect: [{ ...job(C), severity: "warning" }] }] },
  { name: "queued work, executors ready", series: [series("tether_tasks", { ...C, status: "queued" }, "3x30"),
    series("tether_executors", { ...C, status: "ready" }, "2x30")], evals: [
    { at: "15m", alert: "TetherTasksQueuedNoReadyExecutor", expect: [] }] },
  { name: "ready executors drop from 100 to 80", series: [series("tether_executors", { ...C, status: "ready" }, "100x70 80x30")], evals: [
    { at: "70m", alert: "TetherReadyExecutorsDropped", expect: [] },
    { at: "90m", alert: "TetherReadyExecutorsDropped", expect: [{ ...job(C), severity: "warning" }] }] },
  { name: "active CA with 20 days left", series: [
    series("tether_ca_expiry_timestamp_seconds", { ...C, fingerprint: "SHA256:AA", state: "active" }, `${20 * 86400}x90`),
    series("tether_ca_expiry_timestamp_seconds", { ...C, fingerprint: "SHA256:BB", state: "prepared" }, `${200 * 86400}x90`)], evals: [
    { at: "70m", alert: "TetherCAExpiringSoon", expect: [{ ...job(C), severity: "critical" }] }] },
  { name: "adoption pending while a CA is prepared", series: [series("tether_ca_adoption_pending", C, "2x60"),
    series("tether_ca_expiry_timestamp_seconds", { ...C, fingerprint: "SHA256:BB", state: "prepared" }, "40000000x60")], evals: [
    { at: "20m", alert: "TetherCAAdoptionPending", expect: [] },
    { at: "45m", alert: "TetherCAAdoptionPending", expect: [{ ...job(C), severity: "warning" }] }] },
  { name: "adoption pending without a prepared CA", series: [series("tether_ca_adoption_pending", C, "2x60"),
    series("tether_ca_expiry_timestamp_seconds", { ...C, fingerprint: "SHA256:AA", state: "active" }, "40000000x60")], evals: [
    { at: "45m", alert: "TetherCAAdoptionPending", expect: [] }] },
  { name: "replicas on different bundle versions", series: [series("tether_trust_bundle_version", C, "3x20"), series("tether_trust_bundle_version", C2, "4x20")], evals: [
    { at: "10m", alert: "TetherTrustBundleVersionSkew", expect: [{ ...job(C), severity: "warning" }] }] },
  { name: "nonces pruned (request rate × 660 s)", series: [series("tether_http_requests_total", { ...C, route: HB, code: "200" }, "0+600x80"),
    series("tether_nonces_stored", C, "6600x80")], evals: [
    { at: "70m", alert: "TetherNonceStoreGrowing", expect: [] }] },
  { name: "nonces not pruned", series: [series("tether_http_requests_total", { ...C, route: HB, code: "200" }, "0+600x80"),
    series("tether_nonces_stored", C, "0+1000x80")], evals: [
    { at: "70m", alert: "TetherNonceStoreGrowing", expect: [{ ...job(C), severity: "warning" }] }] },
  { name: "daemon down, not ready, heartbeats failing", series: [series("up", E, "0x10"), series("tether_executor_ready", E, "1 1 0x10"),
    series("tether_executor_heartbeat_failures_total", { ...E, code: "ECONNREFUSED" }, "0+6x20")], evals: [
    { at: "6m", alert: "TetherExecutorDown", expect: [{ ...E, severity: "warning" }] },
    { at: "8m", alert: "TetherExecutorNotReady", expect: [{ ...E, severity: "warning" }] },
    { at: "15m", alert: "TetherExecutorHeartbeatsFailing", expect: [{ ...E, code: "ECONNREFUSED", severity: "warning" }] }] },
  { name: "certificate renewals fail, JWT renewals recover", series: [
    series("tether_executor_renewals_total", { ...E, kind: "certificate", result: "failure" }, "0+1x40"),
    series("tether_executor_renewals_total", { ...E, kind: "certificate", result: "success" }, "5x40"),
    series("tether_executor_renewals_total", { ...E, kind: "jwt", result: "error" }, "0+1x40"),
    series("tether_executor_renewals_total", { ...E, kind: "jwt", result: "success" }, "0+1x40")], evals: [
    { at: "30m", alert: "TetherExecutorRenewalFailing", expect: [{ ...E, kind: "certificate", severity: "warning" }] }] },
  { name: "certificate expiry ahead; a daemon not enrolled (0) is left alone", series: [
    series("tether_executor_cert_expiry_timestamp_seconds", E, "15000x210"),
    series("tether_executor_cert_expiry_timestamp_seconds", { ...E, instance: "h2:9465" }, "0x210")], evals: [
    { at: "30m", alert: "TetherExecutorCertExpiringSoon", expect: [{ ...E, severity: "warning" }] },
    { at: "30m", alert: "TetherExecutorCertExpiryImminent", expect: [] },
    { at: "200m", alert: "TetherExecutorCertExpiryImminent", expect: [{ ...E, severity: "critical" }] }] },
];

const run = (args: string[], cwd?: string) => spawnSync("promtool", args, { encoding: "utf8", cwd, timeout: 60_000 });

describe.skipIf(!promtool)("docs/examples/alerts.yml with promtool", () => {
  it("passes promtool check rules; a broken copy does not", () => {
    const ok = run(["check", "rules", RULES]);
    expect(ok.status, ok.stdout + ok.stderr).toBe(0);
    expect(ok.stdout).toContain(`SUCCESS: ${alertNames(rulesText).length} rules found`);
    const path = join(tempDir("tether-alerts-"), "broken.yml");
    writeFileSync(path, broken);
    const bad = run(["check", "rules", path]);
    expect(bad.status).not.toBe(0);
    expect(bad.stdout + bad.stderr).toMatch(/FAILED|parse error|unclosed/i);
  });

  it("fires every alert on input series as docs/observability.md says (promtool test rules)", () => {
    const covered = new Set(CASES.flatMap((c) => c.evals.filter((e) => e.expect.length).map((e) => e.alert)));
    expect([...covered].sort()).toEqual([...alertNames(rulesText)].sort());
    // Annotations are prose: leave them out so the test states what fires, with which labels.
    const dir = tempDir("tether-alerts-");
    const doc = parseDocument(rulesText).toJS() as { groups: { rules: Rule[] }[] };
    for (const g of doc.groups) for (const r of g.rules) delete r.annotations;
    writeFileSync(join(dir, "rules.yml"), stringify(doc));
    const tests = {
      rule_files: ["rules.yml"],
      evaluation_interval: "1m",
      tests: CASES.map((c) => ({
        name: c.name,
        interval: "1m",
        input_series: c.series,
        alert_rule_test: c.evals.map((e) => ({ eval_time: e.at, alertname: e.alert, exp_alerts: e.expect.map((l) => ({ exp_labels: l })) })),
      })),
    };
    writeFileSync(join(dir, "tests.yml"), stringify(tests));
    const r = run(["test", "rules", "tests.yml"], dir);
    expect(r.status, r.stdout + r.stderr).toBe(0);
    expect(r.stdout + r.stderr).toContain("SUCCESS");
  });
});
