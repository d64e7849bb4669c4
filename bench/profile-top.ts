/**
 * Summarizes a V8 .cpuprofile (from `npm run bench -- --cpu-prof DIR`): the top
 * functions by self time and by inclusive time, optionally filtered by a pattern.
 *
 *   node --import tsx bench/profile-top.ts DIR/CPU.….cpuprofile [--top 40] [--match REGEX]
 */
import { readFileSync } from "node:fs";
import { parseArgs } from "node:util";

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}
interface Profile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
  startTime: number;
  endTime: number;
}

const { values, positionals } = parseArgs({
  options: { top: { type: "string", default: "40" }, match: { type: "string" } },
  allowPositionals: true,
});
if (positionals.length !== 1) {
  process.stderr.write("usage: node --import tsx bench/profile-top.ts FILE.cpuprofile [--top N] [--match REGEX]\n");
  process.exit(2);
}
const prof = JSON.parse(readFileSync(positionals[0]!, "utf8")) as Profile;
const byId = new Map(prof.nodes.map((n) => [n.id, n]));
const selfUs = new Map<number, number>();
for (let i = 0; i < prof.samples.length; i++) selfUs.set(prof.samples[i]!, (selfUs.get(prof.samples[i]!) ?? 0) + (prof.timeDeltas[i] ?? 0));

const key = (n: ProfileNode) => {
  const url = n.callFrame.url.replace(/^file:\/\/.*?\/(node_modules\/|main\/)?/, "");
  return `${n.callFrame.functionName || "(anonymous)"} ${url}:${n.callFrame.lineNumber + 1}`;
};
const self = new Map<string, number>();
const incl = new Map<string, number>();
const total = prof.timeDeltas.reduce((a, b) => a + b, 0);

// Inclusive time: each function counted once per stack (recursion is not double counted).
function walk(id: number, onStack: Map<string, number>): number {
  const n = byId.get(id)!;
  const k = key(n);
  let t = selfUs.get(id) ?? 0;
  self.set(k, (self.get(k) ?? 0) + t);
  onStack.set(k, (onStack.get(k) ?? 0) + 1);
  for (const c of n.children ?? []) t += walk(c, onStack);
  const depth = onStack.get(k)! - 1;
  if (depth === 0) {
    onStack.delete(k);
    incl.set(k, (incl.get(k) ?? 0) + t);
  } else onStack.set(k, depth);
  return t;
}
walk(prof.nodes[0]!.id, new Map());

const top = Number(values.top);
const re = values.match ? new RegExp(values.match) : undefined;
const show = (title: string, m: Map<string, number>) => {
  process.stdout.write(`\n${title} (of ${(total / 1000).toFixed(0)} ms sampled)\n`);
  [...m.entries()]
    .filter(([k]) => !re || re.test(k))
    .sort((a, b) => b[1] - a[1])
    .slice(0, top)
    .forEach(([k, us]) => process.stdout.write(`${(us / 1000).toFixed(0).padStart(8)} ms ${((us / total) * 100).toFixed(1).padStart(5)}%  ${k}\n`));
};
show("self time", self);
show("inclusive time", incl);
