/**
 * A small static SVG chart writer for the bench report (bench/report-charts.ts): one or
 * more panels sharing an x axis, line / step / point series, labelled axes with units
 * (linear, log or "nines" scales), a legend, point annotations and vertical event
 * markers across all panels. Output is a standalone SVG document (presentation
 * attributes only: no CSS, script, ids or external references), the same string inline
 * in the HTML page and in its own .svg file.
 */

export type Scale = "linear" | "log" | "nines";

export interface AxisSpec {
  /** With its unit, e.g. "latency (ms)". */
  label: string;
  scale?: Scale;
  min?: number;
  max?: number;
  format?: (v: number) => string;
  /** The unit alone ("s"), where a value is quoted outside the axis (the key of numbered events). */
  unit?: string;
}

export interface SeriesSpec {
  name: string;
  points: [number, number][];
  color?: string;
  /** "line" joins the points; "step" holds each value until the next point (rates per bucket); "points" draws dots. */
  kind?: "line" | "step" | "points";
  dash?: boolean;
  width?: number;
  /** Omit from the legend (e.g. a second segment of a series already listed). */
  noLegend?: boolean;
}

/** A labelled dot, e.g. "p99 6.3 ms" on a CDF. */
export interface MarkSpec {
  x: number;
  y: number;
  label: string;
  color?: string;
  /**
   * Label above-left of the dot instead of below-right — the two sides a rising curve
   * leaves free, away from reference lines through the dot.
   */
  left?: boolean;
}

export interface PanelSpec {
  y: AxisSpec;
  series: SeriesSpec[];
  marks?: MarkSpec[];
  /** Horizontal reference lines, e.g. "99 %" or "executors armed". */
  hlines?: { y: number; label: string }[];
  /** Shown in the middle of the panel when no series has a point (e.g. "no failed requests"). */
  empty?: string;
  height?: number;
}

export interface ChartSpec {
  title: string;
  subtitle?: string;
  x: AxisSpec;
  panels: PanelSpec[];
  /** Vertical markers across every panel (the phase's steps). */
  events?: { x: number; label: string }[];
  /** Lines of small print under the chart. */
  notes?: string[];
  width?: number;
}

/** Okabe–Ito: distinguishable with the common colour-vision deficiencies, legible on white. */
export const PALETTE = ["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000", "#999933"];

const FONT = "Helvetica, Arial, sans-serif";
const CHAR_W = 0.58; // average glyph width per font-size unit, for laying out labels
const HALO = `paint-order="stroke" stroke="#ffffff" stroke-width="3" stroke-linejoin="round"`;

export function escapeXml(s: string): string {
  return s.replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&apos;" })[c]!);
}

const n1 = (v: number) => (Math.round(v * 10) / 10).toString();
const textWidth = (s: string, size: number) => s.length * size * CHAR_W;

/** Splits text into lines of at most `width` px (estimated), at spaces. */
export function wrapText(text: string, width: number, size: number): string[] {
  const lines: string[] = [];
  let line = "";
  for (const word of text.split(" ")) {
    const next = line ? `${line} ${word}` : word;
    if (line && textWidth(next, size) > width) {
      lines.push(line);
      line = word;
    } else line = next;
  }
  if (line) lines.push(line);
  return lines;
}

/** 1,234 · 12.5 · 0.25 · 1.5e-5: short, without trailing zeros; "—" for a figure the run lacks (NaN). */
export function formatNumber(v: number): string {
  if (!Number.isFinite(v)) return "—";
  const a = Math.abs(v);
  if (a === 0) return "0";
  if (a >= 1000) return Math.round(v).toLocaleString("en-US");
  if (a >= 0.001) return String(Number(v.toPrecision(3)));
  return v.toExponential(1);
}

// ---------------------------------------------------------------------------------------------
// Scales

interface Mapped {
  /** Value → 0..1 along the axis (clamped to the domain). */
  pos(v: number): number;
  ticks: { v: number; label: string }[];
  valid(v: number): boolean;
}

const ninesOf = (pct: number) => -Math.log10(Math.max(1e-12, 1 - pct / 100));

function niceStep(span: number, target: number): number {
  const raw = span / Math.max(1, target);
  const mag = 10 ** Math.floor(Math.log10(raw));
  const f = raw / mag;
  return (f <= 1 ? 1 : f <= 2 ? 2 : f <= 2.5 ? 2.5 : f <= 5 ? 5 : 10) * mag;
}

