/**
 * Strings that match a schema's `pattern`: a generator for the regular-expression
 * subset the wire schemas use (anchors, literals, \d, classes with ranges, negation and
 * \uXXXX escapes, groups with alternatives, ? * + {m} {m,n}). Anything else throws, so
 * a new schema pattern the fuzzer cannot honour is noticed, not silently violated.
 */
import type { Rng } from "./rng.ts";

type Atom =
  | { kind: "class"; ranges: [number, number][]; negated: boolean }
  | { kind: "lit"; ch: string }
  | { kind: "group"; alts: Item[][] };
interface Item {
  atom: Atom;
  min: number;
  max: number;
}

const cache = new Map<string, Item[]>();
const PRINTABLE: [number, number][] = [[0x20, 0x7e], [0xa1, 0x2ff], [0x400, 0x4ff], [0x4e00, 0x4e80]];

export function generateMatching(pattern: string, rng: Rng): string {
  let items = cache.get(pattern);
  if (!items) {
    const p = new Parser(pattern);
    items = p.sequence();
    if (p.at < pattern.length) throw new Error(`unsupported pattern ${pattern}`);
    cache.set(pattern, items);
  }
  return gen(items, rng);
}

function gen(items: Item[], rng: Rng): string {
  let s = "";
  for (const it of items) {
    const hi = it.max === Infinity ? it.min + 8 : it.max;
    // Mostly short, sometimes the longest allowed.
    const n = rng.chance(0.15) ? hi : rng.int(it.min, Math.min(hi, it.min + 12));
    for (let i = 0; i < n; i++) s += genAtom(it.atom, rng);
  }
  return s;
}

function genAtom(a: Atom, rng: Rng): string {
  if (a.kind === "lit") return a.ch;
  if (a.kind === "group") return gen(rng.pick(a.alts), rng);
  if (!a.negated) {
    const [lo, hi] = rng.pick(a.ranges);
    return String.fromCodePoint(rng.int(lo, hi));
  }
  for (;;) {
    const [lo, hi] = rng.pick(PRINTABLE);
    const c = rng.int(lo, hi);
    if (!a.ranges.some(([l, h]) => c >= l && c <= h)) return String.fromCodePoint(c);
  }
}

class Parser {
  at = 0;
  constructor(private readonly src: string) {}

  sequence(): Item[] {
    const items: Item[] = [];
    while (this.at < this.src.length) {
      const c = this.src[this.at]!;
      if (c === "|" || c === ")") break;
      if (c === "^" || c === "$") {
        this.at++;
        continue;
      }
      const atom = this.atom();
      const [min, max] = this.quantifier();
      items.push({ atom, min, max });
    }
    return items;
  }

  private atom(): Atom {
    const c = this.src[this.at++]!;
    if (c === "[") return this.klass();
    if (c === "(") {
      const alts = [this.sequence()];
      while (this.src[this.at] === "|") {
        this.at++;
        alts.push(this.sequence());
      }
      if (this.src[this.at++] !== ")") throw new Error(`unbalanced group in ${this.src}`);
      return { kind: "group", alts };
    }
    if (c === "\\") return this.escape();
    if (c === ".") return { kind: "class", ranges: [], negated: true };
    return { kind: "lit", ch: c };
  }

  private escape(): Atom {
    const c = this.src[this.at++]!;
    if (c === "d") return { kind: "class", ranges: [[0x30, 0x39]], negated: false };
    if (c === "u") return { kind: "lit", ch: String.fromCharCode(this.hex4()) };
    if (/[A-Za-z0-9]/.test(c)) throw new Error(`unsupported escape \\${c} in ${this.src}`);
    return { kind: "lit", ch: c };
  }

  private hex4(): number {
    const h = this.src.slice(this.at, this.at + 4);
    this.at += 4;
    return parseInt(h, 16);
  }

  private classChar(): number {
    const c = this.src[this.at++]!;
    if (c !== "\\") return c.codePointAt(0)!;
    const e = this.src[this.at++]!;
    if (e === "u") return this.hex4();
    return e.codePointAt(0)!;
  }

  private klass(): Atom {
    const negated = this.src[this.at] === "^";
    if (negated) this.at++;
    const ranges: [number, number][] = [];
    while (this.src[this.at] !== "]") {
      if (this.at >= this.src.length) throw new Error(`unterminated class in ${this.src}`);
      if (this.src.startsWith("\\d", this.at)) {
        this.at += 2;
        ranges.push([0x30, 0x39]);
        continue;
      }
      const lo = this.classChar();
      if (this.src[this.at] === "-" && this.src[this.at + 1] !== "]") {
        this.at++;
        ranges.push([lo, this.classChar()]);
      } else ranges.push([lo, lo]);
    }
    this.at++;
    return { kind: "class", ranges, negated };
  }

  private quantifier(): [number, number] {
    const c = this.src[this.at];
    if (c === "?") return this.at++, [0, 1];
    if (c === "*") return this.at++, [0, Infinity];
    if (c === "+") return this.at++, [1, Infinity];
    if (c === "{") {
      const m = /^\{(\d+)(,(\d*))?\}/.exec(this.src.slice(this.at));
      if (!m) throw new Error(`bad quantifier in ${this.src}`);
      this.at += m[0].length;
      const min = Number(m[1]);
      return [min, m[2] === undefined ? min : m[3] === "" ? Infinity : Number(m[3])];
    }
    return [1, 1];
  }
}
