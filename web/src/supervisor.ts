// The wallboard: one WebSocket (/supervisor/ws) on which the engine pushes a snapshot of
// queues, agents and calls whenever something changed. Nothing here polls the server; the
// one-second timer only ages the "time in state" column.
//
// Built for a floor of hundreds of agents: table rows are kept and reused between
// snapshots (only changed text is written), the agent list shows at most ROW_LIMIT rows
// after filtering, and the chart is redrawn at most once a second.
import { applyLanguage, seconds, t, toggleLanguage } from "./i18n.js";

const $ = <T extends HTMLElement>(id: string) => document.getElementById(id) as T;
const STATES = ["ready", "offered", "on-call", "wrap-up", "busy-delay", "not-ready", "logged-out"];
const ROW_LIMIT = 200;
const HOUR_MS = 3600_000;
const SVG_NS = "http://www.w3.org/2000/svg";
// Okabe-Ito: told apart by most colour-blind readers too.
const PALETTE = ["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000", "#8C6D1F"];

let token = sessionStorage.getItem("dasan-token") || "";
let lastSnapshot: any = null;
// The server's clock minus ours (from the snapshot's now_ms), so "time in state" holds
// even when this PC's clock is off.
let offset = 0;

interface Wallboard {
  snapshots: number;
  last: () => any;
  /** Agent rows in the DOM now. */
  rendered: number;
  /** How long the last snapshot took to render (ms), and the last chart drawing. */
  renderMs: number;
  chartMs: number;
}
const wallboard: Wallboard = { snapshots: 0, last: () => lastSnapshot, rendered: 0, renderMs: 0, chartMs: 0 };
(window as unknown as { wallboard: Wallboard }).wallboard = wallboard;

function fmt(key: string, vars: Record<string, string | number>): string {
  return t(key).replace(/\{(\w+)\}/g, (m, k: string) => (k in vars ? String(vars[k]) : m));
}

function known(key: string, fallback: string): string {
  const v = t(key);
  return v === key ? fallback : v;
}

const stateText = (state: string) => known(`st_${state.replace(/-/g, "_")}`, state);
const reasonText = (reason: string) => known(`r_${reason.replace(/-/g, "_")}`, reason);
const callStateText = (state: string) => known(`cs_${state.replace(/-/g, "_")}`, state);

function pct(x: number): string {
  return `${Math.round(x * 100)}%`;
}

function duration(ms: number): string {
  if (ms < HOUR_MS) return seconds(ms);
  const s = Math.floor(ms / 1000);
  return `${Math.floor(s / 3600)}:${String(Math.floor((s % 3600) / 60)).padStart(2, "0")}:${String(s % 60).padStart(2, "0")}`;
}

