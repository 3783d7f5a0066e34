// The supervisor's reports: one GET /api/reports for a range of the centre's days (and
// optionally a queue, language, channel), drawn as SVG charts and sortable tables, with
// CSV downloads of the sections. Nothing polls; a report is fetched when asked for.
import { applyLanguage, t, toggleLanguage } from "./i18n.js";
import { barChart, COLORS, histogram, lineChart, mount, Series } from "./charts.js";

interface Interval {
  start_ms: number;
  offered: number;
  answered: number;
  abandoned: number;
  within: number;
  service_level: number | null;
  asa_s: number;
}
interface Bin {
  from_s: number;
  to_s: number | null;
  answered: number;
  abandoned: number;
}
interface AgentRow {
  agent: string;
  calls: number;
  talk_s: number;
  acw_s: number;
  not_ready_s: Record<string, number>;
  not_ready_total_s: number;
  aht_s: number | null;
  survey_answers: number;
  survey_average: number | null;
}
interface SurveyAgent {
  agent: string;
  answers: number;
  average: number | null;
}
interface Report {
  from: string;
  to: string;
  utc_offset_s: number;
  bucket_s: number;
  options: { queues: string[]; languages: string[]; channels: string[] };
  target: { sl_threshold_s: number; sl_target: number };
  totals: { offered: number; answered: number; abandoned: number; service_level: number; asa_s: number; abandon: number };
  intervals: Interval[];
  waits: { bin_s: number; sl_threshold_s: number; bins: Bin[] };
  categories: { category: string; calls: number }[];
  languages: { language: string; calls: number }[];
  channels: { channel: string; calls: number }[];
  survey: {
    scores: { score: number; count: number }[];
    answers: number;
    average: number | null;
    by_queue: { queue: string; answers: number; average: number | null }[];
    by_agent: SurveyAgent[];
  };
  fcr: { calls: number; repeat_24h: number; repeat_7d: number; fcr_24h: number | null; fcr_7d: number | null };
  agents: AgentRow[];
  server_ms: number;
}

const $ = <T extends HTMLElement>(id: string) => document.getElementById(id) as T;
let token = sessionStorage.getItem("dasan-token") || "";
let last: Report | null = null;
let lastParams: URLSearchParams | null = null;
let inflight: AbortController | null = null;
const api = { loads: 0, last: () => last };
(window as unknown as { reports: typeof api }).reports = api;

// ---- formatting ----

const pad = (n: number) => String(n).padStart(2, "0");

function lang(): string {
  return document.documentElement.lang === "en" ? "en" : "ko";
}

function int(n: number): string {
  return Math.round(n).toLocaleString(lang());
}

function pct(x: number | null | undefined, digits = 0): string {
  return x === null || x === undefined ? "–" : `${(x * 100).toFixed(digits)}%`;
}

function secs(x: number | null | undefined): string {
  return x === null || x === undefined ? "–" : t("rep_sec").replace("{n}", x.toFixed(1));
}

/** h:mm:ss */
export function hms(s: number | null | undefined): string {
  if (s === null || s === undefined || !Number.isFinite(s)) return "–";
  const total = Math.max(0, Math.round(s));
  return `${Math.floor(total / 3600)}:${pad(Math.floor(total / 60) % 60)}:${pad(total % 60)}`;
}

/** t(key), or the fallback when the dictionaries have no such key. */
function tOr(key: string, fallback: string): string {
  const v = t(key);
  return v === key ? fallback : v;
}

function reasonName(r: string): string {
  return tOr(`rep_r_${r}`, tOr(`r_${r}`, r));
}
const languageName = (l: string) => tOr(`rep_lang_${l}`, l);
const channelName = (c: string) => tOr(`rep_ch_${c}`, c);

