/**
 * Grammar-aware JSON bodies: a valid value generated from a route's TypeBox schema
 * (plain JSON Schema underneath), with hints for what a schema cannot know (a real
 * CSR, a live enrollment token, a lease id), then one structural mutation guided by
 * the schema (a field removed or added, a type swapped, a boundary crossed, a huge,
 * deep or unicode value), and optionally one mutation of the JSON text itself.
 */
import type { Rng } from "./rng.ts";
import { generateMatching } from "./regex-gen.ts";

export type Schema = Record<string, any>;
/** A value for `path` when the schema alone cannot make a useful one; undefined to let the schema decide. */
export type Hint = (path: readonly string[], schema: Schema, rng: Rng) => unknown;

export const NASTY_STRINGS: readonly string[] = [
  "", " ", "\u0000", "a\u0000b", "\u001b[31mred\u001b[0m", "\r\nx-injected: 1", "\u202egnp.exe", "\ufeff", "\ud83d\ude00",
  "\u0301\u0301\u0301", "Ω≈ç√∫", "𝕿𝖊𝖙𝖍𝖊𝖗", "../../etc/passwd", "%00", "%2e%2e%2f", "${jndi:ldap://x}", "<script>", "' OR 1=1 --",
  "null", "true", "-1", "1e999", "NaN", "__proto__", "constructor", "tet_pat_", "\\", "\"", "\u2028\u2029", "\uffff", "\ud800",
];
const PROTO_KEYS = ["__proto__", "constructor", "prototype", "toString", "hasOwnProperty", "valueOf"];

/** A placeholder replaced, after serialization, by a deeply nested value (too deep to build as an object). */
const DEEP = "\u0001fuzz-deep:";

export function generate(schema: Schema, rng: Rng, hint: Hint, path: readonly string[] = []): unknown {
  const hinted = hint(path, schema, rng);
  if (hinted !== undefined) return hinted;
  if (schema.anyOf || schema.oneOf) {
    const alts: Schema[] = schema.anyOf ?? schema.oneOf;
    const nonNull = alts.filter((a) => a.type !== "null");
    return generate(rng.chance(0.85) && nonNull.length ? rng.pick(nonNull) : rng.pick(alts), rng, hint, path);
  }
  if (schema.const !== undefined) return schema.const;
  if (Array.isArray(schema.enum)) return rng.pick(schema.enum);
  let type = schema.type;
  if (Array.isArray(type)) type = rng.chance(0.8) ? type.find((t: string) => t !== "null") ?? type[0] : rng.pick(type);
  switch (type) {
    case "object": {
      const out: Record<string, unknown> = {};
      const props: Record<string, Schema> = schema.properties ?? {};
      const required: string[] = schema.required ?? [];
      for (const [k, s] of Object.entries(props)) {
        if (required.includes(k) || rng.chance(0.6)) {
          const v = generate(s, rng, hint, [...path, k]);
          if (v !== undefined) out[k] = v;
        }
      }
      if (typeof schema.additionalProperties === "object" && Object.keys(props).length === 0) {
        const n = rng.int(0, Math.min(3, schema.maxProperties ?? 3));
        const names = schema.propertyNames ?? {};
        for (let i = 0; i < n; i++) {
          const key = generateString({ minLength: 1, maxLength: 12, ...names }, rng);
          out[key] = generate(schema.additionalProperties, rng, hint, [...path, "*"]);
        }
      }
      return out;
    }
    case "array": {
      const n = rng.int(schema.minItems ?? 0, Math.min(schema.maxItems ?? 3, (schema.minItems ?? 0) + 3));
      return Array.from({ length: n }, () => generate(schema.items ?? {}, rng, hint, [...path, "[]"]));
    }
    case "string":
      return generateString(schema, rng);
    case "integer":
    case "number": {
      const lo = schema.minimum ?? -1000;
      const hi = schema.maximum ?? Math.max(lo + 1000, 1000);
      if (rng.chance(0.2)) return rng.pick([lo, hi]);
      return type === "integer" ? rng.int(lo, Math.min(hi, lo + 10_000)) : lo + rng.float() * Math.min(hi - lo, 10_000);
    }
    case "boolean":
      return rng.chance(0.5);
    case "null":
      return null;
    default:
      return randomJson(rng, 2);
  }
}

