/** RFC 3339 UTC, second precision (`2026-01-01T00:00:00Z`). */
export function rfc3339(d: Date | number): string {
  const date = typeof d === "number" ? new Date(d) : d;
  return date.toISOString().replace(/\.\d{3}Z$/, "Z");
}
