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
  /** The caller's video: frames shown (requestVideoFrameCallback) and its width. */
  videoFrames: number;
  videoWidth: number;
  /** Whether the camera is being sent (a video call with a camera). */
  camera: boolean;
  chats: Record<string, Chat>;
  /** The conversation whose tab is selected. */
  chat?: string;
}

// A text conversation as the engine's chat events describe it.
interface ChatLine {
  dir: "in" | "out" | "notice";
  text: string;
  /** The agent's own lines: until chat-sent or chat-failed comes back with `id`. */
  state?: "pending" | "sent" | "failed";
  id?: string;
  code?: string;
  at: number;
}
interface Chat {
  record: string;
  from: string;
  queue: string;
  language: string;
  unread: number;
  lines: ChatLine[];
}
const dasan: Dasan = { rms: 0, events: [], videoFrames: 0, videoWidth: 0, camera: false, chats: {} };
(window as unknown as { dasan: Dasan }).dasan = dasan;

let ws: WebSocket | undefined;
let pc: RTCPeerConnection | undefined;
let mic: MediaStream | undefined;
// The session's video: one transceiver made at login (so a video call needs no new
// negotiation), idle until a video call; the camera is opened only for such a call.
let videoTx: RTCRtpTransceiver | undefined;
let camera: MediaStream | undefined;
// Counts video calls ended, so a camera that opens only after its call ended is closed.
let videoCalls = 0;
let stateSince = Date.now();
let callSince = 0;
let offerWait = 0;
let offerAt = 0;
let callCaller = "";
// The state as the engine last said it, for the label (translated) and after-call work.
let deskState = { state: "", reason: "" };
// End of after-call work on this PC's clock (0: none, NaN: no time limit).
let wrapUntil = 0;
// The engine's clock minus ours, from the state events.
let clockOffset = 0;

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
  deskState = { state: "", reason: "" };
  wrapTick();
  clearChats();
  stopVideo();
  pc?.close();
  pc = undefined;
  videoTx = undefined;
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
  // Sends and receives, with no track yet: the camera is attached in a video call.
  videoTx = pc.addTransceiver("video", { direction: "sendrecv" });
  preferVideoCodec(videoTx);
  pc.ontrack = (e) => {
    if (e.track.kind === "video") {
      showCallerVideo(e.track);
      return;
    }
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

// The engine takes the first of VP8 and H.264 (Constrained Baseline, packetization mode 1)
// the offer lists, and answers a video call's video only in that codec. Browsers list VP8
// first; ?video=h264 puts H.264 first, for a desk whose callers' phones send H.264.
function preferVideoCodec(tx: RTCRtpTransceiver): void {
  const want = new URLSearchParams(location.search).get("video");
  if (want !== "h264" || !("setCodecPreferences" in tx)) return;
  const codecs = RTCRtpReceiver.getCapabilities("video")?.codecs ?? [];
  const h264 = (c: RTCRtpCodec) =>
    c.mimeType.toLowerCase() === "video/h264" &&
    /packetization-mode=1/.test(c.sdpFmtpLine ?? "") &&
    /profile-level-id=42e0/i.test(c.sdpFmtpLine ?? "");
  const first = codecs.filter(h264);
  if (first.length === 0) return;
  try {
    tx.setCodecPreferences([...first, ...codecs.filter((c) => !h264(c))]);
  } catch {
    // The browser's own order stays.
  }
}

// The caller's picture: the session's one remote video track, counted frame by frame.
function showCallerVideo(track: MediaStreamTrack): void {
  const v = $<HTMLVideoElement>("caller-video");
  v.srcObject = new MediaStream([track]);
  v.play().catch(() => undefined);
  const count = () => {
    dasan.videoFrames++;
    dasan.videoWidth = v.videoWidth;
    v.requestVideoFrameCallback(count);
  };
  if ("requestVideoFrameCallback" in v) v.requestVideoFrameCallback(count);
}

// A video call: the video area shows, and the camera (if there is one) is sent, at most
// at the bit rate the call's video was answered with.
async function startVideo(kbps: number | undefined): Promise<void> {
  show("video", true);
  $<HTMLVideoElement>("caller-video").play().catch(() => undefined);
  const call = videoCalls;
  let cam: MediaStream;
  try {
    cam = await navigator.mediaDevices.getUserMedia({ video: { width: 640, height: 480 } });
  } catch {
    if (call === videoCalls) alert(t("no_camera"));
    return;
  }
  if (call !== videoCalls) {
    cam.getTracks().forEach((tr) => tr.stop());
    return;
  }
  camera = cam;
  const track = camera.getVideoTracks()[0];
  if (!videoTx || !track) return;
  await videoTx.sender.replaceTrack(track);
  if (kbps && kbps > 0) {
    try {
      const p = videoTx.sender.getParameters();
      if (!p.encodings || p.encodings.length === 0) p.encodings = [{}];
      p.encodings[0].maxBitrate = kbps * 1000;
      await videoTx.sender.setParameters(p);
    } catch {
      // The browser's own rate control still applies.
    }
  }
  if (call !== videoCalls) return;
  $<HTMLVideoElement>("self-video").srcObject = camera;
  dasan.camera = true;
}

// The end of a call: the camera closes (its light goes off) and the area hides.
function stopVideo(): void {
  videoCalls++;
  show("video", false);
  videoTx?.sender.replaceTrack(null).catch(() => undefined);
  camera?.getTracks().forEach((tr) => tr.stop());
  camera = undefined;
  $<HTMLVideoElement>("self-video").srcObject = null;
  dasan.camera = false;
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

function known(key: string, fallback: string): string {
  const v = t(key);
  return v === key ? fallback : v;
}

// The state label in the page's language; its class stays state-<state>.
function stateLabel(): void {
  const { state, reason } = deskState;
  if (!state) return;
  const el = $("state");
  el.textContent =
    known(`st_${state.replace(/-/g, "_")}`, state) + (reason ? ` (${known(`r_${reason.replace(/-/g, "_")}`, reason)})` : "");
  el.className = `state-${state}`;
  el.dataset.state = state;
}

// After-call work: the time left, and the button that ends it early.
function wrapTick(): void {
  const on = deskState.state === "wrap-up" && dasan.state === "wrap-up";
  const el = $("wrap-countdown");
  show("wrap-countdown", on);
  show("wrap-done", on);
  if (!on) return;
  const text = Number.isNaN(wrapUntil)
    ? t("wrap_open")
    : t("wrap_countdown").replace("{s}", String(Math.max(0, Math.ceil((wrapUntil - Date.now()) / 1000))));
  if (el.textContent !== text) el.textContent = text;
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
      const changed = e.state !== dasan.state;
      // A state event is sent as the state begins: its since_ms is the engine's "now".
      if (typeof e.now_ms === "number") clockOffset = e.now_ms - Date.now();
      else if (changed && typeof e.since_ms === "number") clockOffset = e.since_ms - Date.now();
      if (changed) stateSince = Date.now();
      if (typeof e.since_ms === "number") stateSince = Math.min(Date.now(), e.since_ms - clockOffset);
      dasan.state = e.state;
      deskState = { state: String(e.state), reason: e.reason ? String(e.reason) : "" };
      wrapUntil =
        e.state !== "wrap-up" ? 0 : typeof e.wrap_up_until_ms === "number" ? e.wrap_up_until_ms - clockOffset : NaN;
      stateLabel();
      wrapTick();
      // The call's buttons are gone: "I'm done" takes the keyboard focus they had.
      if (changed && e.state === "wrap-up" && (document.activeElement === document.body || !document.activeElement)) {
        $("wrap-done").focus();
      }
      break;
    }
    case "offer": {
      // A chat's unsaved notes stay with that chat, and do not become the call's.
      const before = stashRecord();
      dasan.record = e.record;
      callCaller = e.caller;
      $("o-caller").textContent = e.caller;
      $("o-language").textContent = e.language;
      $("o-queue").textContent = e.queue;
      offerWait = e.wait_ms;
      offerAt = Date.now();
      $<HTMLInputElement>("record-id").value = e.record;
      if (chatOf(before)) fillRecord(undefined);
      show("o-video", e.video === true);
      show("offer", true);
      recordCaption();
      $("answer").focus();
      break;
    }
    case "connected":
      show("offer", false);
      show("incall", true);
      callSince = Date.now();
      $("hangup").focus();
      if (e.video === true) startVideo(typeof e.video_kbps === "number" ? e.video_kbps : undefined);
      break;
    case "ended":
      show("offer", false);
      show("incall", false);
      stopVideo();
      dasan.answerClickedAt = undefined;
      alert(t("ended"));
      recordCaption();
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
    case "chat":
      if (typeof e.conv === "string" && typeof e.text === "string") chatMessage(e);
      break;
    case "chat-notice":
      if (typeof e.conv === "string" && typeof e.text === "string") chatNotice(e.conv, e.text);
      break;
    case "chat-sent":
      chatAck(e.conv, String(e.id), "sent");
      break;
    case "chat-failed":
      chatAck(e.conv, String(e.id), "failed", e.code === undefined ? undefined : String(e.code));
      break;
    case "chat-closed":
      chatClosed(e.conv, String(e.by ?? ""));
      break;
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

function patchRecord(id: string, category: string, notes: string): Promise<Response> {
  return api(`/api/records/${encodeURIComponent(id)}`, {
    method: "PATCH",
    body: JSON.stringify({ category, notes }),
  });
}

async function saveRecord(ev: Event): Promise<void> {
  ev.preventDefault();
  const id = $<HTMLInputElement>("record-id").value;
  if (!id) return;
  const category = $<HTMLInputElement>("category").value;
  const notes = $<HTMLTextAreaElement>("notes").value;
  const r = await patchRecord(id, category, notes);
  // The panel may show another record by now: only what was sent counts as saved.
  if (r.ok) {
    const draft = drafts.get(id);
    if (draft && draft.category === category && draft.notes === notes) draft.dirty = false;
    if (recordId() === id && $<HTMLInputElement>("category").value === category && $<HTMLTextAreaElement>("notes").value === notes) {
      recordDirty = false;
    }
  }
  if (recordId() === id) $("saved").textContent = r.ok ? t("saved") : `${r.status}`;
  recordCaption();
}

// The record panel serves one record at a time (the call's or a chat's); what is typed
// for the others waits here, by record id, until the panel shows them again.
interface Draft {
  category: string;
  notes: string;
  dirty: boolean;
}
const drafts = new Map<string, Draft>();
let recordDirty = false;

function recordId(): string {
  return $<HTMLInputElement>("record-id").value;
}

/** Keeps what the panel holds under its record id, and returns that id. */
function stashRecord(): string {
  const id = recordId();
  if (id) {
    drafts.set(id, {
      category: $<HTMLInputElement>("category").value,
      notes: $<HTMLTextAreaElement>("notes").value,
      dirty: recordDirty,
    });
  }
  return id;
}

function fillRecord(d: Draft | undefined): void {
  $<HTMLInputElement>("category").value = d?.category ?? "";
  $<HTMLTextAreaElement>("notes").value = d?.notes ?? "";
  recordDirty = d?.dirty ?? false;
  $("saved").textContent = "";
}

function showRecord(id: string): void {
  if (id === recordId()) return recordCaption();
  stashRecord();
  $<HTMLInputElement>("record-id").value = id;
  fillRecord(drafts.get(id));
  recordCaption();
}

function callActive(): boolean {
  return !$("offer").hidden || !$("incall").hidden;
}

function chatOf(record: string): Chat | undefined {
  if (!record) return undefined;
  return Object.values(dasan.chats).find((c) => c.record === record);
}

function labelled(key: string, rest: string): DocumentFragment {
  const f = document.createDocumentFragment();
  const label = document.createElement("span");
  label.dataset.t = key;
  label.textContent = t(key);
  f.append(label, `: ${rest}`);
  return f;
}

// Says whose record the panel shows, and offers the way back to the call's.
function recordCaption(): void {
  const id = recordId();
  const el = $("record-for");
  const chat = chatOf(id);
  if (chat) el.replaceChildren(labelled("chat_for", `${chat.from} (${chat.queue})`));
  else if (id && id === dasan.record) el.replaceChildren(labelled("call_for", callCaller));
  else el.replaceChildren();
  const callRecord = dasan.record;
  $("record-call").hidden = !callRecord || id === callRecord || !(callActive() || drafts.get(callRecord)?.dirty);
}

// The chat panel. Each conversation has its tab and its history; the text box, the
// buttons and the record panel follow the selected tab.
interface ChatView {
  tab: HTMLButtonElement;
  badge: HTMLElement;
  count: HTMLElement;
  log: HTMLElement;
  /** The agent's lines still waiting for chat-sent or chat-failed, by id. */
  outs: Map<string, { line: ChatLine; el: HTMLElement }>;
  /** What was typed in the text box and not sent, while another tab is selected. */
  draft: string;
  flash?: number;
}
const views = new Map<string, ChatView>();
let tabSeq = 0;
let msgSeq = 0;
let baseTitle = "";

function chatStatus(text: string): void {
  $("chat-status").textContent = text;
}

function chatMessage(e: Record<string, any>): void {
  const conv: string = e.conv;
  let chat = dasan.chats[conv];
  if (!chat) chat = chatOpen(conv, e);
  const at = typeof e.at === "number" ? e.at : Date.now();
  // A counsellor's earlier reply in a conversation handed on ("[1001] …"): shown as a
  // line of the history, not as the sender's.
  if (e.history) {
    addLine(conv, { dir: "notice", text: e.text, at });
    return;
  }
  addLine(conv, { dir: "in", text: e.text, at });
  // Unread only where the agent cannot see it: another tab, or the page in the background.
  if (dasan.chat !== conv || document.hidden) {
    setUnread(conv, chat.unread + 1);
    flash(conv);
  }
  beep();
}

function chatOpen(conv: string, e: Record<string, any>): Chat {
  const chat: Chat = {
    record: String(e.record ?? ""),
    from: String(e.from ?? ""),
    queue: String(e.queue ?? ""),
    language: String(e.language ?? ""),
    unread: 0,
    lines: [],
  };
  dasan.chats[conv] = chat;
  const tab = document.createElement("button");
  tab.type = "button";
  tab.id = `chat-tab-${++tabSeq}`;
  tab.className = "chat-tab";
  tab.dataset.conv = conv;
  tab.setAttribute("role", "tab");
  tab.setAttribute("aria-selected", "false");
  tab.setAttribute("aria-controls", "chat-panel");
  tab.tabIndex = -1;
  const from = document.createElement("span");
  from.textContent = chat.from;
  const queue = document.createElement("span");
  queue.className = "muted";
  queue.textContent = chat.queue;
  const badge = document.createElement("span");
  badge.className = "badge";
  badge.hidden = true;
  const count = document.createElement("span");
  const unread = document.createElement("span");
  unread.className = "sr";
  unread.dataset.t = "chat_unread";
  unread.textContent = t("chat_unread");
  badge.append(count, unread);
  tab.append(from, " ", queue, " ", badge);
  tab.onclick = () => selectChat(conv, true);
  tab.onkeydown = tabKey;
  $("chat-tabs").append(tab);

  const log = document.createElement("div");
  log.className = "chat-log";
  log.setAttribute("role", "log");
  log.setAttribute("aria-live", "polite");
  log.setAttribute("aria-labelledby", tab.id);
  // A scrolling history has to be reachable without a mouse.
  log.tabIndex = 0;
  log.hidden = true;
  $("chat-logs").append(log);

  views.set(conv, { tab, badge, count, log, outs: new Map(), draft: "" });
  chatStatus(`${t("chat_new")}: ${chat.from} (${chat.queue})`);
  chatEmpty();
  if (!dasan.chat) selectChat(conv, !recordBusy());
  return chat;
}

// The record panel is left alone while it serves a call, or notes the agent is typing.
function recordBusy(): boolean {
  if (callActive() || $("record-form").contains(document.activeElement)) return true;
  return recordDirty && !chatOf(recordId());
}

function chatEmpty(): void {
  const none = views.size === 0;
  $("chat-none").hidden = !none;
  $("chat-panel").hidden = none;
}

function lineElement(line: ChatLine, chat: Chat): HTMLElement {
  const p = document.createElement("p");
  p.className = `line ${line.dir}`;
  const who = document.createElement("span");
  who.className = "who";
  if (line.dir === "in") who.textContent = chat.from;
  else {
    who.dataset.t = line.dir === "out" ? "chat_me" : "chat_notice";
    who.textContent = t(who.dataset.t);
  }
  const text = document.createElement("span");
  text.className = "text";
  text.textContent = line.text;
  if (line.dir === "in" && /^[a-z]{2,3}(-[A-Za-z0-9]+)*$/.test(chat.language)) text.lang = chat.language;
  const time = document.createElement("time");
  time.dateTime = new Date(line.at).toISOString();
  time.textContent = new Date(line.at).toLocaleTimeString(document.documentElement.lang, { hour: "2-digit", minute: "2-digit" });
  p.append(who, " ", text, " ", time);
  if (line.dir === "out") {
    const state = document.createElement("span");
    state.className = "state";
    p.append(" ", state);
    lineState(p, line);
  }
  return p;
}

function lineState(p: HTMLElement, line: ChatLine): void {
  p.classList.remove("pending", "sent", "failed");
  p.classList.add(line.state || "pending");
  const state = p.querySelector<HTMLElement>(".state")!;
  const key = `chat_${line.state || "pending"}`;
  const label = document.createElement("span");
  label.dataset.t = key;
  label.textContent = t(key);
  state.replaceChildren(label);
  if (line.state === "failed" && line.code) {
    const known = t(`e_${line.code.replace(/-/g, "_")}`);
    state.append(` (${known.startsWith("e_") ? line.code : known})`);
  }
}

function addLine(conv: string, line: ChatLine): void {
  const chat = dasan.chats[conv];
  const view = views.get(conv);
  if (!chat || !view) return;
  chat.lines.push(line);
  const el = lineElement(line, chat);
  if (line.dir === "out" && line.id) view.outs.set(line.id, { line, el });
  view.log.append(el);
  view.log.scrollTop = view.log.scrollHeight;
}

function chatNotice(conv: string, text: string): void {
  if (!views.has(conv)) return chatStatus(text);
  addLine(conv, { dir: "notice", text, at: Date.now() });
}

function chatAck(conv: unknown, id: string, state: "sent" | "failed", code?: string): void {
  const out = typeof conv === "string" ? views.get(conv)?.outs.get(id) : undefined;
  if (!out) return;
  out.line.state = state;
  out.line.code = code;
  lineState(out.el, out.line);
  views.get(conv as string)!.outs.delete(id);
}

function selectChat(conv: string, takeRecord: boolean, focus = false): void {
  const view = views.get(conv);
  const chat = dasan.chats[conv];
  if (!view || !chat) return;
  const text = $<HTMLTextAreaElement>("chat-text");
  const prev = dasan.chat ? views.get(dasan.chat) : undefined;
  if (prev && prev !== view) prev.draft = text.value;
  if (prev !== view) text.value = view.draft;
  dasan.chat = conv;
  for (const [c, v] of views) {
    const on = c === conv;
    v.tab.setAttribute("aria-selected", String(on));
    v.tab.tabIndex = on ? 0 : -1;
    v.log.hidden = !on;
  }
  $("chat-panel").setAttribute("aria-labelledby", view.tab.id);
  view.log.scrollTop = view.log.scrollHeight;
  setUnread(conv, 0);
  if (takeRecord) showRecord(chat.record);
  if (focus) view.tab.focus();
}

// Left/Right (and Home/End) move between tabs and select them.
function tabKey(ev: KeyboardEvent): void {
  const tabs = Array.from($("chat-tabs").querySelectorAll<HTMLElement>("[role=tab]"));
  const i = tabs.indexOf(ev.currentTarget as HTMLElement);
  let next: number;
  if (ev.key === "ArrowRight") next = (i + 1) % tabs.length;
  else if (ev.key === "ArrowLeft") next = (i - 1 + tabs.length) % tabs.length;
  else if (ev.key === "Home") next = 0;
  else if (ev.key === "End") next = tabs.length - 1;
  else return;
  ev.preventDefault();
  const conv = tabs[next]?.dataset.conv;
  if (conv) selectChat(conv, true, true);
}

function setUnread(conv: string, n: number): void {
  const chat = dasan.chats[conv];
  const view = views.get(conv);
  if (!chat || !view) return;
  chat.unread = n;
  view.count.textContent = String(n);
  view.badge.hidden = n === 0;
  view.tab.classList.toggle("unread", n > 0);
  chatTitle();
}

function chatTitle(): void {
  const n = Object.values(dasan.chats).reduce((sum, c) => sum + c.unread, 0);
  document.title = n > 0 ? `(${n}) ${baseTitle}` : baseTitle;
}

function flash(conv: string): void {
  const view = views.get(conv);
  if (!view) return;
  view.tab.classList.add("flash");
  clearTimeout(view.flash);
  view.flash = window.setTimeout(() => view.tab.classList.remove("flash"), 2000);
}

let beeper: AudioContext | undefined;
let lastBeep = 0;

// A burst of messages makes one beep, not one each.
function beep(): void {
  const now = Date.now();
  if (now - lastBeep < 500) return;
  lastBeep = now;
  try {
    beeper ??= new AudioContext();
    beeper.resume().catch(() => undefined);
    const osc = beeper.createOscillator();
    const gain = beeper.createGain();
    const end = beeper.currentTime + 0.15;
    osc.frequency.value = 880;
    gain.gain.setValueAtTime(0.15, beeper.currentTime);
    gain.gain.exponentialRampToValueAtTime(0.001, end);
    osc.connect(gain).connect(beeper.destination);
    osc.start();
    osc.stop(end);
  } catch {
    // No audio output (or none allowed yet): the badge and the title still tell.
  }
}

function chatSend(): void {
  const conv = dasan.chat;
  const box = $<HTMLTextAreaElement>("chat-text");
  const text = box.value.trim();
  if (!conv || !views.has(conv) || !text) return;
  // The engine counts characters, not UTF-16 units (an emoji is one).
  if ([...text].length > 4000) return chatStatus(t("chat_too_long"));
  const id = `m${++msgSeq}`;
  addLine(conv, { dir: "out", text, state: "pending", id, at: Date.now() });
  box.value = "";
  if (ws && ws.readyState === WebSocket.OPEN) send({ op: "chat-send", conv, text, id });
  else chatAck(conv, id, "failed", "not-connected");
}

function chatKey(ev: KeyboardEvent): void {
  // Enter that ends a Korean IME composition picks the syllable; it does not send.
  if (ev.key !== "Enter" || ev.shiftKey || ev.isComposing || ev.keyCode === 229) return;
  ev.preventDefault();
  chatSend();
}

function chatTransfer(): void {
  const target = $<HTMLInputElement>("chat-transfer-to").value.trim();
  if (!dasan.chat) return;
  if (!target) {
    chatStatus(t("chat_no_target"));
    $("chat-transfer-to").focus();
    return;
  }
  send({ op: "chat-transfer", conv: dasan.chat, target });
}

function chatClosed(conv: unknown, by: string): void {
  if (typeof conv !== "string") return;
  const chat = dasan.chats[conv];
  const view = views.get(conv);
  if (!chat || !view) return;
  const tabs = Array.from($("chat-tabs").querySelectorAll<HTMLElement>("[role=tab]"));
  const at = tabs.indexOf(view.tab);
  const selected = dasan.chat === conv;
  const focused = $("chats").contains(document.activeElement);
  const shown = recordId() === chat.record && chat.record !== "";
  if (shown) {
    stashRecord();
    $<HTMLInputElement>("record-id").value = "";
    fillRecord(undefined);
  }
  keepNotes(chat.record);
  clearTimeout(view.flash);
  view.tab.remove();
  view.log.remove();
  views.delete(conv);
  delete dasan.chats[conv];
  const why = t(`chat_closed_${by}`);
  chatStatus(`${t("chat_closed")}: ${chat.from}${why.startsWith("chat_closed_") ? "" : ` (${why})`}`);
  if (selected) {
    dasan.chat = undefined;
    $<HTMLTextAreaElement>("chat-text").value = "";
    $<HTMLInputElement>("chat-transfer-to").value = "";
    const rest = tabs.filter((tab) => tab !== view.tab);
    const next = rest[Math.min(at, rest.length - 1)]?.dataset.conv;
    if (next) selectChat(next, shown, focused);
  }
  if (shown && !recordId()) {
    const call = dasan.record;
    showRecord(call && (callActive() || drafts.get(call)?.dirty) ? call : "");
  }
  chatEmpty();
  chatTitle();
  if (focused && views.size === 0) $("chats-h").focus();
  recordCaption();
}

// Notes typed for a conversation that ends before they were saved (closed for
// inactivity, transferred, or closed in a hurry) are saved rather than lost.
function keepNotes(record: string): void {
  const d = drafts.get(record);
  drafts.delete(record);
  if (!record || !d?.dirty) return;
  patchRecord(record, d.category, d.notes)
    .then((r) => {
      if (!r.ok) throw new Error(String(r.status));
    })
    .catch((err) => alert(`${t("chat_not_saved")}: ${err instanceof Error ? err.message : err}`));
}

function clearChats(): void {
  for (const conv of [...views.keys()]) {
    const v = views.get(conv)!;
    clearTimeout(v.flash);
    v.tab.remove();
    v.log.remove();
    views.delete(conv);
    delete dasan.chats[conv];
  }
  dasan.chat = undefined;
  chatEmpty();
  chatTitle();
}

function wire(): void {
  applyLanguage();
  $("lang").onclick = () => {
    toggleLanguage();
    stateLabel();
    wrapTick();
  };
  $("login").addEventListener("submit", login);
  $("wrap-done").onclick = () => send({ op: "state", state: "ready" });
  setInterval(wrapTick, 100);
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
  $("record-form").addEventListener("input", () => (recordDirty = true));
  $("record-call").onclick = () => {
    if (dasan.record) showRecord(dasan.record);
    $("category").focus();
  };
  baseTitle = document.title;
  $("chat-text").addEventListener("keydown", chatKey);
  $("chat-send").onclick = chatSend;
  $("chat-close").onclick = () => {
    if (dasan.chat) send({ op: "chat-close", conv: dasan.chat });
  };
  $("chat-transfer").onclick = chatTransfer;
  // Back to the page: what the selected tab received meanwhile is seen now.
  document.addEventListener("visibilitychange", () => {
    if (!document.hidden && dasan.chat) setUnread(dasan.chat, 0);
  });
  chatEmpty();
  setInterval(() => {
    $("state-timer").textContent = seconds(Date.now() - stateSince);
    if (callSince) $("call-timer").textContent = seconds(Date.now() - callSince);
    if (!$("offer").hidden) $("o-wait").textContent = seconds(offerWait + Date.now() - offerAt);
  }, 1000);
  if (!window.isSecureContext) alert(t("insecure"));
  else if (!("RTCPeerConnection" in window)) alert(t("no_webrtc"));
}

wire();