/** A string of the schema's length that matches its pattern (a few tries, then the pattern's own length). */
function generateString(schema: Schema, rng: Rng): string {
  const min = schema.minLength ?? 0;
  const max = schema.maxLength ?? Infinity;
  if (typeof schema.pattern !== "string") return rng.string(rng.int(min, Math.min(max, min + 16)));
  const re = new RegExp(schema.pattern, "u");
  for (let i = 0; i < 20; i++) {
    const s = generateMatching(schema.pattern, rng);
    if (!re.test(s)) throw new Error(`regex-gen: ${JSON.stringify(s)} does not match ${schema.pattern}`);
    const n = [...s].length;
    if (n >= min && n <= max) return s;
  }
  return rng.string(Math.max(min, 1));
}

export function randomJson(rng: Rng, depth: number): unknown {
  const k = rng.int(0, depth > 0 ? 6 : 4);
  switch (k) {
    case 0: return null;
    case 1: return rng.chance(0.5);
    case 2: return rng.pick([0, -1, 1, 2 ** 31, 2 ** 53 + 2, -0, 1.5, 1e300, -1e-300]);
    case 3: return rng.chance(0.5) ? rng.string(rng.int(0, 12)) : rng.pick(NASTY_STRINGS);
    case 4: return rng.string(rng.int(1, 5));
    case 5: return Array.from({ length: rng.int(0, 3) }, () => randomJson(rng, depth - 1));
    default: {
      const o: Record<string, unknown> = {};
      for (let i = rng.int(0, 3); i > 0; i--) o[rng.chance(0.2) ? rng.pick(PROTO_KEYS) : rng.string(rng.int(1, 6))] = randomJson(rng, depth - 1);
      return o;
    }
  }
}

const isObject = (v: unknown): v is Record<string, unknown> => !!v && typeof v === "object" && !Array.isArray(v);

interface Node {
  path: (string | number)[];
  value: unknown;
  schema: Schema;
}

function schemaAt(schema: Schema, key: string | number): Schema {
  if (schema.anyOf || schema.oneOf) {
    for (const alt of (schema.anyOf ?? schema.oneOf) as Schema[]) {
      const s = schemaAt(alt, key);
      if (Object.keys(s).length) return s;
    }
    return {};
  }
  if (typeof key === "number") return schema.items ?? {};
  return schema.properties?.[key] ?? (typeof schema.additionalProperties === "object" ? schema.additionalProperties : {});
}

function nodes(value: unknown, schema: Schema, path: (string | number)[] = [], out: Node[] = []): Node[] {
  out.push({ path, value, schema });
  if (Array.isArray(value)) value.forEach((v, i) => nodes(v, schemaAt(schema, i), [...path, i], out));
  else if (value && typeof value === "object") for (const [k, v] of Object.entries(value)) nodes(v, schemaAt(schema, k), [...path, k], out);
  return out;
}

function setAt(root: unknown, path: (string | number)[], v: unknown, remove = false): unknown {
  if (path.length === 0) return v;
  const copy = structuredClone(root) as Record<string | number, unknown>;
  let at = copy;
  for (const k of path.slice(0, -1)) at = at[k] as Record<string | number, unknown>;
  const last = path[path.length - 1]!;
  if (remove) {
    if (Array.isArray(at)) at.splice(Number(last), 1);
    else delete at[last];
  } else if (last === "__proto__") Object.defineProperty(at, last, { value: v, enumerable: true, writable: true, configurable: true });
  else at[last] = v;
  return copy;
}

