// The wallboard: one WebSocket (/supervisor/ws) on which the engine pushes a snapshot of
// queues, agents and calls whenever something changed. Nothing here polls the server; the
// one-second timer only ages the "time in state" column.
import { applyLanguage, seconds, t, toggleLanguage } from "./i18n.js";

const $ = <T extends HTMLElement>(id: string) => document.getElementById(id) as T;
let token = sessionStorage.getItem("dasan-token") || "";
// When this page first saw each agent in its current state.
const since = new Map<string, { state: string; at: number }>();
let lastSnapshot: any = null;
(window as unknown as { wallboard: { snapshots: number; last: () => any } }).wallboard = {
  snapshots: 0,
  last: () => lastSnapshot,
};

function cell(row: HTMLTableRowElement, text: string, cls = ""): HTMLTableCellElement {
  const td = row.insertCell();
  td.textContent = text;
  if (cls) td.className = cls;
  return td;
}

function pct(x: number): string {
  return `${Math.round(x * 100)}%`;
}

function render(s: any): void {
  lastSnapshot = s;
  const qb = $<HTMLTableElement>("queues").tBodies[0];
  qb.textContent = "";
  for (const q of s.queues) {
    const r = qb.insertRow();
    r.dataset.queue = q.name;
    cell(r, q.name);
    cell(r, String(q.waiting.length), "waiting");
    cell(r, seconds(q.longest_wait_ms));
    cell(r, pct(q.window.service_level));
    cell(r, `${q.window.asa_s.toFixed(1)} s`);
    cell(r, pct(q.window.abandon));
    cell(r, `${q.agents_ready}/${q.agents_staffed}`);
  }
  // The text channel of the queues that take it: conversations waiting and with agents,
  // and the window's figures where "answered" is an agent's first reply.
  const tb = $<HTMLTableElement>("text-queues").tBodies[0];
  tb.textContent = "";
  const textQueues = s.queues.filter((q: any) => q.text);
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
  const ab = $<HTMLTableElement>("agents").tBodies[0];
  ab.textContent = "";
  const now = Date.now();
  for (const a of s.agents) {
    const seen = since.get(a.id);
    if (!seen || seen.state !== a.state) since.set(a.id, { state: a.state, at: now });
    const r = ab.insertRow();
    r.dataset.agent = a.id;
    cell(r, a.id);
    cell(r, a.state + (a.reason ? ` (${a.reason})` : ""), `state-${a.state}`);
    cell(r, seconds(now - (since.get(a.id)?.at ?? now)), "in-state");
    cell(r, `${a.chats ?? 0}/${a.max_chats ?? 0}`, "chats");
    const actions = r.insertCell();
    for (const [st, key] of [["ready", "ready"], ["not-ready", "not_ready"], ["logout", "logout"]]) {
      const b = document.createElement("button");
      b.type = "button";
      b.textContent = t(key);
      b.onclick = () => setState(a.id, st);
      actions.append(b);
    }
  }
  const cb = $<HTMLTableElement>("calls").tBodies[0];
  cb.textContent = "";
  for (const c of s.calls) {
    const r = cb.insertRow();
    r.dataset.call = c.call_id;
    cell(r, c.queue);
    cell(r, c.caller);
    cell(r, c.state);
    cell(r, c.agent || "");
    cell(r, seconds(c.wait_ms));
  }
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
      (window as any).wallboard.snapshots++;
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
$("lang").onclick = toggleLanguage;
$("connect").addEventListener("submit", (e) => {
  e.preventDefault();
  token = $<HTMLInputElement>("token").value.trim();
  sessionStorage.setItem("dasan-token", token);
  connect();
});
setInterval(() => {
  document.querySelectorAll<HTMLElement>("#agents tbody tr").forEach((r) => {
    const at = since.get(r.dataset.agent || "")?.at;
    const td = r.querySelector<HTMLElement>(".in-state");
    if (at && td) td.textContent = seconds(Date.now() - at);
  });
}, 1000);
connect();
