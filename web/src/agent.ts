// The agent desktop: logs in over /agent/ws, keeps one WebRTC connection to the engine for
// the session, and drives calls with the protocol described in src/web/agent_ws.rs.
import { applyLanguage, seconds, t, toggleLanguage } from "./i18n.js";

const $ = <T extends HTMLElement>(id: string) => document.getElementById(id) as T;

// State the tests read (window.dasan): the connection, received audio level, timings.
interface Dasan {
  pc?: RTCPeerConnection;
  ws?: WebSocket;
  token?: string;
  state?: string;
  record?: string;
  rms: number;
  answerClickedAt?: number;
  answerToAudioMs?: number;
  events: string[];
}
const dasan: Dasan = { rms: 0, events: [] };
(window as unknown as { dasan: Dasan }).dasan = dasan;

let ws: WebSocket | undefined;
let pc: RTCPeerConnection | undefined;
let mic: MediaStream | undefined;
let stateSince = Date.now();
let callSince = 0;
let offerWait = 0;
let offerAt = 0;

function alert(msg: string): void {
  $("alert").textContent = msg;
}

function send(v: unknown): void {
  if (ws && ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify(v));
}

function show(id: string, on: boolean): void {
  $(id).hidden = !on;
}

function login(ev: Event): void {
  ev.preventDefault();
  alert("");
  // Over plain http:// from another PC the browser withholds the microphone
  // (navigator.mediaDevices is undefined): say so rather than fail silently later.
  if (!window.isSecureContext) {
    alert(t("insecure"));
    return;
  }
  if (!("RTCPeerConnection" in window)) {
    alert(t("no_webrtc"));
    return;
  }
  const agent = $<HTMLInputElement>("agent").value.trim();
  const password = $<HTMLInputElement>("password").value;
  const proto = location.protocol === "https:" ? "wss:" : "ws:";
  ws = new WebSocket(`${proto}//${location.host}/agent/ws`);
  dasan.ws = ws;
  ws.onopen = () => send({ op: "login", agent, password });
  ws.onmessage = (m) => onEvent(JSON.parse(m.data));
  ws.onclose = () => {
    dasan.events.push("closed");
    show("desk", false);
    show("login", true);
    teardown();
  };
}

function teardown(): void {
  pc?.close();
  pc = undefined;
  mic?.getTracks().forEach((tr) => tr.stop());
  mic = undefined;
}

// iceServers: the engine's [webrtc] ice_servers (STUN/TURN for a browser behind NAT).
async function startMedia(iceServers: RTCIceServer[]): Promise<void> {
  try {
    // ?audio=raw turns the browser's voice processing off (echo cancellation, noise
    // suppression, gain control): for test tones, which noise suppression removes.
    const raw = new URLSearchParams(location.search).get("audio") === "raw";
    mic = await navigator.mediaDevices.getUserMedia({
      audio: raw ? { echoCancellation: false, noiseSuppression: false, autoGainControl: false } : true,
    });
  } catch {
    alert(t("no_mic"));
    return;
  }
  pc = new RTCPeerConnection({ iceServers });
  dasan.pc = pc;
  mic.getTracks().forEach((tr) => pc!.addTrack(tr, mic!));
  pc.ontrack = (e) => {
    const audio = $<HTMLAudioElement>("remote");
    audio.srcObject = e.streams[0] || new MediaStream([e.track]);
    audio.play().catch(() => undefined);
    meter(e.track);
  };
  pc.onconnectionstatechange = () => {
    if (pc && (pc.connectionState === "failed" || pc.connectionState === "disconnected")) {
      $("media").textContent = t("media_down");
    }
  };
  const offer = await pc.createOffer();
  await pc.setLocalDescription(offer);
  // No trickle: wait for every candidate, then send one offer.
  await new Promise<void>((done) => {
    if (pc!.iceGatheringState === "complete") return done();
    const check = () => {
      if (pc!.iceGatheringState === "complete") done();
    };
    pc!.addEventListener("icegatheringstatechange", check);
    setTimeout(done, 3000);
  });
  send({ op: "sdp", sdp: pc.localDescription?.sdp });
}

// Received audio level (RMS of the remote track), and the time from the answer click to
// the first audible frame.
function meter(track: MediaStreamTrack): void {
  const ctx = new AudioContext();
  const src = ctx.createMediaStreamSource(new MediaStream([track]));
  const an = ctx.createAnalyser();
  an.fftSize = 1024;
  src.connect(an);
  const buf = new Float32Array(an.fftSize);
  const measure = () => {
    an.getFloatTimeDomainData(buf);
    let sum = 0;
    for (const v of buf) sum += v * v;
    dasan.rms = Math.sqrt(sum / buf.length);
    if (dasan.answerClickedAt && dasan.answerToAudioMs === undefined && dasan.rms > 0.01) {
      dasan.answerToAudioMs = performance.now() - dasan.answerClickedAt;
    }
  };
  ctx.resume().catch(() => undefined);
  // Every 20 ms: requestAnimationFrame would stop in a background tab.
  setInterval(measure, 20);
}

