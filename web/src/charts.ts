// Small SVG charts for the reports page, without a library: vertical bars (grouped or
// stacked), horizontal bars, lines with a horizontal target line, and a histogram with a
// marked vertical threshold. Every drawn value is an element with a data-point attribute
// and a <title> tooltip; colours are attributes (not CSS) so that a serialized chart draws
// the same anywhere. Sizes are in viewBox units: the <svg> is 100% wide and keeps its
// aspect ratio, the caller picks the viewBox width from the space it has.
import { t } from "./i18n.js";

const NS = "http://www.w3.org/2000/svg";
const FONT = 12;
export const COLORS = {
  offered: "#0b4f8a",
  answered: "#0a7a2f",
  abandoned: "#c0392b",
  ref: "#a35200",
  grid: "#e3e8ee",
  axis: "#5b6b7a",
  text: "#1b2733",
  plain: "#2f6fa8",
};

export interface Series {
  name: string;
  color: string;
  values: (number | null)[];
  /** A colour per value (overrides color for that bar). */
  colors?: string[];
  /** Extra text per value for its tooltip. */
  notes?: (string | undefined)[];
}

export interface RefLine {
  value: number;
  label: string;
}

interface Base {
  /** viewBox width. */
  width: number;
  height?: number;
  /** The accessible name of the chart. */
  label: string;
  yLabel?: string;
  xLabel?: string;
  /** Formats values (ticks and tooltips). */
  fmt?: (v: number) => string;
  /** Value ticks are whole numbers. */
  integer?: boolean;
  /** The top of the value axis (else from the data). */
  yMax?: number;
  /** Label every k-th slot with k from this list (the smallest that fits), e.g. hours. */
  tickSteps?: number[];
}

export interface BarOpts extends Base {
  labels: string[];
  /** Full slot names for tooltips (default: labels). */
  titles?: string[];
  series: Series[];
  stacked?: boolean;
  horizontal?: boolean;
  ref?: RefLine;
}

export interface LineOpts extends Base {
  labels: string[];
  titles?: string[];
  series: Series[];
  ref?: RefLine;
}

export interface HistOpts extends Base {
  bins: { from: number; to: number | null }[];
  series: Series[];
  threshold?: RefLine;
  /** Formats a bin edge (seconds). */
  edgeFmt?: (s: number) => string;
  /** Slot names for tooltips. */
  titles: string[];
}

type Attrs = Record<string, string | number>;
// A white outline under a label drawn over the data, so that it stays readable.
const HALO: Attrs = { stroke: "#fff", "stroke-width": 3, "paint-order": "stroke", "stroke-linejoin": "round" };

function s<K extends keyof SVGElementTagNameMap>(
  tag: K,
  attrs: Attrs,
  parent?: Element,
  text?: string,
): SVGElementTagNameMap[K] {
  const e = document.createElementNS(NS, tag) as SVGElementTagNameMap[K];
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, String(v));
  if (text !== undefined) e.textContent = text;
  if (parent) parent.append(e);
  return e;
}

function title(parent: Element, text: string): void {
  s("title", {}, parent, text);
}

/** An estimate of a text's width (no layout needed): Hangul and CJK are square. */
export function textWidth(str: string, size = FONT): number {
  let w = 0;
  for (const ch of str) {
    const c = ch.codePointAt(0) ?? 0;
    w += c >= 0x1100 ? size : c === 32 ? size * 0.3 : size * 0.6;
  }
  return w;
}

function fit(str: string, max: number, size = FONT): string {
  if (textWidth(str, size) <= max) return str;
  let out = "";
  for (const ch of str) {
    if (textWidth(out + ch + "…", size) > max) break;
    out += ch;
  }
  return out + "…";
}

/** Ticks from 0 to a round number at or above max. */
export function niceTicks(max: number, count = 5, integer = false): number[] {
  if (!(max > 0)) max = integer ? count : 1;
  const raw = max / count;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const norm = raw / mag;
  let step = (norm <= 1 ? 1 : norm <= 2 ? 2 : norm <= 2.5 && !integer ? 2.5 : norm <= 5 ? 5 : 10) * mag;
  if (integer) step = Math.max(1, Math.round(step));
  const top = Math.ceil(max / step - 1e-9) * step;
  const out: number[] = [];
  for (let i = 0; i * step <= top + step / 2; i++) out.push(Number((i * step).toFixed(10)));
  return out;
}

