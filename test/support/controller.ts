/** Starts a real controller (real TLS on 127.0.0.1:0, real SQLite file) in a temp data dir. */
import { rmSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { tempDir } from "./temp-dir.ts";
import { defaultConfig, type ControllerConfig } from "../../controller/config.ts";
import { startController, type RunningController } from "../../controller/controller.ts";

export interface TestController {
  c: RunningController;
  dataDir: string;
  caPem: string;
  url: string;
  config: ControllerConfig;
  /** Stops and starts again on the same data dir (and port). */
  restart(): Promise<void>;
  close(): Promise<void>;
  createToken(opts?: { ttlSeconds?: number; maxUses?: number; labels?: Record<string, string> }): Promise<string>;
}

export async function startTestController(overrides: Partial<ControllerConfig> = {}): Promise<TestController> {
  const dataDir = overrides.dataDir ?? join(tempDir(), "data");
  const config = defaultConfig(dataDir, { port: 0, logLevel: "silent", registerBurst: 1000, registerPerSecond: 1000, ...overrides });
  let c = await startController(config);
  const tc: TestController = {
    c,
    dataDir,
    config,
    caPem: readFileSync(join(dataDir, "ca.pem"), "utf8"),
    url: c.url,
    async restart() {
      await tc.c.close();
      c = await startController({ ...config, port: tc.c.port });
      tc.c = c;
    },
    async close() {
      await tc.c.close();
      if (!overrides.dataDir) rmSync(join(dataDir, ".."), { recursive: true, force: true });
    },
    async createToken(opts = {}) {
      return (await tc.c.ctx.enrollment.create(opts, { via: "test" })).token;
    },
  };
  return tc;
}
