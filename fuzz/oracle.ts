/**
 * The oracles: what makes an answer a finding. A response is an HTTP status line the
 * controller wrote on the connection; anything else (a reset, a close, a TLS alert, a
 * timeout, bytes that do not parse as HTTP) is not a response, and a request the
 * contract answers with an error that got no response is a finding too.
 */
import type { Case } from "./case.ts";
import { headerValue, type HttpResponse } from "./http1.ts";
import type { Outcome } from "./transport.ts";

export type Oracle = "crash" | "5xx" | "error-shape" | "contract" | "guard-bypass" | "no-response" | "rss" | "fuzzer-error";

export interface Failure {
  oracle: Oracle;
  /** What is wrong, in one line. */
  message: string;
  /** Failures with the same key are one finding (the smallest request is kept). */
  key: string;
  case?: Case;
  observed?: string;
}

const CODE_RE = /^[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)*$/;

/** The status each contract error code is sent with (PROTOCOL §1, §3, §5). */
const STATUS_OF: Readonly<Record<string, number>> = {
  INVALID_REQUEST: 400, INVALID_CSR: 400, PAYLOAD_TOO_LARGE: 413, ENROLLMENT_DENIED: 401, RATE_LIMITED: 429,
  CERT_REQUIRED: 401, IDENTITY_MISMATCH: 403, CERT_REVOKED: 401, TOKEN_INVALID: 401, TOKEN_EXPIRED: 401,
  EPOCH_MISMATCH: 401, CLOCK_SKEW: 401, SIGNATURE_INVALID: 401, NONCE_REPLAY: 409, STALE_LEASE: 409,
  UNAUTHENTICATED: 401, FORBIDDEN: 403, NOT_FOUND: 404, UNAVAILABLE: 503,
};
/** Statuses the contract gives a meaning (and a code) of their own. */
const CLAIMED_STATUSES = new Set([401, 403, 404, 409, 413, 429]);
const OPERATOR_401 = JSON.stringify({ error: { code: "UNAUTHENTICATED", message: "auth failure" } });

export function describeResponse(res: HttpResponse): string {
  const body = res.body.subarray(0, 400).toString("utf8");
  const ct = headerValue(res, "content-type");
  return `${res.status} ${res.reason}${ct ? ` [${ct}]` : ""} ${JSON.stringify(body)}${res.body.length > 400 ? ` (+${res.body.length - 400} bytes)` : ""}`;
}

/** Why a non-2xx body is not `{"error": {"code": UPPER_SNAKE, "message": str}}`; undefined when it is. */
export function errorShapeProblem(res: HttpResponse): string | undefined {
  const ct = headerValue(res, "content-type");
  if (!ct || !/^application\/json(\s*;|$)/i.test(ct)) return `content-type is ${ct === undefined ? "missing" : JSON.stringify(ct)}, not application/json`;
  let body: unknown;
  try {
    body = JSON.parse(res.body.toString("utf8"));
  } catch {
    return "the body is not JSON";
  }
  if (!body || typeof body !== "object" || Array.isArray(body)) return "the body is not a JSON object";
  const keys = Object.keys(body);
  if (keys.length !== 1 || keys[0] !== "error") return `top-level keys are ${JSON.stringify(keys)}, not ["error"]`;
  const err = (body as { error: unknown }).error;
  if (!err || typeof err !== "object") return "error is not an object";
  const { code, message } = err as { code?: unknown; message?: unknown };
  if (typeof code !== "string" || !CODE_RE.test(code)) return `error.code ${JSON.stringify(code)} is not UPPER_SNAKE`;
  if (typeof message !== "string" || message.length === 0) return "error.message is not a non-empty string";
  return undefined;
}

/** What tells one malformed error body from another: its code, else its message, else its first bytes. */
function bodySignature(res: HttpResponse): string {
  if (res.body.length === 0) return `(empty body, ${headerValue(res, "content-type") ?? "no content-type"})`;
  try {
    const b = JSON.parse(res.body.toString("utf8")) as Record<string, unknown>;
    return `keys ${Object.keys(b).join(",")} ${String(b.code ?? b.message ?? "").slice(0, 50)}`;
  } catch {
    return JSON.stringify(res.body.subarray(0, 30).toString("latin1"));
  }
}

function codeOf(res: HttpResponse): string | undefined {
  try {
    return (JSON.parse(res.body.toString("utf8")) as { error?: { code?: string } }).error?.code;
  } catch {
    return undefined;
  }
}