const plainFmt = (v: number) => (Number.isInteger(v) ? String(v) : v.toFixed(1));

function root(o: Base, height: number): SVGSVGElement {
  return s("svg", {
    viewBox: `0 0 ${o.width} ${height}`,
    width: "100%",
    role: "img",
    "aria-label": o.label,
    "font-family": "system-ui, 'Noto Sans KR', sans-serif",
    "font-size": FONT,
  });
}

interface LegendItem {
  name: string;
  color: string;
  /** Bars of several colours: the swatch shows them all. */
  colors?: string[];
  dashed?: boolean;
  line?: boolean;
}

/** Draws the legend at the top, wrapping; returns the height it took. */
function legend(svg: SVGSVGElement, items: LegendItem[], width: number): number {
  const g = s("g", { class: "legend" }, svg);
  let x = 8;
  let y = 12;
  for (const it of items) {
    const w = 22 + textWidth(it.name) + 14;
    if (x + w > width - 8 && x > 8) {
      x = 8;
      y += 18;
    }
    if (it.line || it.dashed) {
      s("line", {
        x1: x, y1: y, x2: x + 16, y2: y, stroke: it.color, "stroke-width": 2,
        ...(it.dashed ? { "stroke-dasharray": "4 3" } : {}),
      }, g);
    } else if (it.colors && it.colors.length > 1) {
      const k = it.colors.length;
      it.colors.forEach((c, j) => s("rect", { x: x + (16 * j) / k, y: y - 6, width: 16 / k, height: 12, fill: c }, g));
    } else {
      s("rect", { x, y: y - 6, width: 16, height: 12, fill: it.color }, g);
    }
    s("text", { x: x + 21, y: y + 4, fill: COLORS.text }, g, it.name);
    x += w;
  }
  return y + 14;
}

function legendItems(series: Series[], ref?: RefLine, lines = false): LegendItem[] {
  const items: LegendItem[] = series.map((x) => ({ name: x.name, color: x.color, colors: x.colors, line: lines }));
  if (ref) items.push({ name: ref.label, color: COLORS.ref, dashed: true });
  return items;
}

interface Frame {
  x0: number;
  y0: number; // the bottom of the plot
  pw: number;
  ph: number;
  slotW: number;
  y: (v: number) => number;
}

/** Value axis (left), gridlines, the x axis with slot or edge labels, the axis titles. */
function verticalFrame(
  svg: SVGSVGElement,
  o: Base,
  top: number,
  height: number,
  maxV: number,
  labels: string[],
  edges: boolean,
): Frame {
  const fmt = o.fmt ?? plainFmt;
  const ticks = niceTicks(o.yMax ?? maxV, 5, o.integer);
  const topV = o.yMax ?? ticks[ticks.length - 1];
  const left = Math.max(28, ...ticks.map((v) => textWidth(fmt(v)) + 10)) + (o.yLabel ? 18 : 0);
  const bottom = 22 + (o.xLabel ? 18 : 0);
  const x0 = left;
  const pw = o.width - left - 14;
  const y0 = height - bottom;
  const ph = y0 - top - 6;
  const y = (v: number) => y0 - (Math.max(0, Math.min(v, topV)) / topV) * ph;
  const g = s("g", { class: "axis" }, svg);
  for (const v of ticks) {
    if (v > topV + 1e-9) break;
    s("line", { x1: x0, x2: x0 + pw, y1: y(v), y2: y(v), stroke: COLORS.grid }, g);
    s("text", { x: x0 - 6, y: y(v) + 4, "text-anchor": "end", fill: COLORS.axis }, g, fmt(v));
  }
  s("line", { x1: x0, x2: x0 + pw, y1: y0, y2: y0, stroke: COLORS.axis }, g);
  const n = Math.max(1, edges ? labels.length - 1 : labels.length);
  const slotW = pw / n;
  const widest = Math.max(0, ...labels.map((l) => textWidth(l)));
  const need = Math.max(1, Math.ceil((widest + 8) / slotW));
  const every = o.tickSteps?.find((k) => k >= need) ?? need;
  labels.forEach((l, i) => {
    if (!l || i % every !== 0) return;
    const x = edges ? x0 + i * slotW : x0 + (i + 0.5) * slotW;
    const room = every === 1 && !edges ? slotW - 2 : widest + 8;
    s("text", { x, y: y0 + 15, "text-anchor": "middle", fill: COLORS.axis }, g, fit(l, room));
    if (edges) s("line", { x1: x, x2: x, y1: y0, y2: y0 + 4, stroke: COLORS.axis }, g);
  });
  if (o.xLabel) {
    s("text", { x: x0 + pw / 2, y: height - 5, "text-anchor": "middle", fill: COLORS.text }, g, o.xLabel);
  }
  if (o.yLabel) {
    const cy = top + ph / 2;
    s("text", { x: 12, y: cy, "text-anchor": "middle", fill: COLORS.text, transform: `rotate(-90 12 ${cy})` }, g, o.yLabel);
  }
  return { x0, y0, pw, ph, slotW, y };
}

