/**
 * What the daemon loads. `tether executor run` runs on every executor host for months, so
 * it must not carry the controller's libraries: a real CLI process (bin/tether.mjs, as the
 * service unit starts it) registers with a stand-in controller over real TLS, heartbeats,
 * renews its certificate with a fresh key and CSR, and stops; test/executor/module-trace.mjs
 * records every module it loaded. None of the libraries below may be among them — an import
 * that brings one back (a value imported from the wire schemas, the x509 helpers, …) fails
 * here. bench/daemon-idle.ts measures what they cost.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { readFileSync, writeFileSync } from "node:fs";
import module from "node:module";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { createChainCa, type ChainCa } from "../support/ca.ts";
import { spawnTether } from "../support/process.ts";
import { tempDir } from "../support/temp-dir.ts";
import { startTrustController, type TrustController } from "./trust-controller.ts";

const ROOT = fileURLToPath(new URL("../../", import.meta.url));
const TRACER = new URL("./module-trace.mjs", import.meta.url).href;

/** [what a loaded entry must not match, what it is]. */
const NOT_IN_THE_DAEMON: [RegExp, string][] = [
  [/\/node_modules\/typebox\//, "TypeBox: the wire schemas are the controller's (the daemon imports their types only)"],
  [/\/node_modules\/(@peculiar\/|reflect-metadata\/|asn1js\/|tsyringe\/|pvtsutils\/|pvutils\/)/, "@peculiar/x509 and its ASN.1 stack: the CSR is written with certs/der.ts and node:crypto"],
  [/\/node_modules\/(fastify|@fastify\/[^/]+|avvio|find-my-way|light-my-request|ajv|fast-json-stringify|pg|pg-pool|pg-protocol|jose|ws)\//, "the controller's server, store and JWT libraries"],
  [/\/node_modules\/prom-client\//, "prom-client: loaded only with --metrics-listen"],
  [/\/node_modules\/undici\/(index\.js|lib\/(web|mock|cache)\/)/, "undici's index (fetch, WebSocket, mocks, caches): the client loads its four parts (executor/undici.ts)"],
  [new RegExp(`^(load:file://|cjs:)${ROOT}(controller|ui)/`), "the controller's own modules"],
  [new RegExp(`^load:file://${ROOT}(certs/x509\\.ts|certs/keys\\.ts|certs/ca\\.ts|certs/profiles\\.ts|shared/wire/)`), "the CA's certificate code and the wire schemas"],
  // On Node 20 the loader hooks run in their own thread; bin/tether.mjs registers tsx's there
  // without loading tsx's API (and esbuild) into the daemon's thread too.
  ...(typeof (module as { registerHooks?: unknown }).registerHooks === "function"
    ? []
    : [[/\/node_modules\/tsx\/dist\/esm\/api\//, "tsx's API in the daemon's thread (Node 20)"] as [RegExp, string]]),
];

/** The entries that match a rule, as "entry — what it is". */
function offending(loaded: string[], rules = NOT_IN_THE_DAEMON): string[] {
  return loaded.flatMap((l) => rules.filter(([re]) => re.test(l)).map(([, what]) => `${l} — ${what}`));
}

let ca: ChainCa, t: TrustController;
beforeAll(async () => {
  ca = await createChainCa("modules");
  // A short certificate life: the daemon renews it (a new key and CSR) within seconds.
  t = await startTrustController({ cas: [ca], active: ca, heartbeatS: 0.5, certTtlMs: 6_000 });
});
afterAll(async () => {
  await t?.close();
});

/** Runs a real daemon through registration, heartbeats and a certificate renewal; every module it loaded. */
async function daemonModules(extra: string[] = []): Promise<string[]> {
  const dir = tempDir();
  const trace = join(dir, "modules.txt");
  const caFile = join(dir, "ca.pem");
  writeFileSync(caFile, ca.certPem);
  writeFileSync(trace, "");
  const renewals = () => t.requests((r) => r.route === "renew" && Boolean(r.json?.csr_pem)).length;
  const before = renewals();
  const d = spawnTether(
    ["executor", "run", "--controller", t.url, "--ca-file", caFile, "--state-dir", join(dir, "state"), "--token", "tet_enr_modules", "--log-level", "info", ...extra],
    { env: { NODE_OPTIONS: `${process.env.NODE_OPTIONS ?? ""} --import=${TRACER}`.trim(), MODULE_TRACE_FILE: trace } },
  );
  try {
    await d.waitFor(/"event":"ready"/);
    await d.waitFor(/"event":"cert\.renewed"/, 30_000);
    expect(renewals(), "the renewal sent a new CSR").toBeGreaterThan(before);
  } finally {
    expect(await d.stop()).toBe(0);
  }
  return readFileSync(trace, "utf8").split("\n").filter(Boolean);
}

describe("the executor daemon's modules", () => {
  it("a daemon that registers, heartbeats and renews loads none of the controller's libraries", async () => {
    const loaded = await daemonModules();
    // The trace saw the daemon itself, its libraries and the builtins (it is not empty by accident).
    expect(loaded).toContain(`load:file://${ROOT}executor/daemon/daemon.ts`);
    expect(loaded).toContain(`load:file://${ROOT}executor/csr.ts`);
    expect(loaded.some((l) => /\/node_modules\/undici\//.test(l))).toBe(true);
    expect(loaded.some((l) => /^cjs:.*\/node_modules\/pino\//.test(l))).toBe(true);
    expect(loaded).toContain("builtin:tls");
    expect(offending(loaded)).toEqual([]);
  }, 60_000);

  it("the tracer sees what is loaded lazily: --metrics-listen brings prom-client in, and nothing else of the list", async () => {
    const loaded = await daemonModules(["--metrics-listen", "127.0.0.1:0"]);
    const lazy = NOT_IN_THE_DAEMON.filter(([, what]) => what.startsWith("prom-client"));
    expect(lazy).toHaveLength(1);
    expect(offending(loaded, lazy).length).toBeGreaterThan(0);
    expect(offending(loaded, NOT_IN_THE_DAEMON.filter((r) => !lazy.includes(r)))).toEqual([]);
  }, 60_000);
});
