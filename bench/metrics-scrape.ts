/**
 * `--metrics`: the controller runs with its Prometheus listener on loopback, and this
 * scrapes it every 5 s for the whole run — three times as often as a Prometheus server
 * does by default (15 s) — so a side-by-side run with and without `--metrics` shows what
 * the request hooks, the counters and the scrape-time gauges cost the controller.
 */
import { request } from "node:http";
import { freePort } from "../tools/free-port.ts";
import { log } from "./harness.ts";

interface Scraper {
  /** Scrapes made and failed, and the last exposition's size. */
  stop(): { scrapes: number; failures: number; lastBytes: number };
}

function startScraper(port: number, everyMs: number): Scraper {
  let scrapes = 0;
  let failures = 0;
  let lastBytes = 0;
  const once = () => {
    const req = request({ host: "127.0.0.1", port, path: "/metrics", timeout: 10_000 }, (res) => {
      let n = 0;
      res.on("data", (d: Buffer) => (n += d.length));
      res.on("end", () => {
        if (res.statusCode === 200) {
          scrapes++;
          lastBytes = n;
        } else failures++;
      });
    });
    req.on("timeout", () => req.destroy(new Error("scrape timed out")));
    req.on("error", () => failures++);
    req.end();
  };
  const timer = setInterval(once, everyMs);
  timer.unref();
  return {
    stop() {
      clearInterval(timer);
      return { scrapes, failures, lastBytes };
    },
  };
}

/** `--metrics` for a run: the controller's extra arguments, the scraper, and its figures for the JSON. */
export async function benchMetrics(enabled: boolean): Promise<{
  controllerArgs: string[];
  start(): void;
  result(): Record<string, number | string>;
}> {
  const port = enabled ? await freePort() : 0;
  let scraper: Scraper | undefined;
  return {
    controllerArgs: enabled ? ["--metrics-listen", `127.0.0.1:${port}`] : [],
    start() {
      if (!enabled) return;
      scraper = startScraper(port, 5000);
      log(`metrics on http://127.0.0.1:${port}/metrics, scraped every 5 s (--metrics)`);
    },
    result(): Record<string, number | string> {
      if (!scraper) return { metrics: "off" };
      const { scrapes, failures } = scraper.stop();
      return { metrics: "on", metrics_scrapes: scrapes, metrics_scrape_failures: failures };
    },
  };
}