function refLine(svg: SVGSVGElement, f: Frame, ref: RefLine, fmtLabel: string): void {
  const g = s("g", { class: "ref" }, svg);
  const yy = f.y(ref.value);
  s("line", { x1: f.x0, x2: f.x0 + f.pw, y1: yy, y2: yy, stroke: COLORS.ref, "stroke-width": 1.5, "stroke-dasharray": "6 4" }, g);
  s("text", { x: f.x0 + f.pw - 2, y: yy - 4, "text-anchor": "end", fill: COLORS.ref, ...HALO }, g, fmtLabel);
}

function tip(slot: string, series: Series, i: number, v: number, fmt: (v: number) => string): string {
  const note = series.notes?.[i];
  return `${slot} · ${series.name}: ${fmt(v)}${note ? ` (${note})` : ""}`;
}

function maxOf(series: Series[], stacked: boolean, n: number): number {
  let max = 0;
  for (let i = 0; i < n; i++) {
    if (stacked) {
      max = Math.max(max, series.reduce((a, x) => a + (x.values[i] ?? 0), 0));
    } else {
      for (const x of series) max = Math.max(max, x.values[i] ?? 0);
    }
  }
  return max;
}

/** Vertical bars (grouped, or stacked), or horizontal bars with `horizontal`. */
export function barChart(o: BarOpts): SVGSVGElement {
  if (o.horizontal) return horizontalBars(o);
  const height = o.height ?? 260;
  const svg = root(o, height);
  const fmt = o.fmt ?? plainFmt;
  const top = legend(svg, legendItems(o.series, o.ref), o.width);
  const n = o.labels.length;
  const maxV = Math.max(maxOf(o.series, !!o.stacked, n), o.ref ? o.ref.value : 0);
  const f = verticalFrame(svg, o, top, height, maxV, o.labels, false);
  const g = s("g", { class: "marks" }, svg);
  const groups = o.stacked ? 1 : o.series.length;
  const groupW = f.slotW * (n > 40 ? 0.9 : 0.75);
  const bw = groupW / groups;
  for (let i = 0; i < n; i++) {
    const slot = o.titles?.[i] ?? o.labels[i];
    let acc = 0;
    o.series.forEach((x, j) => {
      const v = x.values[i];
      if (v === null || v === undefined) return;
      const bx = f.x0 + i * f.slotW + (f.slotW - groupW) / 2 + (o.stacked ? 0 : j * bw);
      const yTop = f.y(acc + v);
      const yBottom = f.y(acc);
      const r = s("rect", {
        x: bx.toFixed(2),
        y: yTop.toFixed(2),
        width: Math.max(0.5, bw > 4 ? bw - 1 : bw * 0.85).toFixed(2),
        height: Math.max(0, yBottom - yTop).toFixed(2),
        fill: x.colors?.[i] ?? x.color,
        "data-point": "",
        "data-value": v,
      }, g);
      title(r, tip(slot, x, i, v, fmt));
      if (o.stacked) acc += v;
    });
  }
  if (o.ref) refLine(svg, f, o.ref, o.ref.label);
  return svg;
}

