/** Executor ids (PROTOCOL §2): opaque, assigned by the controller, `[A-Za-z0-9_-]{1,64}`. The one copy of the pattern. */
export const EXECUTOR_ID_PATTERN = "[A-Za-z0-9_-]{1,64}";
export const EXECUTOR_ID_RE = new RegExp(`^${EXECUTOR_ID_PATTERN}$`);

export function isExecutorId(v: unknown): v is string {
  return typeof v === "string" && EXECUTOR_ID_RE.test(v);
}
