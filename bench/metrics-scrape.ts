/**
 * `--metrics`: the controller runs with its Prometheus listener on loopback, and this
 * scrapes it every 5 s for the whole run — three times as often as a Prometheus server
 * does by default (15 s) — so a side-by-side run with and without `--metrics` shows what
 * the request hooks, the counters and the scrape-time gauges cost the controller.
 */
import { request } from "node:http";

export interface Scraper {
  /** Scrapes made and failed, and the last exposition's size. */
  stop(): { scrapes: number; failures: number; lastBytes: number };
}

export function startScraper(port: number, everyMs = 1000): Scraper {
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
