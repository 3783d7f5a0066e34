// The public web chat's test page: the first message starts a chat (POST /api/chat), the
// counsellor's replies come on /api/chat/ws, further messages go on the socket.
import { applyLanguage, t, toggleLanguage } from "./i18n.js";

const $ = <T extends HTMLElement>(id: string) => document.getElementById(id) as T;
let token = "";
let ws: WebSocket | undefined;
// What the tests read.
const state = { lines: [] as { from: string; text: string }[], closed: false };
(window as unknown as { chat: typeof state }).chat = state;

function line(from: string, text: string): void {
  state.lines.push({ from, text });
  const li = document.createElement("li");
  li.className = from === "me" ? "line out" : from === "engine" ? "line notice" : "line in";
  const who = document.createElement("strong");
  who.textContent = from === "me" ? t("chat_self") : from === "engine" ? t("chat_notice") : t("chat_counsellor");
  const body = document.createElement("span");
  body.textContent = ` ${text}`;
  li.append(who, body);
  $("pub-log").append(li);
}

function listen(): void {
  const proto = location.protocol === "https:" ? "wss:" : "ws:";
  ws = new WebSocket(`${proto}//${location.host}/api/chat/ws`);
  ws.onopen = () => ws?.send(JSON.stringify({ token }));
  ws.onmessage = (m) => {
    const e = JSON.parse(m.data);
    if (e.ev === "line") line(e.from, e.text);
    else if (e.ev === "closed") {
      state.closed = true;
      $("alert").textContent = t("chat_closed");
      $<HTMLButtonElement>("pub-send").disabled = true;
      $("pub-end").hidden = true;
    } else if (e.ev === "error") $("alert").textContent = e.error;
  };
}

// Messages go out one after another: a second message typed while the first is still
// starting the chat must wait for its token, not start a chat of its own.
let queue: Promise<void> = Promise.resolve();

function send(ev: Event): void {
  ev.preventDefault();
  const box = $<HTMLTextAreaElement>("pub-text");
  const text = box.value.trim();
  if (!text) return;
  box.value = "";
  box.focus();
  queue = queue.then(() => deliver(text)).catch((e) => {
    $("alert").textContent = String(e);
  });
}

async function deliver(text: string): Promise<void> {
  if (token && ws && ws.readyState === WebSocket.OPEN) {
    ws.send(JSON.stringify({ op: "send", text }));
  } else if (token) {
    // The socket is not open yet (or dropped): the same chat, by POST. Starting another
    // chat here split one conversation in two when the second message came quickly.
    const r = await fetch("/api/chat", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ token, text }),
    });
    if (!r.ok) {
      const body = await r.json().catch(() => ({}));
      $("alert").textContent = body.error || String(r.status);
      return;
    }
    if (!ws || ws.readyState === WebSocket.CLOSED) listen();
  } else {
    const r = await fetch("/api/chat", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ service: new URLSearchParams(location.search).get("service") || "120", text }),
    });
    const body = await r.json().catch(() => ({}));
    if (!r.ok) {
      $("alert").textContent = body.error || String(r.status);
      return;
    }
    token = body.token;
    $("pub-end").hidden = false;
    listen();
  }
  line("me", text);
}

applyLanguage();
$("lang").onclick = toggleLanguage;
$("pub-form").addEventListener("submit", send);
$("pub-text").addEventListener("keydown", (e) => {
  if (e.key === "Enter" && !e.shiftKey && !e.isComposing) {
    e.preventDefault();
    $<HTMLFormElement>("pub-form").requestSubmit();
  }
});
$("pub-end").onclick = () =>
  fetch("/api/chat", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ token, close: true }),
  });
