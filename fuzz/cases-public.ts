/**
 * Public routes (PROTOCOL §4) and what is not a route: the trust bundle, CRL, JWKS,
 * health, readiness, OpenAPI, the console, unknown paths, and the dev-only enrollment
 * route, which in production must not exist (a 2xx there is a bypass).
 */
import { CreateEnrollmentToken } from "../shared/wire/operator.ts";
import type { Case } from "./case.ts";
import { anonymous, asExecutor, structured, type FuzzContext } from "./context.ts";
import { noiseHeaders, percentEncode } from "./headers.ts";
import type { Header } from "./http1.ts";
import { generate, mutateValue, serialize, type Schema } from "./json-gen.ts";
import type { Rng } from "./rng.ts";

const PUBLIC = ["/v1/ca/bundle.pem", "/v1/ca/crl.pem", "/.well-known/jwks.json", "/healthz", "/readyz", "/openapi.json", "/ui/", "/ui/index.html"];
const ODD_PATHS = [
  "/", "*", "/v1", "/v1/", "/v1/executors", "/v1/executors/", "/v1/executors//heartbeat", "/api", "/api/", "/api/v1", "/.well-known/",
  "/favicon.ico", "/..%2f..%2fetc/passwd", "/%2e%2e/%2e%2e/", "/%", "/%%", "/%c0%ae%c0%ae/", "/\u00e9", "/v1/bench/bare", "/metrics", "/docs",
  "/v1/ca/bundle.pem/..", "/v1/ca/bundle.pem;x", "/healthz/", "//healthz", "/HEALTHZ", "/healthz%00", "/healthz?" + "q".repeat(20_000),
  "/" + "a".repeat(9_000), "/" + "b/".repeat(3_000),
];

export function publicCase(n: number, rng: Rng, ctx: FuzzContext): Case {
  const what: string[] = [];
  let method = rng.weighted([[10, "GET"], [2, "HEAD"], [1, "POST"], [1, "OPTIONS"], [1, "DELETE"], [1, "PUT"], [0.5, "PATCH"], [0.3, "TRACE"], [0.3, "M-SEARCH"]] as const) as string;
  let target: string;
  let label: string;
  let body: Buffer | undefined;
  let mustNotPass: string | undefined;
  const kind = rng.weighted([[6, "public"], [3, "odd"], [1.5, "dev"]] as const);
  if (kind === "dev") {
    method = "POST";
    label = "POST /v1/dev/enrollment-tokens";
    target = "/v1/dev/enrollment-tokens";
    let value = generate(CreateEnrollmentToken as Schema, rng, () => undefined);
    if (rng.chance(0.3)) value = mutateValue(value, CreateEnrollmentToken as Schema, rng).value;
    body = serialize(value);
    if (rng.chance(0.2)) {
      target = rng.pick(["/v1/dev/enrollment-tokens/", "/v1/DEV/enrollment-tokens", "/v1/dev/enrollment-tokens?x=1", "/v1/%64ev/enrollment-tokens"]);
      what.push(`target ${target}`);
    }
    if (!ctx.dev) mustNotPass = "the dev-only route answered in production";
  } else if (kind === "public") {
    const p = rng.pick(PUBLIC);
    label = `${method} ${p}`;
    target = p;
    const m = rng.int(0, 9);
    if (m === 0) target = `${p}?${rng.pick(["x=1", "%zz", "a=" + "b".repeat(5_000), "&&&", "=", "__proto__=1"])}`;
    else if (m === 1) target = p.replace(/[a-z]/, (c) => percentEncode(c, rng));
    else if (m === 2) target = `${p}${rng.pick(["/", "%00", "#x", ".", "/..", "?"])}`;
    if (target !== p) what.push(`target ${JSON.stringify(target.slice(0, 60))}`);
  } else {
    target = rng.pick(ODD_PATHS);
    label = `${method} (no route)`;
    what.push(`target ${JSON.stringify(target.slice(0, 60))}${target.length > 60 ? ` (${target.length} chars)` : ""}`);
  }
  if (method !== "GET" && method !== "HEAD" && body === undefined && rng.chance(0.5)) body = Buffer.from(rng.pick(["{}", "null", "x", "[]"]));
  const headers: Header[] = [];
  const noise = noiseHeaders(rng, body !== undefined);
  headers.push(...noise.headers);
  what.push(...noise.what);
  if (rng.chance(0.1)) {
    headers.push(["authorization", `Bearer ${ctx.world.principal("admin").token}`]);
    what.push("with an admin token");
  }
  const live = ctx.world.liveExecutors();
  const identity = live.length && rng.chance(0.1) ? asExecutor(rng.pick(live), rng) : anonymous(rng);
  return structured({
    n, label, plane: kind === "dev" ? "dev" : "public", what, identity, identityDesc: identity.cert ? "an executor's certificate" : "no client certificate",
    method, target, headers, body, mustNotPass, authenticated: true,
  }, ctx);
}
