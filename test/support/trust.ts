/**
 * Fixtures for the trust-lifecycle tests: controllers and wire clients closed after the
 * test file, enrolled executors, and a heartbeat that reports a trust bundle version.
 *
 *   const t = trustFixture();                      // at the top of a test file
 *   const tc = await t.controller({ caTtlSeconds: 60 });
 *   const e = await t.enroll(tc);
 *   await heartbeat(e, 2);                          // reports trust_bundle_version 2
 *   const c = t.track(new WireClient(url, caPem));  // closed after the file
 */
import { afterAll } from "vitest";
import { startTestController, type TestController } from "./controller.ts";
import { executorCall, HEARTBEAT, register, type Enrolled, type Response, type WireClient } from "./wire.ts";

export function trustFixture() {
  const opened: TestController[] = [];
  const clients: WireClient[] = [];
  afterAll(async () => {
    for (const c of clients) await c.close();
    for (const t of opened) await t.close();
  });
  return {
    async controller(overrides: Parameters<typeof startTestController>[0] = {}): Promise<TestController> {
      const tc = await startTestController(overrides);
      opened.push(tc);
      return tc;
    },
    /** Stops tracking a controller the test closed itself. */
    forget(tc: TestController): void {
      opened.splice(opened.indexOf(tc), 1);
    },
    track<C extends WireClient>(c: C): C {
      clients.push(c);
      return c;
    },
    async enroll(tc: TestController): Promise<Enrolled> {
      const e = await register(tc.url, tc.caPem, await tc.createToken());
      clients.push(e.client);
      return e;
    },
  };
}

/** A heartbeat reporting `version` (none when undefined), over `client` or the executor's own. */
export function heartbeat(e: Enrolled, version?: number, client?: WireClient): Promise<Response> {
  return executorCall(e, "POST", `/v1/executors/${e.id}/heartbeat`, { ...HEARTBEAT, ...(version === undefined ? {} : { trust_bundle_version: version }) }, { client });
}