function horizontalBars(o: BarOpts): SVGSVGElement {
  const fmt = o.fmt ?? plainFmt;
  const n = o.labels.length;
  const rowH = 22;
  // The legend first, on a scratch element, for its height.
  const scratch = s("svg", {});
  const top = legend(scratch, legendItems(o.series, o.ref), o.width);
  const bottom = 22 + (o.xLabel ? 18 : 0);
  const height = o.height ?? top + n * rowH + bottom + 6;
  const svg = root(o, height);
  svg.append(...Array.from(scratch.childNodes));
  const maxV = Math.max(maxOf(o.series, !!o.stacked, n), o.ref ? o.ref.value : 0);
  const ticks = niceTicks(o.yMax ?? maxV, 5, o.integer);
  const topV = o.yMax ?? ticks[ticks.length - 1];
  const labelRoom = Math.min(o.width * 0.4, Math.max(30, ...o.labels.map((l) => textWidth(l))) + 10);
  const x0 = labelRoom;
  const pw = o.width - x0 - 16;
  const y0 = height - bottom;
  const x = (v: number) => x0 + (Math.max(0, Math.min(v, topV)) / topV) * pw;
  const g = s("g", { class: "axis" }, svg);
  const lastTickW = textWidth(fmt(ticks[ticks.length - 1]));
  const every = Math.max(1, Math.ceil((lastTickW + 10) / (pw / Math.max(1, ticks.length - 1))));
  ticks.forEach((v, k) => {
    if (v > topV + 1e-9) return;
    s("line", { x1: x(v), x2: x(v), y1: top, y2: y0, stroke: COLORS.grid }, g);
    if (k % every === 0) s("text", { x: x(v), y: y0 + 15, "text-anchor": "middle", fill: COLORS.axis }, g, fmt(v));
  });
  s("line", { x1: x0, x2: x0, y1: top, y2: y0, stroke: COLORS.axis }, g);
  if (o.xLabel) s("text", { x: x0 + pw / 2, y: height - 5, "text-anchor": "middle", fill: COLORS.text }, g, o.xLabel);
  const marks = s("g", { class: "marks" }, svg);
  const groups = o.stacked ? 1 : o.series.length;
  const bh = (rowH * 0.75) / groups;
  o.labels.forEach((l, i) => {
    const cy = top + i * rowH + rowH / 2;
    s("text", { x: x0 - 6, y: cy + 4, "text-anchor": "end", fill: COLORS.text }, g, fit(l, labelRoom - 10));
    let acc = 0;
    const slot = o.titles?.[i] ?? l;
    o.series.forEach((sr, j) => {
      const v = sr.values[i];
      if (v === null || v === undefined) return;
      const by = cy - (rowH * 0.75) / 2 + (o.stacked ? 0 : j * bh);
      const r = s("rect", {
        x: x(acc).toFixed(2),
        y: by.toFixed(2),
        width: Math.max(0, x(acc + v) - x(acc)).toFixed(2),
        height: Math.max(1, bh - 1).toFixed(2),
        fill: sr.colors?.[i] ?? sr.color,
        "data-point": "",
        "data-value": v,
      }, marks);
      title(r, tip(slot, sr, i, v, fmt));
      if (o.stacked) acc += v;
    });
  });
  if (o.ref) {
    const xx = x(o.ref.value);
    s("line", { x1: xx, x2: xx, y1: top, y2: y0, stroke: COLORS.ref, "stroke-width": 1.5, "stroke-dasharray": "6 4" }, svg);
  }
  return svg;
}