function boundaryValues(s: Schema, rng: Rng): unknown[] {
  const type = Array.isArray(s.type) ? s.type[0] : s.type;
  if (type === "integer" || type === "number") {
    const lo = s.minimum ?? 0;
    const hi = s.maximum ?? 2 ** 31;
    return [lo - 1, hi + 1, lo, hi, 0, -1, 2 ** 31, 2 ** 32, 2 ** 53 + 2, -(2 ** 63), 1e308, 0.5, hi + 0.5, -0, "1", "0x10"];
  }
  if (type === "string" || s.enum) {
    const max = s.maxLength ?? 256;
    return [
      "", "x".repeat(max), "x".repeat(max + 1), "y".repeat(rng.pick([70_000, 200_000, 1_000_000])), rng.pick(NASTY_STRINGS),
      "é".repeat(Math.min(max + 1, 20_000)), "\ud83d\ude00".repeat(Math.ceil((max + 1) / 2)), ...(s.enum ? s.enum.map((e: string) => e.toUpperCase() + " ") : []),
    ];
  }
  if (type === "array") {
    const max = s.maxItems ?? 64;
    return [[], Array.from({ length: max + 1 }, () => "a"), Array.from({ length: 20_000 }, (_, i) => i), [[[[[]]]]], [null]];
  }
  if (type === "object") {
    const big: Record<string, string> = {};
    for (let i = 0; i < rng.pick([65, 5_000]); i++) big[`k${i}`] = "v";
    return [{}, big, { [rng.pick(PROTO_KEYS)]: { polluted: true } }, { "": "" }, { ["k".repeat(64)]: "v" }];
  }
  return [null, "", 0, [], {}];
}

export interface Mutation {
  value: unknown;
  what: string;
}

/** One structural change of a valid value, guided by its schema. */
export function mutateValue(value: unknown, schema: Schema, rng: Rng): Mutation {
  const all = nodes(value, schema);
  const node = rng.pick(all);
  const where = node.path.length ? node.path.join(".") : "(root)";
  const op = rng.weighted([
    [2, "remove"], [2, "add"], [3, "type"], [4, "boundary"], [1, "deep"], [1, "proto"],
  ] as const);
  switch (op) {
    case "remove":
      if (node.path.length === 0) return { value: undefined, what: "body removed" };
      return { value: setAt(value, node.path, undefined, true), what: `removed ${where}` };
    case "add": {
      const target = all.filter((n) => isObject(n.value));
      if (!target.length) return { value: [value, randomJson(rng, 1)], what: "body wrapped in an array" };
      const t = rng.pick(target);
      const key = rng.chance(0.7) ? `fuzz_${rng.string(4)}` : rng.pick(["", "a".repeat(300), "\u0000", "ümlaut", ...PROTO_KEYS]);
      return { value: setAt(value, [...t.path, key], randomJson(rng, 2)), what: `added field ${JSON.stringify(key)} at ${t.path.join(".") || "(root)"}` };
    }
    case "type": {
      const replacement = rng.pick([null, true, 0, -1, 1.5, "", "str", [], {}, [node.value], { v: node.value }]);
      return { value: setAt(value, node.path, replacement), what: `${where} → ${short(replacement)}` };
    }
    case "boundary": {
      const v = rng.pick(boundaryValues(node.schema, rng));
      return { value: setAt(value, node.path, v), what: `${where} → boundary ${short(v)}` };
    }
    case "deep": {
      const depth = rng.pick([64, 1_000, 4_000, 20_000, 100_000]);
      const kind = rng.pick(["array", "object", "mixed"]);
      return { value: setAt(value, node.path, `${DEEP}${depth}:${kind}`), what: `${where} → ${kind} nested ${depth} deep` };
    }
    default: {
      const key = rng.pick(PROTO_KEYS);
      const parent = all.filter((n) => isObject(n.value));
      if (!parent.length) return { value: { [key]: value }, what: `body wrapped under ${key}` };
      const t = rng.pick(parent);
      return { value: setAt(value, [...t.path, key], { isAdmin: true, role: "admin" }), what: `${key} key at ${t.path.join(".") || "(root)"}` };
    }
  }
}

function short(v: unknown): string {
  const s = typeof v === "string" && v.startsWith(DEEP) ? "deep" : JSON.stringify(v) ?? String(v);
  return s.length > 40 ? `${s.slice(0, 40)}… (${s.length} chars)` : s;
}