function onEvent(e: Record<string, any>): void {
  dasan.events.push(e.ev);
  switch (e.ev) {
    case "login-ok":
      dasan.token = e.token;
      show("login", false);
      show("desk", true);
      startMedia(Array.isArray(e.ice_servers) ? e.ice_servers : []);
      break;
    case "sdp":
      pc?.setRemoteDescription({ type: "answer", sdp: e.sdp });
      break;
    case "media":
      $("media").textContent = e.state === "connected" ? t("media_up") : t("media_down");
      break;
    case "state": {
      if (e.state !== dasan.state) stateSince = Date.now();
      dasan.state = e.state;
      const el = $("state");
      el.textContent = e.state + (e.reason ? ` (${e.reason})` : "");
      el.className = `state-${e.state}`;
      break;
    }
    case "offer":
      dasan.record = e.record;
      $("o-caller").textContent = e.caller;
      $("o-language").textContent = e.language;
      $("o-queue").textContent = e.queue;
      offerWait = e.wait_ms;
      offerAt = Date.now();
      $<HTMLInputElement>("record-id").value = e.record;
      show("offer", true);
      $("answer").focus();
      break;
    case "connected":
      show("offer", false);
      show("incall", true);
      callSince = Date.now();
      $("hangup").focus();
      break;
    case "ended":
      show("offer", false);
      show("incall", false);
      dasan.answerClickedAt = undefined;
      alert(t("ended"));
      break;
    case "hold":
      $("hold").setAttribute("aria-pressed", String(e.on));
      $("hold").textContent = e.on ? t("unhold") : t("hold");
      break;
    case "error": {
      const key = `e_${String(e.code).replace(/-/g, "_")}`;
      const text = t(key);
      alert(text !== key ? text : e.message);
      dasan.events.push(`error:${e.code}`);
      break;
    }
  }
}

async function api(path: string, init: RequestInit = {}): Promise<Response> {
  const r = await fetch(path, {
    ...init,
    headers: { ...(init.headers || {}), Authorization: `Bearer ${dasan.token}`, "Content-Type": "application/json" },
  });
  if (r.status === 401) alert(t("e_session_expired"));
  return r;
}

async function kbSearch(ev: Event): Promise<void> {
  ev.preventDefault();
  const q = $<HTMLInputElement>("kb-q").value.trim();
  if (!q) return;
  const r = await api(`/api/kb?q=${encodeURIComponent(q)}&limit=10`);
  const list = $("kb-results");
  list.textContent = "";
  if (!r.ok) return;
  const body = await r.json();
  for (const hit of body.results || []) {
    const li = document.createElement("li");
    const title = document.createElement("strong");
    title.textContent = hit.title;
    const text = document.createElement("p");
    text.textContent = hit.answer || hit.body || "";
    li.append(title, text);
    list.append(li);
  }
}

async function saveRecord(ev: Event): Promise<void> {
  ev.preventDefault();
  const id = $<HTMLInputElement>("record-id").value;
  if (!id) return;
  const r = await api(`/api/records/${encodeURIComponent(id)}`, {
    method: "PATCH",
    body: JSON.stringify({
      category: $<HTMLInputElement>("category").value,
      notes: $<HTMLTextAreaElement>("notes").value,
    }),
  });
  $("saved").textContent = r.ok ? t("saved") : `${r.status}`;
}

function wire(): void {
  applyLanguage();
  $("lang").onclick = toggleLanguage;
  $("login").addEventListener("submit", login);
  $("ready").onclick = () => send({ op: "state", state: "ready" });
  $("not-ready").onclick = () => send({ op: "state", state: "not-ready", reason: $<HTMLSelectElement>("reason").value });
  $("logout").onclick = () => {
    send({ op: "state", state: "logout" });
    ws?.close();
  };
  $("answer").onclick = () => {
    dasan.answerClickedAt = performance.now();
    dasan.answerToAudioMs = undefined;
    send({ op: "answer" });
  };
  $("decline").onclick = () => send({ op: "hangup" });
  $("hangup").onclick = () => send({ op: "hangup" });
  $("mute").onclick = () => {
    const on = $("mute").getAttribute("aria-pressed") !== "true";
    mic?.getAudioTracks().forEach((tr) => (tr.enabled = !on));
    $("mute").setAttribute("aria-pressed", String(on));
    $("mute").textContent = on ? t("unmute") : t("mute");
  };
  $("hold").onclick = () => send({ op: "hold", on: $("hold").getAttribute("aria-pressed") !== "true" });
  $("transfer").onclick = () => send({ op: "transfer", target: $<HTMLInputElement>("transfer-to").value.trim() });
  document.querySelectorAll<HTMLButtonElement>(".keypad button").forEach((b) => {
    b.onclick = () => send({ op: "dtmf", digit: b.textContent });
  });
  $("kb-form").addEventListener("submit", kbSearch);
  $("record-form").addEventListener("submit", saveRecord);
  setInterval(() => {
    $("state-timer").textContent = seconds(Date.now() - stateSince);
    if (callSince) $("call-timer").textContent = seconds(Date.now() - callSince);
    if (!$("offer").hidden) $("o-wait").textContent = seconds(offerWait + Date.now() - offerAt);
  }, 1000);
  if (!window.isSecureContext) alert(t("insecure"));
  else if (!("RTCPeerConnection" in window)) alert(t("no_webrtc"));
}

wire();
