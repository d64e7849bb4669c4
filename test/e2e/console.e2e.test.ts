/**
 * The operator console (PROTOCOL §10.2) in headless Chromium (Debian's `chromium`, driven by
 * playwright-core) against a real controller process and a real executor daemon: sign in with an
 * API token; an executor that registers after the page loaded appears without a reload (event
 * stream, or polling while it is unavailable); revoke it from the page; submit a task and watch it
 * finish with its output tail; a viewer sees no revoke button; `/api/v1` without a token answers
 * JSON 401; the CSP header is there and no script is inline. Screenshots of each page go to
 * docs/console/, and page weight and time-to-first-render into docs/console.md.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { chromium, type BrowserContext, type Page } from "playwright-core";
import { createToken, killAll, startController, startExecutor, tempDir, tether, type Controller } from "./harness.ts";
import { register } from "../support/wire.ts";
import { UI_CSP, UI_FILES } from "../../controller/http/ui-routes.ts";

const CHROMIUM = "/usr/bin/chromium";
const DOCS = fileURLToPath(new URL("../../docs/", import.meta.url));
const SHOTS = join(DOCS, "console");

let ctl: Controller;
let browser: BrowserContext;
let admin = "";
let viewer = "";
const measured: Record<string, string> = {};

async function signIn(page: Page, token: string): Promise<void> {
  await page.goto(`${ctl.url}/ui/`);
  await page.fill("#token", token);
  await page.click("#signin button[type=submit]");
  await page.locator("#who").filter({ hasText: /\((admin|operator|viewer)\)/ }).waitFor();
}

async function shot(page: Page, name: string): Promise<void> {
  await page.screenshot({ path: join(SHOTS, `${name}.png`), fullPage: true });
}

describe.skipIf(!existsSync(CHROMIUM))("operator console in a real browser", () => {
  beforeAll(async () => {
    ctl = await startController({ heartbeat: "1s" });
    const boot = tether(["admin", "bootstrap", "--data-dir", ctl.dataDir, "--name", "console-admin"]);
    expect(boot.status, boot.stderr).toBe(0);
    admin = boot.stdout.trim();
    browser = await chromium.launchPersistentContext(join(tempDir(), "chromium-profile"), {
      executablePath: CHROMIUM,
      headless: true,
      ignoreHTTPSErrors: true, // the controller's own CA
      viewport: { width: 1280, height: 800 },
      args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"],
    });
    const r = await browser.request.post(`${ctl.url}/api/v1/tokens`, {
      headers: { authorization: `Bearer ${admin}` }, data: { name: "console-viewer", role: "viewer" },
    });
    expect(r.status()).toBe(201);
    viewer = ((await r.json()) as { token: string }).token;
    mkdirSync(SHOTS, { recursive: true });
  }, 60_000);

  afterAll(async () => {
    await browser?.close();
    await killAll();
    if (Object.keys(measured).length) writeMeasurements();
  });

  it("serves /ui/ under a strict CSP with no inline script; /api/v1 without a token is JSON 401", async () => {
    const req = browser.request;
    const index = await req.get(`${ctl.url}/ui/`);
    expect(index.status()).toBe(200);
    expect(index.headers()["content-security-policy"]).toBe(UI_CSP);
    expect(index.headers()["content-type"]).toMatch(/^text\/html/);
    const html = await index.text();
    // Every <script> has a src (same origin), no inline handlers, no inline style.
    for (const tag of html.match(/<script\b[^>]*>/gi) ?? []) expect(tag).toMatch(/\bsrc="\/ui\/[a-z]+\.js"/);
    expect(html).not.toMatch(/<script\b[^>]*>\s*[^<\s]/i);
    expect(html).not.toMatch(/\son[a-z]+\s*=/i);
    expect(html).not.toMatch(/\sstyle\s*=/i);
    expect(html).not.toMatch(/https?:\/\//); // no CDN
    let bytes = 0;
    for (const f of UI_FILES) {
      const r = await req.get(`${ctl.url}/ui/${f}`);
      expect(r.status(), f).toBe(200);
      expect(r.headers()["content-security-policy"]).toBe(UI_CSP);
      const body = await r.body();
      expect(body.toString("utf8")).not.toMatch(/innerHTML|outerHTML|insertAdjacentHTML|document\.write|eval\(/);
      bytes += body.length;
    }
    measured.weight = `${bytes} bytes (${(bytes / 1024).toFixed(1)} KiB) uncompressed for ${UI_FILES.length} files: ${UI_FILES.join(", ")}`;
    expect(bytes).toBeLessThan(100_000);

    const redirect = await req.get(`${ctl.url}/ui`, { maxRedirects: 0 });
    expect(redirect.status()).toBe(301);
    expect(redirect.headers().location).toBe("/ui/");
    expect((await req.get(`${ctl.url}/ui/nope.js`)).status()).toBe(404);
    expect((await req.get(`${ctl.url}/ui/..%2fpackage.json`)).status()).toBe(404);

    for (const path of ["/api/v1/executors", "/api/v1", "/api/v1/whoami"]) {
      const r = await req.get(`${ctl.url}${path}`, { maxRedirects: 0, headers: { accept: "text/html" } });
      expect(r.status(), path).toBe(path === "/api/v1" ? 404 : 401);
      expect(r.headers()["content-type"], path).toMatch(/^application\/json/);
      expect(r.headers().location).toBeUndefined();
      expect(((await r.json()) as { error: { code: string } }).error.code).toMatch(/UNAUTHENTICATED|NOT_FOUND/);
    }
    // The same from the page itself (fetch from the console's origin, no token).
    const page = await browser.newPage();
    await page.goto(`${ctl.url}/ui/`);
    const fromPage = await page.evaluate(async () => {
      const r = await fetch("/api/v1/executors", { redirect: "manual" });
      return { status: r.status, type: r.headers.get("content-type"), body: await r.json() };
    });
    expect(fromPage.status).toBe(401);
    expect(fromPage.type).toMatch(/^application\/json/);
    await shot(page, "sign-in");
    await page.close();
  }, 60_000);

  it("admin: an executor registering after the page loaded appears without a reload; revoke it from the page", async () => {
    const page = await browser.newPage();
    const violations: string[] = [];
    page.on("console", (m) => {
      if (/Content.Security.Policy|Refused to/i.test(m.text())) violations.push(m.text());
    });
    page.on("dialog", (d) => void d.accept());
    await signIn(page, admin);
    await page.locator("#page-fleet table").waitFor();
    const loads = await page.evaluate(() => performance.getEntriesByType("navigation").length);

    const enrolled = await register(ctl.url, readFileSync(ctl.caFile, "utf8"), createToken(ctl.dataDir), { name: "late-joiner", labels: { pool: "console" } });
    const row = page.locator(`tr[data-executor-id="${enrolled.id}"]`);
    await row.waitFor({ timeout: 10_000 });
    await expect.poll(() => row.locator("td").first().textContent()).toBe("late-joiner");
    expect(await page.evaluate(() => performance.getEntriesByType("navigation").length)).toBe(loads); // no reload
    await shot(page, "fleet");

    await row.locator('button[data-action="revoke"]').click();
    await expect.poll(() => row.locator("td.status").textContent(), { timeout: 10_000 }).toBe("revoked");
    expect(await row.locator('button[data-action="revoke"]').count()).toBe(0);
    await enrolled.client.close();
    measured.stream = (await page.locator("#live").textContent()) ?? "";

    // Time to first render of a signed-in page: reload the tab (the token stays for the tab).
    await page.reload();
    await page.locator("#page-fleet[data-ready='1']").waitFor();
    const t = await page.evaluate(() => ({
      first: (window as unknown as { __firstRender: number }).__firstRender,
      dcl: performance.getEntriesByType("navigation")[0] ? (performance.getEntriesByType("navigation")[0] as PerformanceNavigationTiming).domContentLoadedEventEnd : 0,
    }));
    measured.render = `${Math.round(t.first)} ms from navigation start to the fleet table rendered with data (DOMContentLoaded at ${Math.round(t.dcl)} ms), same host, headless Chromium`;
    expect(violations).toEqual([]);
    await page.close();
  }, 60_000);

  it("without the event stream the page polls /api/v1: a new executor still appears without a reload", async () => {
    const page = await browser.newPage();
    // The stream is unavailable: no ticket can be minted (the page falls back to polling).
    await page.route("**/api/v1/ws-tickets", (r) => r.fulfill({ status: 503, contentType: "application/json", body: '{"error":{"code":"UNAVAILABLE","message":"test"}}' }));
    await signIn(page, admin);
    await page.locator("#page-fleet[data-ready='1']").waitFor();
    expect(await page.locator("#live").textContent()).toBe("polling");
    const enrolled = await register(ctl.url, readFileSync(ctl.caFile, "utf8"), createToken(ctl.dataDir), { name: "polled-joiner" });
    await page.locator(`tr[data-executor-id="${enrolled.id}"]`).waitFor({ timeout: 10_000 });
    await enrolled.client.close();
    await page.close();
  }, 60_000);

  it("submit a task from the page and watch it finish with its output tail", async () => {
    const exe = startExecutor(ctl, join(tempDir(), "exe"), ["--token", createToken(ctl.dataDir), "--name", "console-worker", "--allow-command", "echo"]);
    const page = await browser.newPage();
    page.on("dialog", (d) => void d.accept());
    await signIn(page, admin);
    await page.goto(`${ctl.url}/ui/#/tasks`);
    await page.locator("#page-tasks table").waitFor();
    await page.fill("#submit-task input[name=argv]", "echo hello from the console");
    await page.click("#submit-task button[type=submit]");
    const row = page.locator("#page-tasks tbody tr").filter({ hasText: "hello from the console" }).first();
    await row.waitFor();
    await expect.poll(() => row.locator("td.status").textContent(), { timeout: 30_000 }).toBe("succeeded");
    expect(await row.locator("pre.stdout").textContent()).toBe("hello from the console\n");
    await shot(page, "tasks");

    await page.goto(`${ctl.url}/ui/#/enrollment`);
    await page.locator("#page-enrollment table").waitFor();
    await page.click("#create-enrollment button[type=submit]");
    await page.locator("#join-command").waitFor();
    const token = await page.locator("#new-token").textContent();
    expect(token).toMatch(/^tet_enr_/);
    expect(await page.locator("#join-command").textContent()).toContain(`printf '%s' '${token}'`);
    await shot(page, "enrollment");

    await page.goto(`${ctl.url}/ui/#/trust`);
    await page.locator("#page-trust[data-ready='1']").waitFor();
    expect(await page.locator('button[data-action="rotate-ca"]').count()).toBe(1);
    await shot(page, "trust");

    await page.goto(`${ctl.url}/ui/#/audit`);
    await page.locator("#page-audit[data-ready='1']").waitFor();
    expect(await page.locator("#page-audit tbody tr").count()).toBeGreaterThan(0);
    await shot(page, "audit");
    await page.close();
    await exe.kill();
  }, 90_000);

  it("a viewer sees the fleet but no revoke, drain, submit or rotate buttons", async () => {
    const page = await browser.newPage();
    await signIn(page, viewer);
    expect(await page.locator("#who").textContent()).toContain("(viewer)");
    await page.locator("#page-fleet[data-ready='1']").waitFor();
    expect(await page.locator("#page-fleet tbody tr[data-executor-id]").count()).toBeGreaterThan(0);
    expect(await page.locator("button[data-action]").count()).toBe(0);
    expect(await page.locator('nav a[href="#/audit"]').isHidden()).toBe(true);
    await shot(page, "fleet-viewer");
    await page.goto(`${ctl.url}/ui/#/tasks`);
    await page.locator("#page-tasks[data-ready='1']").waitFor();
    expect(await page.locator("#submit-task").count()).toBe(0);
    expect(await page.locator("button[data-action]").count()).toBe(0);
    // The API refuses anyway.
    const r = await page.evaluate(async (id) => (await fetch(`/api/v1/executors/${id}/revoke`, {
      method: "POST", headers: { authorization: `Bearer ${sessionStorage.getItem("tether.token")}` },
    })).status, "x");
    expect(r).toBe(403);
    await page.close();
  }, 60_000);
});

/** Replaces the measured block of docs/console.md. */
function writeMeasurements(): void {
  const file = join(DOCS, "console.md");
  const begin = "<!-- measured:begin -->";
  const end = "<!-- measured:end -->";
  const block = [begin, "",
    `- Page weight: ${measured.weight ?? "not measured"}.`,
    `- Time to first render: ${measured.render ?? "not measured"}.`,
    `- Live updates during the run: ${measured.stream === "live" ? "event stream (§10.1)" : `polling of /api/v1 (stream state: ${measured.stream || "unknown"})`}.`,
    `- Measured by test/e2e/console.e2e.test.ts on ${new Date().toISOString().slice(0, 10)}.`, "", end].join("\n");
  const text = existsSync(file) ? readFileSync(file, "utf8") : `${begin}\n${end}\n`;
  const i = text.indexOf(begin);
  const j = text.indexOf(end);
  writeFileSync(file, i >= 0 && j > i ? text.slice(0, i) + block + text.slice(j + end.length) : `${text}\n${block}\n`);
}
