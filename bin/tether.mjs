#!/usr/bin/env node
// The `tether` command. The sources are TypeScript run through tsx's loader,
// so a fresh clone works after `npm ci` with no build step.
import module from "node:module";

if (typeof module.registerHooks === "function") {
  // Node ≥ 22.15: tsx runs its hooks in this thread; its API sets them up.
  (await import("tsx/esm/api")).register();
} else {
  // Node 20: the hooks run in Node's loader thread whatever we do. Registering tsx's hook
  // module there directly (as its API does, minus the message port) keeps tsx and esbuild
  // out of this thread, where nothing would use them: ~7 MB less resident in every `tether`
  // process, the long-running executor daemon above all (bench/daemon-idle.ts).
  module.register("tsx/esm", import.meta.url, { data: {} });
  process.setSourceMapsEnabled(true); // stack traces point into the .ts sources, as with tsx's API
}
const { main } = await import("../cli/main.ts");
process.exitCode = await main(process.argv.slice(2));
