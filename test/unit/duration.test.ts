import { describe, expect, it } from "vitest";
import { parseDuration, formatDuration } from "../../shared/duration.ts";

describe("durations", () => {
  it("parses s, m, h, d and bare seconds", () => {
    expect(parseDuration("90s")).toBe(90);
    expect(parseDuration("15m")).toBe(900);
    expect(parseDuration("24h")).toBe(86400);
    expect(parseDuration("2d")).toBe(172800);
    expect(parseDuration("45")).toBe(45);
  });
  it("refuses garbage, zero and negatives", () => {
    for (const bad of ["", "abc", "1.5h", "-5s", "0s", "10w"]) expect(() => parseDuration(bad)).toThrow(/duration/);
  });
  it("formats back", () => {
    expect(formatDuration(900)).toBe("15m");
    expect(formatDuration(86400)).toBe("1d");
    expect(formatDuration(61)).toBe("61s");
  });
});