function today(): string {
  const d = new Date();
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}`;
}

/** Midnight of a centre's day (YYYY-MM-DD) in epoch ms, or NaN. */
function dayStart(day: string, offsetS: number): number {
  const m = /^(\d{4})-(\d{2})-(\d{2})$/.exec(day);
  if (!m) return NaN;
  return Date.UTC(Number(m[1]), Number(m[2]) - 1, Number(m[3])) - offsetS * 1000;
}

/** The centre's wall clock of an instant, as a Date read with getUTC*. */
const local = (ms: number, offsetS: number) => new Date(ms + offsetS * 1000);

// ---- errors and authorization ----

function alertText(text: string): void {
  $("alert").textContent = text;
}

async function errorOf(r: Response): Promise<string> {
  const body = await r.text().catch(() => "");
  try {
    const j = JSON.parse(body);
    if (j && typeof j.error === "string") return j.error;
  } catch {
    // not JSON
  }
  return body.trim().slice(0, 200) || `HTTP ${r.status}`;
}

function refused(): void {
  alertText(t("token_refused"));
  sessionStorage.removeItem("dasan-token");
  token = "";
  $("connect").hidden = false;
  $<HTMLInputElement>("token").focus();
}

const auth = () => ({ Authorization: `Bearer ${token}` });

// ---- loading ----

function params(): URLSearchParams | null {
  const from = $<HTMLInputElement>("from").value;
  const to = $<HTMLInputElement>("to").value;
  if (!from || !to) {
    alertText(t("rep_need_dates"));
    return null;
  }
  if (from > to) {
    alertText(t("rep_bad_range"));
    return null;
  }
  const p = new URLSearchParams({ from, to });
  for (const id of ["queue", "language", "channel"]) {
    const v = $<HTMLSelectElement>(id).value;
    if (v) p.set(id, v);
  }
  return p;
}

async function load(): Promise<void> {
  if (!token) {
    alertText(t("rep_need_token"));
    $("connect").hidden = false;
    $<HTMLInputElement>("token").focus();
    return;
  }
  const p = params();
  if (!p) return;
  // Only the newest request is drawn.
  inflight?.abort();
  const mine = new AbortController();
  inflight = mine;
  $("main").setAttribute("aria-busy", "true");
  $("meta").textContent = t("rep_loading");
  try {
    const r = await fetch(`/api/reports?${p}`, { headers: auth(), signal: mine.signal });
    if (r.status === 401 || r.status === 403) {
      refused();
      $("meta").textContent = "";
      return;
    }
    if (!r.ok) {
      alertText(`${t("rep_failed")}: ${await errorOf(r)}`);
      $("meta").textContent = "";
      return;
    }
    const data = (await r.json()) as Report;
    if (inflight !== mine) return;
    alertText("");
    last = data;
    lastParams = p;
    render();
    api.loads++;
  } catch (e) {
    if (mine.signal.aborted) return;
    alertText(`${t("rep_failed")}: ${e instanceof TypeError ? t("rep_network") : String(e)}`);
    $("meta").textContent = "";
  } finally {
    if (inflight === mine) {
      inflight = null;
      $("main").removeAttribute("aria-busy");
    }
  }
}

async function downloadCsv(section: string): Promise<void> {
  if (!lastParams || !last) return;
  const p = new URLSearchParams(lastParams);
  p.set("format", "csv");
  try {
    const r = await fetch(`/api/reports/${section}?${p}`, { headers: auth() });
    if (r.status === 401 || r.status === 403) return refused();
    if (!r.ok) return alertText(`${t("rep_csv_failed")}: ${await errorOf(r)}`);
    const blob = await r.blob();
    const href = URL.createObjectURL(blob);
    const a = document.createElement("a");
    a.href = href;
    a.download = `${section}-${lastParams.get("from")}-${lastParams.get("to")}.csv`;
    a.hidden = true;
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(href), 10000);
  } catch (e) {
    alertText(`${t("rep_csv_failed")}: ${e instanceof TypeError ? t("rep_network") : String(e)}`);
  }
}

// ---- rendering ----

function setOptions(id: string, values: string[], name: (v: string) => string): void {
  const sel = $<HTMLSelectElement>(id);
  const keep = sel.value;
  sel.textContent = "";
  const all = new Option(t("rep_all"), "");
  all.dataset.t = "rep_all";
  sel.append(all);
  const vals = [...values];
  if (keep && !vals.includes(keep)) vals.push(keep);
  for (const v of vals) sel.append(new Option(name(v), v));
  sel.value = keep;
}

function totals(r: Report): void {
  const dl = $("totals");
  dl.textContent = "";
  const tt = r.totals;
  const target = t("rep_target_text")
    .replace("{p}", pct(r.target.sl_target))
    .replace("{s}", String(r.target.sl_threshold_s));
  const rows: [string, string][] = [
    [t("rep_offered"), int(tt.offered)],
    [t("rep_answered"), int(tt.answered)],
    [t("rep_abandoned"), int(tt.abandoned)],
    [t("rep_sl"), `${tt.answered > 0 ? pct(tt.service_level, 1) : "–"} (${t("rep_target")}: ${target})`],
    [t("rep_asa"), tt.answered > 0 ? secs(tt.asa_s) : "–"],
    [t("rep_abandon_rate"), tt.offered > 0 ? pct(tt.abandon, 1) : "–"],
    [t("rep_survey_avg"), r.survey.answers > 0 && r.survey.average !== null ? `${r.survey.average.toFixed(2)} (${t("rep_answers")} ${int(r.survey.answers)})` : "–"],
    [t("rep_fcr"), r.fcr.calls > 0 ? `${pct(r.fcr.fcr_24h, 1)} (24h) · ${pct(r.fcr.fcr_7d, 1)} (7d)` : "–"],
  ];
  for (const [k, v] of rows) {
    const dt = document.createElement("dt");
    dt.textContent = k;
    const dd = document.createElement("dd");
    dd.textContent = v;
    dl.append(dt, dd);
  }
}

/** The viewBox width for a figure: the room it has, within reason. */
function widthOf(id: string): number {
  const w = $(id).clientWidth || 640;
  return Math.round(Math.max(300, Math.min(1100, w)));
}

interface Slots {
  labels: string[];
  steps: number[];
  titles: string[];
  index: (i: Interval) => number;
  axis: string;
}

/** The time axis: every bucket of the range (so gaps show), or only the buckets with calls
 * when the range does not line up. */
function slots(r: Report): Slots {
  const off = r.utc_offset_s || 0;
  const bucketMs = (r.bucket_s || 1800) * 1000;
  const daily = r.bucket_s >= 86400;
  const label = (ms: number) => {
    const d = local(ms, off);
    return daily ? `${pad(d.getUTCMonth() + 1)}-${pad(d.getUTCDate())}` : `${pad(d.getUTCHours())}:${pad(d.getUTCMinutes())}`;
  };
  const full = (ms: number) => {
    const d = local(ms, off);
    const day = `${d.getUTCFullYear()}-${pad(d.getUTCMonth() + 1)}-${pad(d.getUTCDate())}`;
    return daily ? day : `${day} ${pad(d.getUTCHours())}:${pad(d.getUTCMinutes())}`;
  };
  const axis = daily ? t("rep_ax_day") : t("rep_ax_time");
  // Tick labels on round hours (half-hour buckets) or on weeks (days).
  const perHour = Math.max(1, Math.round(3600000 / bucketMs));
  const steps = daily ? [1, 2, 7, 14, 28, 56] : [1, ...[1, 2, 3, 4, 6, 12, 24].map((h) => h * perHour)];
  const start = dayStart(r.from, off);
  const end = dayStart(r.to, off) + 86400000;
  const n = Math.round((end - start) / bucketMs);
  const idx = (i: Interval) => Math.round((i.start_ms - start) / bucketMs);
  const aligned =
    Number.isFinite(n) &&
    n > 0 &&
    n <= 1000 &&
    r.intervals.every((i) => idx(i) >= 0 && idx(i) < n) &&
    new Set(r.intervals.map(idx)).size === r.intervals.length;
  if (aligned) {
    const multiDay = !daily && r.from !== r.to;
    const labels: string[] = [];
    const titles: string[] = [];
    for (let k = 0; k < n; k++) {
      const ms = start + k * bucketMs;
      let l = label(ms);
      if (multiDay && l === "00:00") {
        const d = local(ms, off);
        l = `${pad(d.getUTCMonth() + 1)}-${pad(d.getUTCDate())}`;
      }
      labels.push(l);
      titles.push(full(ms));
    }
    return { labels, titles, index: idx, axis, steps };
  }
  const order = new Map(r.intervals.map((i, k) => [i.start_ms, k]));
  return {
    labels: r.intervals.map((i) => label(i.start_ms)),
    titles: r.intervals.map((i) => full(i.start_ms)),
    index: (i) => order.get(i.start_ms) ?? 0,
    axis,
    steps: [],
  };
}

function perSlot(sl: Slots, r: Report, f: (i: Interval) => number | null): (number | null)[] {
  const out: (number | null)[] = sl.labels.map(() => null);
  for (const i of r.intervals) out[sl.index(i)] = f(i);
  return out;
}

const scoreColors = ["#c0392b", "#d35400", "#a38400", "#5a9a2f", "#0a7a2f"];

// One bar per name, counting calls (categories, languages, channels); "no data" when all are 0.
function countChart(id: string, labels: string[], calls: number[], horizontal = false): void {
  mount(
    $(id),
    calls.some((n) => n > 0)
      ? barChart({
          width: widthOf(id),
          label: t(($(id).querySelector("figcaption") as HTMLElement).dataset.t || ""),
          horizontal,
          labels,
          ...(horizontal ? { xLabel: t("rep_ax_calls") } : { yLabel: t("rep_ax_calls") }),
          integer: true,
          fmt: (v: number) => int(v),
          series: [{ name: t("rep_ax_calls"), color: COLORS.plain, values: calls }],
        })
      : null,
  );
}

function charts(r: Report): void {
  const sl = slots(r);
  const pctFmt = (v: number) => `${Math.round(v)}%`;
  const secFmt = (v: number) => (Number.isInteger(v) ? String(v) : v.toFixed(1));
  const intFmt = (v: number) => int(v);
  const label = (id: string) => t(($(id).querySelector("figcaption") as HTMLElement).dataset.t || "");

  // Traffic
  const has = r.intervals.length > 0;
  mount(
    $("chart-volume"),
    has
      ? barChart({
          width: widthOf("chart-volume"),
          label: label("chart-volume"),
          labels: sl.labels,
          titles: sl.titles,
          xLabel: sl.axis,
          tickSteps: sl.steps,
          yLabel: t("rep_ax_calls"),
          integer: true,
          fmt: intFmt,
          series: [
            { name: t("rep_offered"), color: COLORS.offered, values: perSlot(sl, r, (i) => i.offered) },
            { name: t("rep_answered"), color: COLORS.answered, values: perSlot(sl, r, (i) => i.answered) },
            { name: t("rep_abandoned"), color: COLORS.abandoned, values: perSlot(sl, r, (i) => i.abandoned) },
          ],
        })
      : null,
  );
  const answeredAt = perSlot(sl, r, (i) => i.answered);
  const slv = perSlot(sl, r, (i) => (i.service_level === null || i.service_level === undefined ? null : i.service_level * 100));
  mount(
    $("chart-sl"),
    slv.some((v) => v !== null)
      ? lineChart({
          width: widthOf("chart-sl"),
          label: label("chart-sl"),
          labels: sl.labels,
          titles: sl.titles,
          xLabel: sl.axis,
          tickSteps: sl.steps,
          yLabel: t("rep_ax_pct"),
          yMax: 100,
          fmt: pctFmt,
          series: [{
            name: t("rep_sl"),
            color: COLORS.offered,
            values: slv,
            notes: perSlot(sl, r, (i) => i.within).map((w, k) =>
              w === null ? undefined : t("rep_within_of").replace("{w}", int(w)).replace("{n}", int(answeredAt[k] ?? 0)),
            ),
          }],
          ref: { value: r.target.sl_target * 100, label: `${t("rep_target")} ${pct(r.target.sl_target)}` },
        })
      : null,
  );
  const asa = perSlot(sl, r, (i) => (i.answered > 0 ? i.asa_s : null));
  mount(
    $("chart-asa"),
    asa.some((v) => v !== null)
      ? lineChart({
          width: widthOf("chart-asa"),
          label: label("chart-asa"),
          labels: sl.labels,
          titles: sl.titles,
          xLabel: sl.axis,
          tickSteps: sl.steps,
          yLabel: t("rep_ax_seconds"),
          fmt: secFmt,
          series: [{ name: t("rep_asa"), color: COLORS.plain, values: asa }],
          ref: { value: r.target.sl_threshold_s, label: `${t("rep_threshold")} ${t("rep_sec").replace("{n}", String(r.target.sl_threshold_s))}` },
        })
      : null,
  );

  // Waits
  const bins = r.waits?.bins ?? [];
  const binTitles = bins.map((b) =>
    b.to_s === null
      ? t("rep_open_bin").replace("{a}", String(b.from_s))
      : t("rep_bin").replace("{a}", String(b.from_s)).replace("{b}", String(b.to_s)),
  );
  const thr = r.waits?.sl_threshold_s ?? r.target.sl_threshold_s;
  const threshold = { value: thr, label: `${t("rep_threshold")} ${t("rep_sec").replace("{n}", String(thr))}` };
  const histo = bins.map((b) => ({ from: b.from_s, to: b.to_s }));
  mount(
    $("chart-waits"),
    bins.some((b) => b.answered + b.abandoned > 0)
      ? histogram({
          width: widthOf("chart-waits"),
          label: label("chart-waits"),
          bins: histo,
          titles: binTitles,
          xLabel: t("rep_ax_wait"),
          yLabel: t("rep_ax_calls"),
          integer: true,
          fmt: intFmt,
          series: [
            { name: t("rep_answered"), color: COLORS.answered, values: bins.map((b) => b.answered) },
            { name: t("rep_abandoned"), color: COLORS.abandoned, values: bins.map((b) => b.abandoned) },
          ],
          threshold,
        })
      : null,
  );
  mount(
    $("chart-abandon"),
    bins.some((b) => b.abandoned > 0)
      ? histogram({
          width: widthOf("chart-abandon"),
          label: label("chart-abandon"),
          bins: histo,
          titles: binTitles,
          xLabel: t("rep_ax_wait"),
          yLabel: t("rep_ax_calls"),
          integer: true,
          fmt: intFmt,
          series: [{ name: t("rep_abandoned"), color: COLORS.abandoned, values: bins.map((b) => b.abandoned) }],
          threshold,
        })
      : null,
  );

  // Categories, languages, channels
  const cats = (r.categories ?? []).slice(0, 20);
  const catNames = cats.map((c) => (c.category ? c.category : t("rep_uncategorised")));
  countChart("chart-categories", catNames, cats.map((c) => c.calls), true);
  const langs = r.languages ?? [];
  countChart("chart-languages", langs.map((l) => languageName(l.language)), langs.map((l) => l.calls));
  const chans = r.channels ?? [];
  countChart("chart-channels", chans.map((c) => channelName(c.channel)), chans.map((c) => c.calls));

  // Survey and first contact resolution
  const sv = r.survey;
  const counts = [1, 2, 3, 4, 5].map((n) => sv?.scores?.find((x) => x.score === n)?.count ?? 0);
  const svFig = $("chart-survey");
  mount(
    svFig,
    sv && sv.answers > 0 && counts.some((c) => c > 0)
      ? barChart({
          width: widthOf("chart-survey"),
          label: label("chart-survey"),
          labels: [1, 2, 3, 4, 5].map((n) => t("rep_score_n").replace("{n}", String(n))),
          xLabel: t("rep_ax_score"),
          yLabel: t("rep_answers"),
          integer: true,
          fmt: intFmt,
          series: [{
            name: t("rep_answers"),
            color: COLORS.plain,
            colors: scoreColors,
            values: counts,
            notes: counts.map((c) => (sv.answers > 0 ? pct(c / sv.answers) : undefined)),
          }],
        })
      : null,
  );
  // The average goes into the caption (after its translated text).
  const cap = svFig.querySelector("figcaption") as HTMLElement;
  cap.textContent = t(cap.dataset.t || "");
  if (sv && sv.answers > 0 && sv.average !== null && sv.average !== undefined) {
    const extra = document.createElement("span");
    extra.className = "cap-extra";
    extra.textContent = ` — ${t("rep_avg_caption").replace("{avg}", sv.average.toFixed(2)).replace("{n}", int(sv.answers))}`;
    cap.append(extra);
  }
  const byQueue = (sv?.by_queue ?? []).filter((q) => q.average !== null);
  mount(
    $("chart-survey-queue"),
    byQueue.length > 0
      ? barChart({
          width: widthOf("chart-survey-queue"),
          label: label("chart-survey-queue"),
          labels: byQueue.map((q) => q.queue),
          xLabel: t("queue"),
          yLabel: t("rep_ax_average"),
          yMax: 5,
          fmt: (v) => v.toFixed(1),
          series: [{
            name: t("rep_average"),
            color: COLORS.plain,
            values: byQueue.map((q) => q.average),
            notes: byQueue.map((q) => `${t("rep_answers")} ${int(q.answers)}`),
          }],
        })
      : null,
  );
  const fcr = r.fcr;
  mount(
    $("chart-fcr"),
    fcr && fcr.calls > 0 && fcr.fcr_24h !== null && fcr.fcr_7d !== null
      ? barChart({
          width: widthOf("chart-fcr"),
          label: label("chart-fcr"),
          labels: [t("rep_fcr_24h"), t("rep_fcr_7d")],
          yLabel: t("rep_ax_pct"),
          yMax: 100,
          fmt: pctFmt,
          series: [{
            name: t("rep_fcr"),
            color: COLORS.answered,
            colors: [COLORS.answered, COLORS.offered],
            values: [fcr.fcr_24h * 100, fcr.fcr_7d * 100],
            notes: [
              t("rep_repeats").replace("{r}", int(fcr.repeat_24h)).replace("{n}", int(fcr.calls)),
              t("rep_repeats").replace("{r}", int(fcr.repeat_7d)).replace("{n}", int(fcr.calls)),
            ],
          }],
          ref: { value: 85, label: `${t("rep_ref")} 85%` },
        })
      : null,
  );
}

// ---- tables ----

interface Col<R> {
  key: string;
  label: string;
  num: boolean;
  value: (r: R) => number | string | null;
  text: (r: R) => string;
}

interface Sort {
  key: string;
  dir: 1 | -1;
}
const sorts: Record<string, Sort> = {
  "agents-table": { key: "agent", dir: 1 },
  "survey-agents": { key: "agent", dir: 1 },
};

function compare(a: number | string | null, b: number | string | null, dir: 1 | -1): number {
  // Missing values last, whichever the direction.
  if (a === null || a === undefined) return b === null || b === undefined ? 0 : 1;
  if (b === null || b === undefined) return -1;
  const c =
    typeof a === "number" && typeof b === "number"
      ? a - b
      : String(a).localeCompare(String(b), undefined, { numeric: true });
  return c * dir;
}

function table<R>(id: string, cols: Col<R>[], rows: R[]): void {
  const tbl = $<HTMLTableElement>(id);
  const sort = sorts[id];
  if (!cols.some((c) => c.key === sort.key)) sorts[id] = { key: cols[0].key, dir: 1 };
  const { key, dir } = sorts[id];
  const head = tbl.tHead as HTMLTableSectionElement;
  head.textContent = "";
  const hr = head.insertRow();
  for (const c of cols) {
    const th = document.createElement("th");
    th.scope = "col";
    th.dataset.col = c.key;
    if (c.num) th.className = "num";
    const b = document.createElement("button");
    b.type = "button";
    b.className = "sort";
    b.textContent = c.label;
    const mark = document.createElement("span");
    mark.setAttribute("aria-hidden", "true");
    mark.className = "sort-mark";
    if (c.key === key) {
      th.setAttribute("aria-sort", dir === 1 ? "ascending" : "descending");
      mark.textContent = dir === 1 ? " ▲" : " ▼";
    }
    b.append(mark);
    b.onclick = () => {
      const cur = sorts[id];
      sorts[id] = cur.key === c.key ? { key: c.key, dir: cur.dir === 1 ? -1 : 1 } : { key: c.key, dir: c.num ? -1 : 1 };
      table(id, cols, rows);
      (tbl.querySelector(`th[data-col="${CSS.escape(c.key)}"] button`) as HTMLElement | null)?.focus();
    };
    th.append(b);
    hr.append(th);
  }
  const col = cols.find((c) => c.key === key) as Col<R>;
  const sorted = [...rows].sort((a, b) => compare(col.value(a), col.value(b), dir));
  const body = tbl.tBodies[0];
  body.textContent = "";
  if (sorted.length === 0) {
    const td = body.insertRow().insertCell();
    td.colSpan = cols.length;
    td.className = "muted";
    td.dataset.t = "rep_no_data";
    td.textContent = t("rep_no_data");
    return;
  }
  for (const r of sorted) {
    const tr = body.insertRow();
    for (const c of cols) {
      const td = tr.insertCell();
      td.textContent = c.text(r);
      if (c.num) td.className = "num";
    }
  }
}

const knownReasons = ["break", "meal", "training", "research", "rona", "supervisor", "manual"];

function tables(r: Report): void {
  const agents = r.agents ?? [];
  const found = new Set<string>();
  for (const a of agents) for (const k of Object.keys(a.not_ready_s ?? {})) found.add(k);
  const reasons = [
    ...knownReasons.filter((k) => found.has(k)),
    ...[...found].filter((k) => !knownReasons.includes(k)).sort(),
  ];
  const avg = (v: number | null) => (v === null || v === undefined ? "–" : v.toFixed(2));
  const cols: Col<AgentRow>[] = [
    { key: "agent", label: t("agent"), num: false, value: (a) => a.agent, text: (a) => a.agent },
    { key: "calls", label: t("rep_calls"), num: true, value: (a) => a.calls, text: (a) => int(a.calls) },
    { key: "talk", label: t("rep_talk"), num: true, value: (a) => a.talk_s, text: (a) => hms(a.talk_s) },
    { key: "acw", label: t("rep_acw"), num: true, value: (a) => a.acw_s, text: (a) => hms(a.acw_s) },
    ...reasons.map((k) => ({
      key: `nr:${k}`,
      label: `${t("rep_not_ready")}: ${reasonName(k)}`,
      num: true,
      value: (a: AgentRow) => a.not_ready_s?.[k] ?? 0,
      text: (a: AgentRow) => hms(a.not_ready_s?.[k] ?? 0),
    })),
    { key: "nr_total", label: t("rep_nr_total"), num: true, value: (a) => a.not_ready_total_s, text: (a) => hms(a.not_ready_total_s) },
    { key: "aht", label: t("rep_aht"), num: true, value: (a) => a.aht_s, text: (a) => hms(a.aht_s) },
    { key: "survey", label: t("rep_survey_average"), num: true, value: (a) => a.survey_average, text: (a) => avg(a.survey_average) },
  ];
  table("agents-table", cols, agents);
  table<SurveyAgent>(
    "survey-agents",
    [
      { key: "agent", label: t("agent"), num: false, value: (a) => a.agent, text: (a) => a.agent },
      { key: "answers", label: t("rep_answers"), num: true, value: (a) => a.answers, text: (a) => int(a.answers) },
      { key: "average", label: t("rep_average"), num: true, value: (a) => a.average, text: (a) => avg(a.average) },
    ],
    r.survey?.by_agent ?? [],
  );
}

function render(): void {
  const r = last;
  if (!r) return;
  setOptions("queue", r.options?.queues ?? [], (q) => q);
  setOptions("language", r.options?.languages ?? [], languageName);
  setOptions("channel", r.options?.channels ?? [], channelName);
  $("report").hidden = false;
  const range = r.from === r.to ? r.from : `${r.from} ~ ${r.to}`;
  const bucket = r.bucket_s >= 86400 ? t("rep_bucket_day") : t("rep_bucket_min").replace("{n}", String(Math.round(r.bucket_s / 60)));
  $("meta").textContent = `${range} · ${bucket} · ${t("rep_server_ms").replace("{ms}", Number(r.server_ms ?? 0).toFixed(1))}`;
  totals(r);
  charts(r);
  tables(r);
}

// ---- wiring ----

applyLanguage();
$<HTMLInputElement>("from").value = today();
$<HTMLInputElement>("to").value = today();
$("lang").onclick = () => {
  toggleLanguage();
  render();
};
$("connect").addEventListener("submit", (e) => {
  e.preventDefault();
  token = $<HTMLInputElement>("token").value.trim();
  if (!token) return;
  sessionStorage.setItem("dasan-token", token);
  $("connect").hidden = true;
  alertText("");
  void load();
});
$("filters").addEventListener("submit", (e) => {
  e.preventDefault();
  void load();
});
document.querySelectorAll<HTMLButtonElement>("button.csv").forEach((b) => {
  b.onclick = () => void downloadCsv(b.dataset.section || "");
});
// Charts are laid out for their width: redraw when it changed noticeably.
let drawnWidth = window.innerWidth;
let resizeTimer = 0;
window.addEventListener("resize", () => {
  clearTimeout(resizeTimer);
  resizeTimer = window.setTimeout(() => {
    if (Math.abs(window.innerWidth - drawnWidth) < 40 || !last) return;
    drawnWidth = window.innerWidth;
    charts(last);
  }, 200);
});
if (token) {
  $("connect").hidden = true;
  void load();
}
