/** The running controller's settings, shared with other processes on its data dir (controller/settings.ts). */
import { describe, expect, it } from "vitest";
import { join } from "node:path";
import { defaultConfig } from "../../controller/config.ts";
import { adoptSettings, publishSettings } from "../../controller/settings.ts";
import { openStore } from "../../controller/store/open-store.ts";
import { tempDir } from "../support/temp-dir.ts";

describe("controller settings", () => {
  it("a CLI process on the data dir acts with the running controller's settings, not its own defaults", async () => {
    const dataDir = join(tempDir(), "data");
    const controller = await openStore({ dataDir, create: true });
    const cli = await openStore({ dataDir, create: false });
    const defaults = defaultConfig(dataDir);
    // Nothing published yet: the defaults stand.
    expect(await adoptSettings(cli.store, defaults)).toEqual(defaults);
    const running = defaultConfig(dataDir, {
      caTtlSeconds: 60, jwtTtlSeconds: 6, jwtKeyTtlSeconds: 120, heartbeatIntervalSeconds: 1, certTtlSeconds: 30, caKeyType: "p256", trustDomain: "corp.example",
    });
    await publishSettings(controller.store, running);
    const adopted = await adoptSettings(cli.store, defaults);
    expect(adopted).toMatchObject({
      caTtlSeconds: 60, jwtTtlSeconds: 6, jwtKeyTtlSeconds: 120, heartbeatIntervalSeconds: 1, certTtlSeconds: 30, caKeyType: "p256", trustDomain: "corp.example",
    });
    // What is the CLI's own business stays its own.
    expect(adopted.logLevel).toBe(defaults.logLevel);
    await controller.close();
    await cli.close();
  });
});