function mapAxis(axis: AxisSpec, values: number[], target: number): Mapped {
  const scale = axis.scale ?? "linear";
  const fmt = axis.format ?? formatNumber;
  const valid = (v: number) => Number.isFinite(v) && (scale !== "log" || v > 0) && (scale !== "nines" || (v >= 0 && v < 100));
  const vs = values.filter(valid);
  let lo = axis.min ?? (vs.length ? Math.min(...vs) : NaN);
  let hi = axis.max ?? (vs.length ? Math.max(...vs) : NaN);

  if (scale === "log") {
    if (!(lo > 0)) lo = 1;
    if (!(hi > 0)) hi = 10;
    let dLo = Math.floor(Math.log10(lo) + 1e-9);
    let dHi = Math.ceil(Math.log10(hi) - 1e-9);
    if (dHi <= dLo) dHi = dLo + 1;
    if (axis.min !== undefined) dLo = Math.log10(axis.min);
    if (axis.max !== undefined) dHi = Math.log10(axis.max);
    const decades = dHi - dLo;
    const mantissas = decades <= 2 ? [1, 2, 5] : decades <= 4 ? [1, 3] : [1];
    const ticks: { v: number; label: string }[] = [];
    for (let d = Math.floor(dLo); d <= Math.ceil(dHi); d++) {
      for (const m of mantissas) {
        const v = m * 10 ** d;
        const l = Math.log10(v);
        if (l >= dLo - 1e-9 && l <= dHi + 1e-9) ticks.push({ v, label: fmt(v) });
      }
    }
    const pos = (v: number) => clamp01((Math.log10(v) - dLo) / (dHi - dLo));
    return { pos, ticks, valid };
  }

  if (scale === "nines") {
    // 0 %, 50 %, 90 %, 99 %, 99.9 % … evenly spaced by the number of nines.
    const top = Math.max(2, Math.ceil(ninesOf(Math.min(hi, 99.9999)) - 1e-9));
    const topN = axis.max !== undefined ? ninesOf(axis.max) : top;
    // Labels keep every nine (99.99 stays 99.99); a given format gets the rounded value.
    const label = (v: number) => (axis.format ?? String)(v);
    const ticks = [{ v: 0, label: label(0) }, { v: 50, label: label(50) }];
    for (let k = 1; k <= topN + 1e-9; k++) {
      const v = Number((100 - 100 / 10 ** k).toFixed(k));
      ticks.push({ v, label: label(v) });
    }
    return { pos: (v) => clamp01(ninesOf(v) / topN), ticks, valid };
  }

  if (!Number.isFinite(lo) || !Number.isFinite(hi)) {
    lo = 0;
    hi = 1;
  }
  if (axis.min === undefined && lo > 0 && lo < hi * 0.5) lo = 0; // rates and counts start at 0
  if (hi === lo) hi = lo === 0 ? 1 : lo + Math.abs(lo);
  const step = niceStep(hi - lo, target);
  if (axis.min === undefined) lo = Math.floor(lo / step + 1e-9) * step;
  if (axis.max === undefined) hi = Math.ceil(hi / step - 1e-9) * step;
  const ticks: { v: number; label: string }[] = [];
  for (let v = Math.ceil(lo / step - 1e-9) * step; v <= hi + step * 1e-6; v += step) {
    const r = Number(v.toPrecision(12));
    ticks.push({ v: r, label: fmt(r) });
  }
  return { pos: (v) => clamp01((v - lo) / (hi - lo)), ticks, valid };
}

const clamp01 = (x: number) => (Number.isFinite(x) ? Math.min(1, Math.max(0, x)) : 0);

// ---------------------------------------------------------------------------------------------
// Rendering