function nested(depth: number, kind: string): string {
  if (kind === "array") return "[".repeat(depth) + "1" + "]".repeat(depth);
  if (kind === "object") return '{"a":'.repeat(depth) + "1" + "}".repeat(depth);
  const open: string[] = [];
  let s = "";
  for (let i = 0; i < depth; i++) {
    const obj = i % 2 === 0;
    s += obj ? '{"a":' : "[";
    open.push(obj ? "}" : "]");
  }
  return s + "1" + open.reverse().join("");
}

/** The JSON text of `value`, with deep placeholders expanded. */
export function serialize(value: unknown): Buffer {
  if (value === undefined) return Buffer.alloc(0);
  let text = JSON.stringify(value);
  const re = /"\\u0001fuzz-deep:(\d+):(\w+)"/g;
  if (text.includes("\\u0001fuzz-deep:")) text = text.replace(re, (_m, d: string, k: string) => nested(Number(d), k));
  return Buffer.from(text, "utf8");
}

/** One mutation of the JSON text itself (what a schema cannot express). */
export function mutateText(text: Buffer, rng: Rng): { body: Buffer; what: string } {
  const s = text.toString("utf8");
  const op = rng.int(0, 15);
  const cut = rng.int(0, Math.max(0, text.length - 1));
  switch (op) {
    case 0: return { body: text.subarray(0, cut), what: `text truncated at ${cut}` };
    case 1: return { body: Buffer.concat([text, Buffer.from(rng.pick(["}", "]", ",", " x", "\u0000", "{}", "\n\n"]))]), what: "trailing garbage" };
    case 2: return { body: Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), text]), what: "UTF-8 BOM prefix" };
    case 3: {
      const m = /^\{"([^"]+)":/.exec(s);
      return m ? { body: Buffer.from(s.replace(/^\{/, `{"${m[1]}":${JSON.stringify(randomJson(rng, 1))},`)), what: `duplicate key "${m[1]}"` } : { body: Buffer.from(s + s), what: "doubled text" };
    }
    case 4: return { body: Buffer.from(s.replace(/:/, ": /* c */ ")), what: "comment" };
    case 5: return { body: Buffer.from(s.replace(/"/g, "'")), what: "single quotes" };
    case 6: return { body: Buffer.from(s.replace(/:(-?\d+)/, `:${rng.pick(["NaN", "Infinity", "1e999", "-0", "01", "0x10", "1.", ".5", "+1", "1_000"])}`)), what: "number literal" };
    case 7: {
      const b = Buffer.from(text);
      if (b.length) b[cut] = rng.pick([0xff, 0xc0, 0x80, 0xfe, 0x00, 0xed]);
      return { body: b, what: `invalid UTF-8 byte at ${cut}` };
    }
    case 8: return { body: Buffer.from(s, "utf16le"), what: "UTF-16LE encoded" };
    case 9: return { body: Buffer.from(s.replace(/"([^"]*)"/, '"$1\\ud800"')), what: "lone surrogate escape" };
    case 10: return { body: Buffer.from(" ".repeat(rng.pick([1, 4096, 65_530, 70_000])) + s), what: "leading whitespace" };
    case 11: return { body: Buffer.from(rng.pick(["", " ", "null", "[]", "\"str\"", "0", "true", "{", "}", "[{}]"])), what: "whole body replaced" };
    case 12: return { body: Buffer.from(s.replace(/\}$/, ",}")), what: "trailing comma" };
    case 13: {
      const b = Buffer.from(text);
      for (let i = rng.int(1, 4); i > 0 && b.length; i--) b[rng.int(0, b.length - 1)] ^= 1 << rng.int(0, 7);
      return { body: b, what: "bit flips" };
    }
    case 14: return { body: Buffer.from(s.replace(/"([^"]*)"/, `"$1${"\\u0000".repeat(rng.int(1, 3))}"`)), what: "escaped NUL" };
    default: return { body: Buffer.from(s.slice(0, -1) + `,"pad":"${"p".repeat(rng.pick([65_536, 70_000, 200_000]))}"}`), what: "padded past 64 KiB" };
  }
}