/** Contract details beyond the shape: the status of each code, Retry-After, the one operator 401 body. */
function contractProblem(c: Case, res: HttpResponse): string | undefined {
  const code = codeOf(res);
  // INVALID_REQUEST also covers the 4xx statuses the contract gives no code of their own (405, 411, 414, 415, 417, 431…).
  const lenient = code === "INVALID_REQUEST" && res.status >= 400 && res.status < 500 && !CLAIMED_STATUSES.has(res.status);
  if (code && STATUS_OF[code] !== undefined && STATUS_OF[code] !== res.status && !lenient) return `${code} sent with ${res.status}, the contract says ${STATUS_OF[code]}`;
  if ((res.status === 503 || res.status === 429) && headerValue(res, "retry-after") === undefined) return `${res.status} without Retry-After`;
  if (res.status === 503 && code !== "UNAVAILABLE") return `503 with code ${code}, the contract says UNAVAILABLE`;
  if (code === "CLOCK_SKEW" && !/"server_time":"\d{4}-\d\d-\d\dT/.test(res.body.toString("utf8"))) return "CLOCK_SKEW without server_time";
  if (c.plane === "operator" && !c.raw && res.status === 401 && res.body.toString("utf8") !== OPERATOR_401) {
    return `operator-plane 401 body is not the one contract body ${OPERATOR_401}`;
  }
  return undefined;
}

/** Nothing that could start a request (the empty request, or only blank lines): no answer is owed. */
export function isBlank(bytes: Buffer): boolean {
  return bytes.every((b) => b === 0x20 || b === 0x0d || b === 0x0a || b === 0x09);
}

/** Everything wrong with what came back for case `c`, sent at `sentAt`. */
export function judge(c: Case, outcome: Outcome, sentAt: number): Failure[] {
  const out: Failure[] = [];
  const fail = (oracle: Oracle, message: string, key: string, observed?: string) => out.push({ oracle, message, key, case: c, observed });
  if (outcome.kind === "no-response") {
    if (c.raw && isBlank(c.bytes)) return out;
    // Raw bytes unanswered until the fuzzer half-closed: an incomplete request is then answered 400 by the
    // parser; silence means a complete request was still being served when the close aborted it (a slow
    // answer, not a wrong one). A server that drops a request closes before that, and is a finding.
    if (c.raw && outcome.afterHalfClose) return out;
    const how = outcome.tls ? `TLS connection failed (${outcome.error})` : `${outcome.how}${outcome.error ? ` (${outcome.error})` : ""}`;
    const method = /^[^ \r\n]{0,20}/.exec(c.bytes.toString("latin1"))![0];
    fail("no-response", `no HTTP response: ${how}`, `no-response ${c.raw ? `raw ${method}` : `${c.label} ${c.identityDesc.split(" (")[0]!.replace(/ex_\S+/, "…")}`} ${outcome.tls ? "tls" : outcome.how}`);
    return out;
  }
  outcome.responses.forEach((res, i) => {
    const observed = describeResponse(res);
    const where = c.raw ? `raw(${c.label})` : c.label;
    if (res.status >= 500 && res.status !== 503) fail("5xx", `${res.status} answer`, `5xx ${where} ${res.status} ${codeOf(res) ?? ""}`, observed);
    const is2xx = res.status >= 200 && res.status < 300;
    if (!is2xx && !c.head) {
      const problem = errorShapeProblem(res);
      if (problem) fail("error-shape", `${res.status}: ${problem}`, `error-shape ${res.status} ${bodySignature(res)}`, observed);
      else {
        const contract = contractProblem(c, res);
        if (contract) fail("contract", contract, `contract ${contract.startsWith("operator-plane") ? "" : where} ${contract}`, observed);
      }
    }
    const want = c.expect[i]?.status;
    if (want !== undefined && res.status !== want && res.status !== 503 && res.status !== 429) {
      fail("contract", `status ${res.status}, the contract says ${want}`, `contract ${where} ${res.status} instead of ${want}`, observed);
    }
    if (is2xx) {
      const reason = c.expect[i]?.mustNotPass ?? (i === 0 ? c.dynamic?.(sentAt) : undefined);
      if (reason) fail("guard-bypass", `${res.status} for a request that must be refused: ${reason}`, `guard-bypass ${where} ${reason}`, observed);
    }
  });
  if (outcome.garbage !== undefined) {
    fail("error-shape", `bytes that are not an HTTP response: ${outcome.garbage}`, `error-shape garbage ${outcome.garbage.slice(0, 30)}`);
  }
  if (outcome.responses.length === 0 && outcome.garbage === undefined) {
    fail("no-response", "no HTTP response", `no-response ${c.raw ? "raw" : c.label}`);
  }
  return out;
}
