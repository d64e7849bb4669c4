// Records which modules a real `tether` process loads, for test/executor/daemon-modules.test.ts.
// Preloaded with `NODE_OPTIONS=--import=<this file>` and MODULE_TRACE_FILE=<file>:
//  - in the main thread it registers itself as a module hook (before bin/tether.mjs registers
//    tsx's, so it sees every URL tsx's loader asks for: ESM modules, the CommonJS files
//    imported from them, `node:` builtins imported from ESM), and at exit it adds what the
//    ESM hooks cannot see: every CommonJS file in require.cache ("cjs:<path>") and every
//    builtin the main thread loaded ("builtin:<name>", process.moduleLoadList);
//  - in Node's loader thread it appends each URL loaded to the file ("load:<url>").
// Plain JavaScript, so it needs no TypeScript loader itself.
import { appendFileSync } from "node:fs";
import { createRequire, register } from "node:module";
import { isMainThread } from "node:worker_threads";

const out = process.env.MODULE_TRACE_FILE;

if (isMainThread && out) {
  register(import.meta.url, { data: { out } });
  process.on("exit", () => {
    const cjs = Object.keys(createRequire(import.meta.url).cache).map((p) => `cjs:${p}`);
    const builtins = process.moduleLoadList.filter((m) => m.startsWith("NativeModule ")).map((m) => `builtin:${m.slice(13)}`);
    appendFileSync(out, [...cjs, ...builtins, ""].join("\n"));
  });
}

let file;
export function initialize(data) {
  file = data.out;
}

export async function load(url, context, nextLoad) {
  if (file) appendFileSync(file, `load:${url}\n`);
  return nextLoad(url, context);
}
