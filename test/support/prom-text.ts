/**
 * The Prometheus text exposition format (0.0.4), read for the metrics tests: a small
 * strict parser (a character scanner, not a pattern match) that refuses anything outside
 * the format, and `promtool check metrics` (Debian's `prometheus` package), the
 * reference linter, run on the same text.
 */
import { spawnSync } from "node:child_process";

export interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

export interface Family {
  name: string;
  type: string;
  help?: string;
  samples: Sample[];
}

const NAME_START = /[a-zA-Z_:]/;
const NAME_CHAR = /[a-zA-Z0-9_:]/;
const LABEL_START = /[a-zA-Z_]/;
const LABEL_CHAR = /[a-zA-Z0-9_]/;
const SUFFIXES: Record<string, string[]> = { histogram: ["_bucket", "_sum", "_count"], summary: ["_sum", "_count"] };

class Scanner {
  i = 0;
  constructor(readonly line: string, readonly lineNo: number) {}
  fail(what: string): never {
    throw new Error(`line ${this.lineNo}, column ${this.i + 1}: ${what}: ${JSON.stringify(this.line)}`);
  }
  peek(): string | undefined {
    return this.line[this.i];
  }
  expect(c: string): void {
    if (this.line[this.i] !== c) this.fail(`expected ${JSON.stringify(c)}`);
    this.i++;
  }
  name(start: RegExp, rest: RegExp): string {
    const from = this.i;
    if (!start.test(this.line[this.i] ?? "")) this.fail("expected a name");
    while (this.i < this.line.length && rest.test(this.line[this.i]!)) this.i++;
    return this.line.slice(from, this.i);
  }
  /** A double-quoted label value with the format's three escapes. */
  quoted(): string {
    this.expect('"');
    let out = "";
    for (;;) {
      const c = this.line[this.i++];
      if (c === undefined) this.fail("unterminated label value");
      if (c === '"') return out;
      if (c !== "\\") {
        out += c;
        continue;
      }
      const e = this.line[this.i++];
      if (e === "\\") out += "\\";
      else if (e === '"') out += '"';
      else if (e === "n") out += "\n";
      else this.fail(`invalid escape \\${e ?? ""}`);
    }
  }
  spaces(required: boolean): void {
    const from = this.i;
    while (this.line[this.i] === " " || this.line[this.i] === "\t") this.i++;
    if (required && this.i === from) this.fail("expected a space");
  }
  token(): string {
    const from = this.i;
    while (this.i < this.line.length && this.line[this.i] !== " " && this.line[this.i] !== "\t") this.i++;
    return this.line.slice(from, this.i);
  }
}

/** A sample value as Prometheus reads it (Go's ParseFloat: NaN and Inf in any case). */
function number(text: string, s: Scanner): number {
  const word = text.toLowerCase();
  if (word === "nan") return NaN;
  if (word === "+inf" || word === "inf" || word === "+infinity" || word === "infinity") return Infinity;
  if (word === "-inf" || word === "-infinity") return -Infinity;
  const v = Number(text);
  if (text === "" || Number.isNaN(v)) s.fail(`not a number: ${JSON.stringify(text)}`);
  return v;
}

/** Families by name, in order; throws on the first thing that is not the text format. */
export function parseExposition(text: string): Map<string, Family> {
  const families = new Map<string, Family>();
  const family = (name: string): Family => {
    let f = families.get(name);
    if (!f) families.set(name, (f = { name, type: "untyped", samples: [] }));
    return f;
  };
  /** The family a sample belongs to: its own name, or a histogram's/summary's base name. */
  const owner = (sample: string): Family => {
    for (const f of families.values()) {
      if (f.name === sample) return f;
      if ((SUFFIXES[f.type] ?? []).some((suffix) => sample === f.name + suffix)) return f;
    }
    return family(sample);
  };
  text.split("\n").forEach((line, n) => {
    const s = new Scanner(line, n + 1);
    if (line.trim() === "") return;
    if (line.startsWith("#")) {
      s.i = 1;
      s.spaces(false);
      const keyword = s.token();
      if (keyword !== "HELP" && keyword !== "TYPE") return; // a plain comment
      s.spaces(true);
      const f = family(s.name(NAME_START, NAME_CHAR));
      if (keyword === "TYPE") {
        s.spaces(true);
        const type = s.token();
        if (!["counter", "gauge", "histogram", "summary", "untyped"].includes(type)) s.fail(`unknown type ${type}`);
        if (f.samples.length) s.fail("TYPE after the family's samples");
        f.type = type;
      } else {
        f.help = line.slice(s.i).replace(/^[ \t]/, "");
      }
      return;
    }
    const name = s.name(NAME_START, NAME_CHAR);
    const labels: Record<string, string> = {};
    if (s.peek() === "{") {
      s.i++;
      s.spaces(false);
      while (s.peek() !== "}") {
        const label = s.name(LABEL_START, LABEL_CHAR);
        s.spaces(false);
        s.expect("=");
        s.spaces(false);
        if (label in labels) s.fail(`label ${label} twice`);
        labels[label] = s.quoted();
        s.spaces(false);
        if (s.peek() === ",") {
          s.i++;
          s.spaces(false);
        } else if (s.peek() !== "}") s.fail("expected , or }");
      }
      s.i++;
    }
    s.spaces(true);
    const value = number(s.token(), s);
    s.spaces(false);
    if (s.i < line.length) {
      const ts = s.token();
      if (!/^-?\d+$/.test(ts)) s.fail("invalid timestamp");
      s.spaces(false);
      if (s.i < line.length) s.fail("trailing characters");
    }
    owner(name).samples.push({ name, labels, value });
  });
  return families;
}

/** The value of the one sample of `name` whose labels include `labels`; undefined when there is none. */
export function sampleValue(families: Map<string, Family>, name: string, labels: Record<string, string> = {}): number | undefined {
  const matching = [...families.values()].flatMap((f) => f.samples).filter(
    (s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v),
  );
  if (matching.length > 1) throw new Error(`${matching.length} samples of ${name} match ${JSON.stringify(labels)}`);
  return matching[0]?.value;
}

/** Whether `promtool` is on PATH (Debian: `apt-get install --no-install-recommends prometheus`). */
export function havePromtool(): boolean {
  return spawnSync("promtool", ["--version"], { stdio: "ignore" }).status === 0;
}

/** `promtool check metrics` on the exposition: its verdict (status 0 = parsed and no lint problem) and what it said. */
export function promtoolCheck(text: string): { status: number | null; output: string } {
  const r = spawnSync("promtool", ["check", "metrics"], { input: text, encoding: "utf8", timeout: 30_000 });
  return { status: r.status, output: `${r.stdout ?? ""}${r.stderr ?? ""}`.trim() };
}
