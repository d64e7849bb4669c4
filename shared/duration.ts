/** Durations on the command line: `90s`, `15m`, `24h`, `7d`, or bare seconds. */
const UNITS: Record<string, number> = { s: 1, m: 60, h: 3600, d: 86400 };

export function parseDuration(text: string): number {
  const m = /^\s*(\d+)\s*([smhd]?)\s*$/.exec(text);
  if (!m) throw new Error(`invalid duration "${text}" (use e.g. 90s, 15m, 24h)`);
  const seconds = Number(m[1]) * UNITS[m[2] || "s"]!;
  if (!Number.isSafeInteger(seconds) || seconds <= 0) throw new Error(`duration "${text}" must be positive`);
  return seconds;
}

export function formatDuration(seconds: number): string {
  if (seconds % 86400 === 0) return `${seconds / 86400}d`;
  if (seconds % 3600 === 0) return `${seconds / 3600}h`;
  if (seconds % 60 === 0) return `${seconds / 60}m`;
  return `${seconds}s`;
}