function esc(s: string): string {
  return s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

function setText(el: HTMLElement, text: string): void {
  if (el.textContent !== text) el.textContent = text;
}

const skillName = (s: string) => s.split(":")[0];

/** Replaces the options after the first ("all") when the list changed; keeps the choice. */
function syncOptions(sel: HTMLSelectElement, values: string[]): void {
  const have = Array.from(sel.options).slice(1).map((o) => o.value);
  if (have.length === values.length && have.every((v, i) => v === values[i])) return;
  const chosen = sel.value;
  while (sel.options.length > 1) sel.remove(1);
  for (const v of values) sel.add(new Option(v, v));
  sel.value = values.includes(chosen) ? chosen : "";
}

/** Puts `rows` in `body` in this order, reusing the elements; removes the others. */
function syncRows(body: HTMLTableSectionElement, rows: HTMLTableRowElement[]): void {
  let cursor = body.firstElementChild;
  for (const tr of rows) {
    if (cursor === tr) cursor = cursor.nextElementSibling;
    else body.insertBefore(tr, cursor);
  }
  while (cursor) {
    const next = cursor.nextElementSibling;
    cursor.remove();
    cursor = next;
  }
}

// ---- counts by state, per queue and per skill ----

interface CountRow {
  tr: HTMLTableRowElement;
  cells: Map<string, HTMLTableCellElement>;
  total: HTMLTableCellElement;
}
let countKeys = "";
const countRows = new Map<string, CountRow>();

function countRow(kind: "all" | "queue" | "skill", name: string): CountRow {
  const tr = document.createElement("tr");
  const th = document.createElement("th");
  th.scope = "row";
  if (kind === "all") {
    tr.dataset.all = "";
    th.dataset.t = "all_agents";
    th.textContent = t("all_agents");
  } else {
    if (kind === "queue") tr.dataset.queue = name;
    else tr.dataset.skill = name;
    const k = document.createElement("span");
    k.className = "muted";
    k.dataset.t = kind === "queue" ? "queue" : "wb_skill";
    k.textContent = t(k.dataset.t);
    th.append(k, ` ${name}`);
  }
  tr.append(th);
  const cells = new Map<string, HTMLTableCellElement>();
  for (const st of STATES) {
    const td = tr.insertCell();
    td.dataset.state = st;
    cells.set(st, td);
  }
  const total = tr.insertCell();
  total.className = "total";
  return { tr, cells, total };
}

function renderCounts(agents: any[], queueNames: string[], skillNames: string[]): void {
  const zero = () => new Map<string, number>(STATES.map((s) => [s, 0]));
  const all = zero();
  const byQueue = new Map<string, Map<string, number>>(queueNames.map((q) => [q, zero()]));
  const bySkill = new Map<string, Map<string, number>>(skillNames.map((k) => [k, zero()]));
  const totals = new Map<string, number>();
  const bump = (m: Map<string, number> | undefined, key: string, st: string) => {
    totals.set(key, (totals.get(key) ?? 0) + 1);
    if (m && m.has(st)) m.set(st, m.get(st)! + 1);
  };
  for (const a of agents) {
    const st = String(a.state);
    bump(all, "all", st);
    for (const q of agentQueues(a)) bump(byQueue.get(q), `q:${q}`, st);
    for (const k of new Set<string>((a.skills ?? []).map(skillName))) bump(bySkill.get(k), `s:${k}`, st);
  }
  const keys = ["all", ...queueNames.map((q) => `q:${q}`), ...skillNames.map((k) => `s:${k}`)];
  const body = $<HTMLTableElement>("state-counts").tBodies[0];
  if (keys.join("\n") !== countKeys) {
    countKeys = keys.join("\n");
    for (const k of [...countRows.keys()]) if (!keys.includes(k)) countRows.delete(k);
    const rows = keys.map((k) => {
      let r = countRows.get(k);
      if (!r) {
        r = k === "all" ? countRow("all", "") : countRow(k[0] === "q" ? "queue" : "skill", k.slice(2));
        countRows.set(k, r);
      }
      return r.tr;
    });
    syncRows(body, rows);
  }
  for (const k of keys) {
    const r = countRows.get(k)!;
    const m = k === "all" ? all : k[0] === "q" ? byQueue.get(k.slice(2))! : bySkill.get(k.slice(2))!;
    for (const st of STATES) {
      const n = m.get(st) ?? 0;
      const td = r.cells.get(st)!;
      setText(td, String(n));
      td.classList.toggle("zero", n === 0);
    }
    setText(r.total, String(totals.get(k) ?? 0));
  }
}

// ---- agents ----

interface AgentRow {
  id: string;
  a: any;
  /** When the agent entered its state, on this PC's clock. */
  since: number;
  state: string;
  search: string;
  queues: string[];
  skills: string[];
  tr?: HTMLTableRowElement;
  cells?: HTMLTableCellElement[];
  buttons?: HTMLButtonElement[];
  lang?: string;
}
const agentRows = new Map<string, AgentRow>();
let shownRows: AgentRow[] = [];
// Queue name by skill, for agents without a `queues` list (an older engine).
let queuesBySkill = new Map<string, string[]>();

function agentQueues(a: any): string[] {
  if (Array.isArray(a.queues)) return a.queues.map(String);
  const out = new Set<string>();
  for (const s of a.skills ?? []) for (const q of queuesBySkill.get(skillName(String(s))) ?? []) out.add(q);
  return [...out];
}

function updateAgents(agents: any[]): void {
  const now = Date.now();
  const seen = new Set<string>();
  for (const a of agents) {
    const id = String(a.id);
    seen.add(id);
    let r = agentRows.get(id);
    const state = String(a.state);
    if (!r) {
      r = { id, a, since: now, state, search: "", queues: [], skills: [] };
      agentRows.set(id, r);
    } else if (r.state !== state) {
      r.since = now;
    }
    if (typeof a.since_ms === "number") r.since = a.since_ms - offset;
    r.a = a;
    r.state = state;
    r.search = `${id}\n${a.name ?? ""}`.toLowerCase();
    r.queues = agentQueues(a);
    r.skills = (a.skills ?? []).map(String);
  }
  for (const id of [...agentRows.keys()]) if (!seen.has(id)) agentRows.delete(id);
}

function makeAgentRow(r: AgentRow): void {
  const tr = document.createElement("tr");
  tr.dataset.agent = r.id;
  const cells: HTMLTableCellElement[] = [];
  for (const cls of ["id", "name", "state", "in-state", "queues", "skills", "chats"]) {
    const td = tr.insertCell();
    td.className = cls;
    cells.push(td);
  }
  const actions = tr.insertCell();
  actions.className = "actions";
  const buttons: HTMLButtonElement[] = [];
  for (const [st, key] of [["ready", "ready"], ["not-ready", "not_ready"], ["logout", "logout"]]) {
    const b = document.createElement("button");
    b.type = "button";
    b.dataset.t = key;
    b.onclick = () => setState(r.id, st);
    actions.append(b);
    buttons.push(b);
  }
  r.tr = tr;
  r.cells = cells;
  r.buttons = buttons;
}

function updateAgentRow(r: AgentRow): void {
  if (!r.tr) makeAgentRow(r);
  const c = r.cells!;
  const a = r.a;
  const lang = document.documentElement.lang;
  if (r.lang !== lang) {
    r.lang = lang;
    for (const b of r.buttons!) b.textContent = t(b.dataset.t || "");
  }
  setText(c[0], r.id);
  setText(c[1], a.name ?? "");
  const st = c[2];
  setText(st, stateText(r.state) + (a.reason ? ` (${reasonText(String(a.reason))})` : ""));
  if (st.dataset.state !== r.state) {
    st.dataset.state = r.state;
    st.className = `state state-${r.state}`;
  }
  if ((st.dataset.reason ?? "") !== (a.reason ?? "")) {
    if (a.reason) st.dataset.reason = String(a.reason);
    else delete st.dataset.reason;
  }
  setText(c[3], duration(Date.now() - r.since));
  setText(c[4], r.queues.join(", "));
  setText(c[5], r.skills.join(" "));
  setText(c[6], `${a.chats ?? 0}/${a.max_chats ?? 0}`);
}

function renderAgents(): void {
  const fq = $<HTMLSelectElement>("f-queue").value;
  const fs = $<HTMLSelectElement>("f-state").value;
  const fk = $<HTMLSelectElement>("f-skill").value;
  const q = $<HTMLInputElement>("f-search").value.trim().toLowerCase();
  const match: AgentRow[] = [];
  for (const r of agentRows.values()) {
    if (fs && r.state !== fs) continue;
    if (fq && !r.queues.includes(fq)) continue;
    if (fk && !r.skills.some((s) => skillName(s) === fk)) continue;
    if (q && !r.search.includes(q)) continue;
    match.push(r);
  }
  // Longest in their state first.
  match.sort((x, y) => x.since - y.since || (x.id < y.id ? -1 : x.id > y.id ? 1 : 0));
  shownRows = match.slice(0, ROW_LIMIT);
  for (const r of shownRows) updateAgentRow(r);
  syncRows(
    $<HTMLTableElement>("agents").tBodies[0],
    shownRows.map((r) => r.tr!),
  );
  wallboard.rendered = shownRows.length;
  setText($("agents-count"), fmt("shown_of", { shown: shownRows.length, total: agentRows.size }));
  const more = $("agents-more");
  const rest = match.length - shownRows.length;
  more.hidden = rest === 0 && match.length > 0;
  setText(more, match.length === 0 ? t("no_agents") : rest > 0 ? fmt("more_rows", { n: rest }) : "");
}

// ---- queues ----

interface QueueRow {
  tr: HTMLTableRowElement;
  cells: HTMLTableCellElement[];
  targets: HTMLElement;
  edit: HTMLButtonElement;
}
const queueRows = new Map<string, QueueRow>();
let queueKeys = "";
// The open targets form: its queue and its row (kept across snapshots, so typing survives).
let editing: { queue: string; tr: HTMLTableRowElement } | null = null;

function queueRow(name: string): QueueRow {
  const tr = document.createElement("tr");
  tr.dataset.queue = name;
  const cells: HTMLTableCellElement[] = [];
  for (const cls of ["name", "waiting", "longest", "sl", "asa", "abandon", "staffed", "targets"]) {
    const td = tr.insertCell();
    td.className = cls;
    cells.push(td);
  }
  const targets = document.createElement("span");
  const edit = document.createElement("button");
  edit.type = "button";
  edit.className = "edit-targets";
  // A pencil, named for screen readers (data-t-label) and on hover.
  edit.dataset.tLabel = "edit_targets";
  edit.setAttribute("aria-label", t("edit_targets"));
  edit.textContent = "✎";
  edit.setAttribute("aria-expanded", "false");
  edit.onclick = () => openTargets(name);
  cells[7].append(targets, " ", edit);
  return { tr, cells, targets, edit };
}

function alertCell(td: HTMLElement, on: boolean): void {
  td.classList.toggle("alert", on);
  if (on) td.title = t("below_target");
  else td.removeAttribute("title");
}

function renderQueues(queues: any[]): void {
  const body = $<HTMLTableElement>("queues").tBodies[0];
  const names = queues.map((q) => String(q.name));
  if (names.join("\n") !== queueKeys) {
    queueKeys = names.join("\n");
    for (const k of [...queueRows.keys()]) if (!names.includes(k)) queueRows.delete(k);
    if (editing && !names.includes(editing.queue)) editing = null;
    const rows: HTMLTableRowElement[] = [];
    for (const n of names) {
      let r = queueRows.get(n);
      if (!r) queueRows.set(n, (r = queueRow(n)));
      rows.push(r.tr);
      if (editing?.queue === n) rows.push(editing.tr);
    }
    syncRows(body, rows);
  }
  for (const q of queues) {
    const r = queueRows.get(String(q.name))!;
    const c = r.cells;
    const w = q.window ?? {};
    const tg = q.targets;
    setText(c[0], String(q.name));
    setText(c[1], String(q.waiting?.length ?? 0));
    setText(c[2], seconds(q.longest_wait_ms ?? 0));
    setText(c[3], typeof w.service_level === "number" ? pct(w.service_level) : "-");
    setText(c[4], typeof w.asa_s === "number" ? `${w.asa_s.toFixed(1)} s` : "-");
    setText(c[5], typeof w.abandon === "number" ? pct(w.abandon) : "-");
    setText(c[6], `${q.agents_ready ?? 0}/${q.agents_staffed ?? 0}`);
    const answered = typeof w.answered === "number" ? w.answered > 0 : true;
    alertCell(c[3], !!tg && typeof tg.sl_target === "number" && answered && w.service_level < tg.sl_target);
    alertCell(
      c[2],
      !!tg && typeof tg.wait_alert_s === "number" && (q.longest_wait_ms ?? 0) / 1000 > tg.wait_alert_s,
    );
    setText(
      r.targets,
      tg ? `${pct(tg.sl_target ?? 0)} · ${tg.wait_alert_s ?? "-"} s` : "-",
    );
    const tip = `${t("sl_target_pct")} ${tg ? pct(tg.sl_target ?? 0) : "-"}${q.sl_threshold_s ? ` (${q.sl_threshold_s} s)` : ""}, ${t("wait_alert_s")} ${tg?.wait_alert_s ?? "-"}`;
    if (r.cells[7].title !== tip) r.cells[7].title = tip;
    if (r.edit.title !== t("edit_targets")) r.edit.title = t("edit_targets");
    r.edit.setAttribute("aria-expanded", String(editing?.queue === q.name));
  }
}

function openTargets(queue: string): void {
  if (editing?.queue === queue) return closeTargets(true);
  closeTargets(false);
  const q = (lastSnapshot?.queues ?? []).find((x: any) => x.name === queue);
  const tg = q?.targets ?? {};
  const tr = document.createElement("tr");
  tr.className = "wb-targets-row";
  tr.dataset.targetsFor = queue;
  const td = tr.insertCell();
  td.colSpan = 8;
  const form = document.createElement("form");
  form.className = "row wb-targets";
  const field = (key: string, id: string, value: number, min: number, max: number) => {
    const label = document.createElement("label");
    const span = document.createElement("span");
    span.dataset.t = key;
    span.textContent = t(key);
    const input = document.createElement("input");
    input.type = "number";
    input.id = id;
    input.min = String(min);
    input.max = String(max);
    input.step = "1";
    input.required = true;
    input.value = String(value);
    label.append(span, " ", input);
    form.append(label);
    return input;
  };
  const sl = field("sl_target_pct", "t-sl", Math.round((tg.sl_target ?? 0.8) * 100), 1, 100);
  const wait = field("wait_alert_s", "t-wait", tg.wait_alert_s ?? 60, 1, 3600);
  const save = document.createElement("button");
  save.type = "submit";
  save.dataset.t = "save";
  save.textContent = t("save");
  const cancel = document.createElement("button");
  cancel.type = "button";
  cancel.dataset.t = "wb_cancel";
  cancel.textContent = t("wb_cancel");
  cancel.onclick = () => closeTargets(true);
  form.append(save, cancel);
  form.onsubmit = (e) => {
    e.preventDefault();
    putTargets(queue, Number(sl.value) / 100, Number(wait.value));
  };
  form.onkeydown = (e) => {
    if (e.key === "Escape") closeTargets(true);
  };
  td.append(form);
  editing = { queue, tr };
  const row = queueRows.get(queue);
  row?.tr.after(tr);
  row?.edit.setAttribute("aria-expanded", "true");
  sl.focus();
  sl.select();
}

function closeTargets(focusBack: boolean): void {
  if (!editing) return;
  const row = queueRows.get(editing.queue);
  editing.tr.remove();
  editing = null;
  row?.edit.setAttribute("aria-expanded", "false");
  if (focusBack) row?.edit.focus();
}

async function putTargets(queue: string, slTarget: number, waitAlert: number): Promise<void> {
  let r: Response;
  try {
    r = await fetch(`/api/queues/${encodeURIComponent(queue)}/targets`, {
      method: "PUT",
      headers: { Authorization: `Bearer ${token}`, "Content-Type": "application/json" },
      body: JSON.stringify({ sl_target: slTarget, wait_alert_s: waitAlert }),
    });
  } catch (e) {
    $("alert").textContent = String(e);
    return;
  }
  if (!r.ok) {
    $("alert").textContent = (await r.json().catch(() => ({}))).error || String(r.status);
    return;
  }
  $("alert").textContent = "";
  const q = (lastSnapshot?.queues ?? []).find((x: any) => x.name === queue);
  if (q) {
    q.targets = { ...(q.targets ?? {}), sl_target: slTarget, wait_alert_s: waitAlert };
    renderQueues(lastSnapshot.queues);
  }
  closeTargets(true);
  const status = $("queues-status");
  status.textContent = `${queue}: ${t("targets_saved")}`;
  setTimeout(() => {
    if (status.textContent?.startsWith(`${queue}:`)) status.textContent = "";
  }, 4000);
}

// ---- text queues and calls ----

function cell(row: HTMLTableRowElement, text: string, cls = ""): HTMLTableCellElement {
  const td = row.insertCell();
  td.textContent = text;
  if (cls) td.className = cls;
  return td;
}

function renderTextQueues(queues: any[]): void {
  // The text channel of the queues that take it: conversations waiting and with agents,
  // and the window's figures where "answered" is an agent's first reply.
  const tb = $<HTMLTableElement>("text-queues").tBodies[0];
  tb.textContent = "";
  const textQueues = queues.filter((q: any) => q.text);
  $("text-panel").hidden = textQueues.length === 0;
  for (const q of textQueues) {
    const r = tb.insertRow();
    r.dataset.queue = q.name;
    cell(r, q.name);
    cell(r, String(q.text.waiting), "waiting");
    cell(r, seconds(q.text.oldest_wait_ms));
    cell(r, String(q.text.open), "open");
    cell(r, pct(q.text.window.service_level));
    cell(r, `${q.text.window.asa_s.toFixed(1)} s`, "first-response");
    cell(r, String(q.text.window.abandoned + q.text.window.short_abandoned));
  }
}

const callRows = new Map<string, { tr: HTMLTableRowElement; cells: HTMLTableCellElement[] }>();

function renderCalls(calls: any[]): void {
  const seen = new Set<string>();
  const rows: HTMLTableRowElement[] = [];
  for (const c of calls) {
    const id = String(c.call_id);
    seen.add(id);
    let r = callRows.get(id);
    if (!r) {
      const tr = document.createElement("tr");
      tr.dataset.call = id;
      const cells = ["queue", "caller", "state", "agent", "waited"].map((cls) => {
        const td = tr.insertCell();
        td.className = cls;
        return td;
      });
      callRows.set(id, (r = { tr, cells }));
    }
    const st = String(c.state);
    setText(r.cells[0], String(c.queue ?? ""));
    setText(r.cells[1], String(c.caller ?? ""));
    setText(r.cells[2], callStateText(st));
    r.cells[2].dataset.state = st;
    setText(r.cells[3], c.agent || "");
    setText(r.cells[4], seconds(c.wait_ms ?? 0));
    rows.push(r.tr);
  }
  for (const id of [...callRows.keys()]) if (!seen.has(id)) callRows.delete(id);
  syncRows($<HTMLTableElement>("calls").tBodies[0], rows);
}

// ---- the live chart ----

let chartAt = 0;
let chartTimer = 0;
// What the chart shows, to skip redrawing the same picture (the time axis moves by less
// than a pixel in 30 s, so an unchanged chart is redrawn only that often).
let chartSig = "";
let chartDrawnAt = 0;

function scheduleChart(): void {
  const wait = chartAt + 1000 - Date.now();
  if (wait <= 0) drawChart();
  else if (!chartTimer) {
    chartTimer = window.setTimeout(() => {
      chartTimer = 0;
      drawChart();
    }, wait);
  }
}

interface Pt {
  at: number;
  waiting: number;
  sl: number | null;
  live?: boolean;
}

function drawChart(): void {
  chartAt = Date.now();
  const began = performance.now();
  const s = lastSnapshot;
  const box = $("live-chart");
  if (!s) return;
  const points: any[] = Array.isArray(s.history?.points) ? s.history.points : [];
  const end = typeof s.now_ms === "number" ? s.now_ms : Date.now() + offset;
  const start = end - HOUR_MS;
  const all: string[] = (s.queues ?? []).map((q: any) => String(q.name));
  const chosen = $<HTMLSelectElement>("chart-queue").value;
  const names = chosen && all.includes(chosen) ? [chosen] : all;
  const sig = [
    document.documentElement.lang,
    chosen,
    all.join(","),
    points.length,
    points[0]?.at_ms,
    points[points.length - 1]?.at_ms,
    JSON.stringify(points[points.length - 1]?.queues ?? null),
    ...(s.queues ?? []).map((q: any) => `${q.waiting?.length}:${q.window?.service_level}:${q.window?.answered}`),
  ].join("|");
  if (sig === chartSig && Date.now() - chartDrawnAt < 30_000) return;
  chartSig = sig;
  chartDrawnAt = Date.now();
  const series = names.map((name) => {
    const pts: Pt[] = [];
    for (const p of points) {
      const v = p?.queues?.[name];
      if (!v || typeof p.at_ms !== "number" || p.at_ms < start) continue;
      pts.push({ at: p.at_ms, waiting: Number(v.waiting) || 0, sl: typeof v.service_level === "number" ? v.service_level : null });
    }
    // Now, from the snapshot itself: the chart moves with every snapshot, not every step.
    const q = (s.queues ?? []).find((x: any) => x.name === name);
    if (q) {
      const w = q.window ?? {};
      const answered = typeof w.answered === "number" ? w.answered > 0 : true;
      pts.push({
        at: end,
        waiting: q.waiting?.length ?? 0,
        sl: answered && typeof w.service_level === "number" ? w.service_level : null,
        live: true,
      });
    }
    return { name, colour: PALETTE[all.indexOf(name) % PALETTE.length], pts };
  });
  let maxWait = 4;
  for (const sr of series) for (const p of sr.pts) maxWait = Math.max(maxWait, p.waiting);
  const step = maxWait <= 10 ? Math.ceil(maxWait / 4) || 1 : Math.ceil(maxWait / 4 / 5) * 5;
  maxWait = step * 4;

  const W = 640;
  const H = 240;
  const L = 40;
  const R = 44;
  const T = 10;
  const B = 26;
  const x = (at: number) => L + ((at - start) / HOUR_MS) * (W - L - R);
  const yW = (v: number) => T + (1 - v / maxWait) * (H - T - B);
  const yS = (v: number) => T + (1 - v) * (H - T - B);
  const f = (n: number) => n.toFixed(1);
  const out: string[] = [];
  out.push(`<svg xmlns="${SVG_NS}" viewBox="0 0 ${W} ${H}" role="img" aria-label="${esc(t("chart_summary"))}">`);
  // Grid and scales: waiting on the left, SL % on the right, minutes ago below.
  for (let i = 0; i <= 4; i++) {
    const y = T + (i / 4) * (H - T - B);
    out.push(`<line class="grid" x1="${L}" x2="${W - R}" y1="${f(y)}" y2="${f(y)}"/>`);
    out.push(`<text class="axis" x="${L - 4}" y="${f(y + 4)}" text-anchor="end">${maxWait - i * step}</text>`);
    out.push(`<text class="axis" x="${W - R + 4}" y="${f(y + 4)}">${100 - i * 25}%</text>`);
  }
  for (let m = 60; m >= 0; m -= 15) {
    const xx = x(end - m * 60_000);
    out.push(`<line class="grid" x1="${f(xx)}" x2="${f(xx)}" y1="${T}" y2="${H - B}"/>`);
    const label = m === 0 ? t("wb_now") : fmt("minutes_ago", { n: m });
    out.push(`<text class="axis" x="${f(xx)}" y="${H - 8}" text-anchor="${m === 60 ? "start" : m === 0 ? "end" : "middle"}">${esc(label)}</text>`);
  }
  for (const sr of series) {
    const qn = esc(sr.name);
    const line = sr.pts.map((p, i) => `${i ? "L" : "M"}${f(x(p.at))} ${f(yW(p.waiting))}`).join("");
    if (line) out.push(`<path class="waiting" d="${line}" stroke="${sr.colour}"/>`);
    let sl = "";
    let pen = false;
    for (const p of sr.pts) {
      if (p.sl === null) {
        pen = false;
        continue;
      }
      sl += `${pen ? "L" : "M"}${f(x(p.at))} ${f(yS(p.sl))}`;
      pen = true;
    }
    if (sl) out.push(`<path class="sl" d="${sl}" stroke="${sr.colour}"/>`);
    sr.pts.forEach((p, i) => {
      const id = p.live ? "live" : String(i);
      out.push(
        `<circle data-point="${id}" data-series="waiting" data-queue="${qn}" data-at="${p.at}" data-value="${p.waiting}" cx="${f(x(p.at))}" cy="${f(yW(p.waiting))}" r="${p.live ? 3.5 : 2}" fill="${sr.colour}"/>`,
      );
      if (p.sl !== null) {
        out.push(
          `<circle data-point="${id}" data-series="sl" data-queue="${qn}" data-at="${p.at}" data-value="${p.sl}" cx="${f(x(p.at))}" cy="${f(yS(p.sl))}" r="${p.live ? 3 : 1.8}" fill="#fff" stroke="${sr.colour}"/>`,
        );
      }
    });
  }
  if (points.length === 0) {
    out.push(`<text class="axis" x="${W / 2}" y="${H / 2}" text-anchor="middle">${esc(t("chart_no_data"))}</text>`);
  }
  out.push("</svg>");
  box.innerHTML = out.join("");

  // The legend: a swatch, the queue and its figures now.
  const legend = $("chart-legend");
  legend.textContent = "";
  for (const sr of series) {
    const li = document.createElement("li");
    li.dataset.queue = sr.name;
    const sw = document.createElement("span");
    sw.className = "swatch";
    sw.style.background = sr.colour;
    const now = sr.pts[sr.pts.length - 1];
    li.append(
      sw,
      ` ${sr.name}: ${t("chart_waiting")} ${now?.waiting ?? 0}, ${t("sl")} ${now && now.sl !== null ? pct(now.sl) : "-"}`,
    );
    legend.append(li);
  }
  wallboard.chartMs = performance.now() - began;
}

// ---- a snapshot ----

function render(s: any): void {
  const began = performance.now();
  lastSnapshot = s;
  if (typeof s.now_ms === "number") offset = s.now_ms - Date.now();
  const queues: any[] = Array.isArray(s.queues) ? s.queues : [];
  const agents: any[] = Array.isArray(s.agents) ? s.agents : [];
  queuesBySkill = new Map();
  for (const q of queues) {
    if (!q.skill) continue;
    const l = queuesBySkill.get(String(q.skill)) ?? [];
    l.push(String(q.name));
    queuesBySkill.set(String(q.skill), l);
  }
  renderQueues(queues);
  renderTextQueues(queues);
  renderCalls(Array.isArray(s.calls) ? s.calls : []);
  updateAgents(agents);
  // Filters and count rows: the snapshot's queues, then any other queue agents are in.
  const queueNames = queues.map((q) => String(q.name));
  const extraQueues = new Set<string>();
  const skills = new Set<string>();
  for (const r of agentRows.values()) {
    for (const q of r.queues) if (!queueNames.includes(q)) extraQueues.add(q);
    for (const k of r.skills) skills.add(skillName(k));
  }
  const allQueues = [...queueNames, ...[...extraQueues].sort()];
  const skillNames = [...skills].sort();
  syncOptions($<HTMLSelectElement>("f-queue"), allQueues);
  syncOptions($<HTMLSelectElement>("f-skill"), skillNames);
  syncOptions($<HTMLSelectElement>("chart-queue"), queueNames);
  renderCounts(agents, allQueues, skillNames);
  renderAgents();
  scheduleChart();
  wallboard.renderMs = performance.now() - began;
}

function rerender(): void {
  if (!lastSnapshot) return;
  render(lastSnapshot);
  drawChart();
}

async function setState(agent: string, state: string): Promise<void> {
  const r = await fetch(`/api/agents/${encodeURIComponent(agent)}/state`, {
    method: "POST",
    headers: { Authorization: `Bearer ${token}`, "Content-Type": "application/json" },
    body: JSON.stringify(state === "not-ready" ? { state, reason: "supervisor" } : { state }),
  });
  if (!r.ok) $("alert").textContent = (await r.json().catch(() => ({}))).error || String(r.status);
}

function connect(): void {
  if (!token) return;
  const proto = location.protocol === "https:" ? "wss:" : "ws:";
  // The token goes in the first message, not the URL (URLs end up in logs and history).
  const ws = new WebSocket(`${proto}//${location.host}/supervisor/ws`);
  let opened = false;
  ws.onopen = () => ws.send(JSON.stringify({ op: "auth", token }));
  ws.onmessage = (m) => {
    const s = JSON.parse(m.data);
    if (s.ev === "auth-ok") {
      opened = true;
      $("connect").hidden = true;
      $("live").textContent = t("live");
      $("alert").textContent = "";
    } else if (s.ev === "snapshot") {
      wallboard.snapshots++;
      render(s);
    } else if (s.ev === "error") {
      $("alert").textContent = s.message;
    }
  };
  ws.onclose = () => {
    $("live").textContent = t("offline");
    $("connect").hidden = false;
    if (opened) {
      setTimeout(connect, 2000); // the engine restarted or the network blinked
    } else {
      $("alert").textContent = t("token_refused");
      sessionStorage.removeItem("dasan-token");
      token = "";
    }
  };
}

applyLanguage();
$("lang").onclick = () => {
  toggleLanguage();
  if ($("live").textContent) $("live").textContent = t(wallboard.snapshots > 0 && $("connect").hidden ? "live" : "offline");
  rerender();
};
$("connect").addEventListener("submit", (e) => {
  e.preventDefault();
  token = $<HTMLInputElement>("token").value.trim();
  sessionStorage.setItem("dasan-token", token);
  connect();
});
for (const id of ["f-queue", "f-state", "f-skill"]) $(id).addEventListener("change", renderAgents);
$("f-search").addEventListener("input", renderAgents);
$("chart-queue").addEventListener("change", drawChart);
setInterval(() => {
  const now = Date.now();
  for (const r of shownRows) if (r.cells) setText(r.cells[3], duration(now - r.since));
}, 1000);
connect();