/** Lines over slots; null values are skipped (the line joins the points either side). */
export function lineChart(o: LineOpts): SVGSVGElement {
  const height = o.height ?? 240;
  const svg = root(o, height);
  const fmt = o.fmt ?? plainFmt;
  const top = legend(svg, legendItems(o.series, o.ref, true), o.width);
  const n = o.labels.length;
  const maxV = Math.max(maxOf(o.series, false, n), o.ref ? o.ref.value : 0);
  const f = verticalFrame(svg, o, top, height, maxV, o.labels, false);
  if (o.ref) refLine(svg, f, o.ref, o.ref.label);
  const g = s("g", { class: "marks" }, svg);
  const r = n > 150 ? 2 : 3.5;
  for (const x of o.series) {
    const pts: [number, number, number][] = [];
    x.values.forEach((v, i) => {
      if (v !== null && v !== undefined) pts.push([f.x0 + (i + 0.5) * f.slotW, f.y(v), i]);
    });
    if (pts.length > 1) {
      const d = pts.map(([px, py], k) => `${k ? "L" : "M"}${px.toFixed(2)} ${py.toFixed(2)}`).join(" ");
      s("path", { d, fill: "none", stroke: x.color, "stroke-width": 2, "stroke-linejoin": "round" }, g);
    }
    for (const [px, py, i] of pts) {
      const c = s("circle", {
        cx: px.toFixed(2), cy: py.toFixed(2), r, fill: "#fff", stroke: x.color, "stroke-width": 2,
        "data-point": "", "data-value": x.values[i] ?? 0,
      }, g);
      title(c, tip(o.titles?.[i] ?? o.labels[i], x, i, x.values[i] ?? 0, fmt));
    }
  }
  return svg;
}

/** Adjacent bars over bins of seconds (series stacked), with a vertical threshold line. */
export function histogram(o: HistOpts): SVGSVGElement {
  const height = o.height ?? 260;
  const svg = root(o, height);
  const fmt = o.fmt ?? plainFmt;
  const edgeFmt = o.edgeFmt ?? plainFmt;
  const items = legendItems(o.series);
  if (o.threshold) items.push({ name: o.threshold.label, color: COLORS.ref, dashed: true });
  const top = legend(svg, items, o.width);
  const n = o.bins.length;
  const edges = o.bins.map((b) => edgeFmt(b.from));
  const last = o.bins[n - 1];
  edges.push(last && last.to !== null ? edgeFmt(last.to) : "");
  const maxV = maxOf(o.series, true, n);
  const f = verticalFrame(svg, o, top, height, maxV, edges, true);
  const g = s("g", { class: "marks" }, svg);
  for (let i = 0; i < n; i++) {
    let acc = 0;
    for (const x of o.series) {
      const v = x.values[i];
      if (v === null || v === undefined) continue;
      const yTop = f.y(acc + v);
      const r = s("rect", {
        x: (f.x0 + i * f.slotW + 0.5).toFixed(2),
        y: yTop.toFixed(2),
        width: Math.max(0.5, f.slotW - 1).toFixed(2),
        height: Math.max(0, f.y(acc) - yTop).toFixed(2),
        fill: x.colors?.[i] ?? x.color,
        "data-point": "",
        "data-value": v,
      }, g);
      title(r, tip(o.titles[i], x, i, v, fmt));
      acc += v;
    }
  }
  if (o.threshold && n > 0) {
    const v = o.threshold.value;
    let pos = n;
    for (let i = 0; i < n; i++) {
      const b = o.bins[i];
      if (v >= b.from && (b.to === null || v < b.to)) {
        pos = i + (b.to === null ? 0 : (v - b.from) / (b.to - b.from));
        break;
      }
      if (v < b.from) {
        pos = i;
        break;
      }
    }
    const xx = f.x0 + pos * f.slotW;
    const tg = s("g", { class: "threshold" }, svg);
    s("line", { x1: xx, x2: xx, y1: top, y2: f.y0, stroke: COLORS.ref, "stroke-width": 2, "stroke-dasharray": "6 4" }, tg);
    const right = xx > f.x0 + f.pw * 0.7;
    s("text", { x: right ? xx - 4 : xx + 4, y: top + 10, "text-anchor": right ? "end" : "start", fill: COLORS.ref, ...HALO }, tg, o.threshold.label);
  }
  return svg;
}

/** Puts a chart (or the "no data" text when it has none) into its figure. */
export function mount(fig: HTMLElement, svg: SVGSVGElement | null, noDataKey = "rep_no_data"): void {
  fig.querySelectorAll(":scope > svg, :scope > .nodata").forEach((e) => e.remove());
  if (svg) {
    fig.append(svg);
  } else {
    const p = document.createElement("p");
    p.className = "nodata";
    p.dataset.t = noDataKey;
    p.textContent = t(noDataKey);
    fig.append(p);
  }
  fig.classList.toggle("empty", !svg);
}