export function renderChart(spec: ChartSpec): string {
  const W = spec.width ?? 860;
  const left = 78;
  const right = 28;
  const plotW = W - left - right;
  const out: string[] = [];

  // Title, subtitle, legend.
  let y = 26;
  out.push(`<text x="${left}" y="${y}" font-size="16" font-weight="bold" fill="#111">${escapeXml(spec.title)}</text>`);
  for (const line of spec.subtitle ? wrapText(spec.subtitle, plotW, 12) : []) {
    y += 16;
    out.push(`<text x="${left}" y="${y}" font-size="12" fill="#444">${escapeXml(line)}</text>`);
  }
  // Series without a point have nothing to name (e.g. no untimed registrations in a small run).
  const legend = spec.panels.flatMap((p) => p.series).filter((s) => !s.noLegend && s.points.length > 0);
  const seen = new Set<string>();
  let lx = left;
  y += 22;
  for (const s of legend) {
    if (seen.has(s.name)) continue;
    seen.add(s.name);
    const w = 30 + textWidth(s.name, 12) + 18;
    if (lx + w > W - right && lx > left) {
      lx = left;
      y += 18;
    }
    const color = s.color ?? "#333";
    if (s.kind === "points") out.push(`<circle cx="${lx + 11}" cy="${y - 4}" r="3.5" fill="${color}"/>`);
    else out.push(`<line x1="${lx}" y1="${y - 4}" x2="${lx + 22}" y2="${y - 4}" stroke="${color}" stroke-width="${s.width ?? 2}"${s.dash ? ' stroke-dasharray="5 3"' : ""}/>`);
    out.push(`<text x="${lx + 28}" y="${y}" font-size="12" fill="#222">${escapeXml(s.name)}</text>`);
    lx += w;
  }
  y += 16;

  // The x axis is shared: its domain covers every panel's points and the events.
  const xs: number[] = [];
  for (const p of spec.panels) {
    for (const s of p.series) for (const [px] of s.points) xs.push(px);
    for (const m of p.marks ?? []) xs.push(m.x);
  }
  for (const e of spec.events ?? []) xs.push(e.x);
  const xm = mapAxis(spec.x, xs, Math.max(4, Math.floor(plotW / 90)));
  const X = (v: number) => left + xm.pos(v) * plotW;

  // Events are labelled along their line, or — when two are closer than a label is wide —
  // numbered above the first panel with a key under the chart.
  const events = [...(spec.events ?? [])].filter((e) => xm.valid(e.x)).sort((a, b) => a.x - b.x);
  const numbered = events.some((e, i) => i > 0 && X(e.x) - X(events[i - 1]!.x) < 14);
  if (numbered) y += 16;

  const panelTops: { top: number; h: number }[] = [];
  for (const [pi, p] of spec.panels.entries()) {
    const h = p.height ?? 240;
    const top = y + (pi === 0 ? 8 : 0);
    panelTops.push({ top, h });
    const ys: number[] = [];
    for (const s of p.series) for (const [px, py] of s.points) if (xm.valid(px)) ys.push(py);
    for (const m of p.marks ?? []) ys.push(m.y);
    for (const l of p.hlines ?? []) ys.push(l.y);
    const ym = mapAxis(p.y, ys, Math.max(3, Math.floor(h / 45)));
    const Y = (v: number) => top + h - ym.pos(v) * h;

    // Frame, grid, ticks.
    out.push(`<rect x="${left}" y="${top}" width="${plotW}" height="${h}" fill="#fafafa" stroke="#888" stroke-width="1"/>`);
    for (const t of ym.ticks) {
      const ty = n1(Y(t.v));
      out.push(`<line x1="${left}" y1="${ty}" x2="${left + plotW}" y2="${ty}" stroke="#e2e2e2" stroke-width="1"/>`);
      out.push(`<text x="${left - 6}" y="${n1(Y(t.v) + 4)}" font-size="11" text-anchor="end" fill="#333">${escapeXml(t.label)}</text>`);
    }
    for (const t of xm.ticks) {
      const tx = n1(X(t.v));
      out.push(`<line x1="${tx}" y1="${top}" x2="${tx}" y2="${top + h}" stroke="#e2e2e2" stroke-width="1"/>`);
      out.push(`<text x="${tx}" y="${top + h + 15}" font-size="11" text-anchor="middle" fill="#333">${escapeXml(t.label)}</text>`);
    }
    const cy = top + h / 2;
    out.push(`<text x="16" y="${n1(cy)}" font-size="12" text-anchor="middle" fill="#222" transform="rotate(-90 16 ${n1(cy)})">${escapeXml(p.y.label)}</text>`);

    // Reference lines.
    for (const l of p.hlines ?? []) {
      if (!ym.valid(l.y)) continue;
      const ly = n1(Y(l.y));
      out.push(`<line x1="${left}" y1="${ly}" x2="${left + plotW}" y2="${ly}" stroke="#777" stroke-width="1" stroke-dasharray="2 3"/>`);
      out.push(`<text x="${left + plotW - 4}" y="${n1(Y(l.y) - 4)}" font-size="11" text-anchor="end" fill="#555" ${HALO}>${escapeXml(l.label)}</text>`);
    }

    // Series.
    let drawn = 0;
    for (const s of p.series) {
      const pts = s.points.filter(([px, py]) => xm.valid(px) && ym.valid(py));
      if (pts.length === 0) continue;
      drawn++;
      const color = s.color ?? "#333";
      if (s.kind === "points") {
        for (const [px, py] of pts) out.push(`<circle cx="${n1(X(px))}" cy="${n1(Y(py))}" r="2.5" fill="${color}"/>`);
        continue;
      }
      let d = `M${n1(X(pts[0]![0]))},${n1(Y(pts[0]![1]))}`;
      for (let i = 1; i < pts.length; i++) {
        const [px, py] = pts[i]!;
        if (s.kind === "step") d += `H${n1(X(px))}`;
        d += `${s.kind === "step" ? "V" : "L"}${s.kind === "step" ? n1(Y(py)) : `${n1(X(px))},${n1(Y(py))}`}`;
      }
      if (pts.length === 1) d += `h1`; // a single point still shows
      out.push(`<path d="${d}" fill="none" stroke="${color}" stroke-width="${s.width ?? 2}" stroke-linejoin="round"${s.dash ? ' stroke-dasharray="5 3"' : ""}/>`);
    }
    if (drawn === 0 && p.empty) {
      out.push(`<text x="${n1(left + plotW / 2)}" y="${n1(cy + 5)}" font-size="14" text-anchor="middle" fill="#555">${escapeXml(p.empty)}</text>`);
    }

    // Annotations.
    for (const m of p.marks ?? []) {
      if (!xm.valid(m.x) || !ym.valid(m.y)) continue;
      const mx = X(m.x);
      const my = Y(m.y);
      const color = m.color ?? "#111";
      out.push(`<circle cx="${n1(mx)}" cy="${n1(my)}" r="4" fill="${color}" stroke="#fff" stroke-width="1.5"/>`);
      const tx = m.left ? mx - 6 : mx + 6;
      out.push(`<text x="${n1(tx)}" y="${n1(m.left ? my - 7 : my + 15)}" font-size="11" font-weight="bold" text-anchor="${m.left ? "end" : "start"}" fill="${color}" ${HALO}>${escapeXml(m.label)}</text>`);
    }
    y = top + h + 38;
  }

  // Events: one dashed line across all panels, labelled upright along it at the top, or numbered.
  const firstTop = panelTops[0]?.top ?? y;
  const lastBottom = (panelTops.at(-1)?.top ?? y) + (panelTops.at(-1)?.h ?? 0);
  let lastLabelX = -Infinity;
  const key: string[] = [];
  for (const [i, e] of events.entries()) {
    const ex = X(e.x);
    for (const pt of panelTops) {
      out.push(`<line x1="${n1(ex)}" y1="${pt.top}" x2="${n1(ex)}" y2="${pt.top + pt.h}" stroke="#444" stroke-width="1.2" stroke-dasharray="6 3"/>`);
    }
    if (numbered) {
      // The number centred over its line, pushed right of the previous one; a leader back to the line.
      const nx = Math.max(ex, lastLabelX + 12);
      lastLabelX = nx;
      out.push(`<line x1="${n1(nx)}" y1="${firstTop - 12}" x2="${n1(ex)}" y2="${firstTop}" stroke="#444" stroke-width="1"/>`);
      out.push(`<text x="${n1(nx)}" y="${firstTop - 14}" font-size="11" font-weight="bold" text-anchor="middle" fill="#222">${i + 1}</text>`);
      key.push(`${i + 1}: ${e.label} (${formatNumber(e.x)}${spec.x.unit ? ` ${spec.x.unit}` : ""})`);
      continue;
    }
    // Rotated, the glyphs sit left of their anchor: anchor 12 px right of the line.
    const lxe = ex + 12;
    const ly = firstTop + 6;
    out.push(
      `<text x="${n1(lxe)}" y="${n1(ly)}" font-size="11" fill="#222" text-anchor="end" transform="rotate(-90 ${n1(lxe)} ${n1(ly)})" ${HALO}>${escapeXml(e.label)}</text>`,
    );
  }

  // x label, key, notes.
  y = lastBottom + 34;
  out.push(`<text x="${n1(left + plotW / 2)}" y="${y}" font-size="12" text-anchor="middle" fill="#222">${escapeXml(spec.x.label)}</text>`);
  for (const line of key.length ? wrapText(key.join(" · "), plotW, 11) : []) {
    y += 17;
    out.push(`<text x="${left}" y="${y}" font-size="11" fill="#222">${escapeXml(line)}</text>`);
  }
  for (const line of (spec.notes ?? []).flatMap((n) => wrapText(n, plotW, 11))) {
    y += 16;
    out.push(`<text x="${left}" y="${y}" font-size="11" fill="#555">${escapeXml(line)}</text>`);
  }
  const H = Math.ceil(y + 12);
  return (
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="${FONT}" role="img" aria-label="${escapeXml(spec.title)}">\n` +
    `<title>${escapeXml(spec.title)}</title>\n` +
    `<rect x="0" y="0" width="${W}" height="${H}" fill="#ffffff"/>\n` +
    out.join("\n") +
    "\n</svg>\n"
  );
}
