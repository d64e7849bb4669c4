/**
 * `npm run openapi`: writes docs/openapi.json as a real controller serves it at GET /openapi.json
 * (a throwaway data dir, a random loopback port). `npm run openapi -- --check` compares instead and exits 1 when
 * the checked-in copy is out of date. test/integration/openapi.test.ts keeps the two identical.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { defaultConfig } from "../controller/config.ts";
import { startController } from "../controller/controller.ts";
import { renderOpenapi } from "../controller/http/openapi.ts";

export const OPENAPI_FILE = fileURLToPath(new URL("../docs/openapi.json", import.meta.url));

async function served(): Promise<string> {
  const dir = mkdtempSync(join(tmpdir(), "tether-openapi-"));
  try {
    const c = await startController(defaultConfig(join(dir, "data"), { port: 0, logLevel: "silent" }));
    try {
      // What the GET /openapi.json handler renders, called directly so a generation error shows as it is.
      return renderOpenapi(c.app.swagger());
    } finally {
      await c.close();
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

const text = await served();
if (process.argv.includes("--check")) {
  let current = "";
  try {
    current = readFileSync(OPENAPI_FILE, "utf8");
  } catch {
    // missing: out of date
  }
  if (current !== text) {
    console.error(`${OPENAPI_FILE} is out of date: run \`npm run openapi\` and commit the result`);
    process.exit(1);
  }
  console.log(`${OPENAPI_FILE} is up to date`);
} else {
  writeFileSync(OPENAPI_FILE, text);
  console.log(`wrote ${OPENAPI_FILE}`);
}
