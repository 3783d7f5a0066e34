//! One browser agent's session: the JSON protocol on `/agent/ws`, the stand-in SIP user
//! agent's TCP connection to the engine, and the WebRTC bridge.
//!
//! Client → server (`op`): `login {agent, password}`, `sdp {sdp}` (the browser's offer),
//! `state {state: ready|not-ready|logout, reason?}`, `answer`, `hangup`, `hold {on}`,
//! `dtmf {digit}`, `transfer {target}`.
//! Server → client (`ev`): `login-ok {agent, token, expires_in_s, ice_servers}`, `sdp {sdp}`,
//! `media {state: connected|failed}`, `state {state, reason, call}`, `offer {record,
//! caller (masked), queue, language, wait_ms, video}`, `connected {record, video,
//! video_kbps}` (video: the call's video is relayed to and from the browser, the camera at
//! most video_kbps), `ended {record, by}`,
//! `error {code, message}`.
//!
//! The agent is registered (and so ready to the ACD) only once its media is connected and it
//! asks to be ready: a call is never offered to a desktop that could not take it. When the
//! socket closes, the media fails (ICE) or the login expires, the call in progress is hung
//! up (the engine ends it and writes its record; the caller is not left in silence) and the
//! agent is logged out.

use super::bridge::{Bridge, PeerEvent, VideoTarget};
use super::ua::{AgentUa, UaEvent};
use super::{LoginCheck, WebState};
use crate::sip::message::Message;
use axum::extract::ws::{Message as WsMessage, WebSocket};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};

/// Failed logins on one socket before it is closed (the throttle across sockets is
/// [`WebState::try_login`]'s).
const MAX_LOGIN_TRIES: u32 = 5;

/// How long a socket may stay open without logging in.
const LOGIN_WITHIN: Duration = Duration::from_secs(120);

/// One desktop's socket, from `source` (the client's address, for the login throttle).
pub async fn run(s: Arc<WebState>, mut ws: WebSocket, source: std::net::IpAddr) {
    let Some((agent, password, token, expires)) = login(&s, &mut ws, source).await else {
        return;
    };
    tracing::info!(agent = %agent, "browser agent logged in");
    let result = session(&s, &mut ws, &agent, &password, expires).await;
    s.app.sessions.close(&token);
    if let Err(why) = result {
        let _ = send(
            &mut ws,
            json!({"ev": "error", "code": why.0, "message": why.1}),
        )
        .await;
    }
    let _ = ws.send(WsMessage::Close(None)).await;
    tracing::info!(agent = %agent, "browser agent session ended");
}

async fn send(ws: &mut WebSocket, v: Value) -> Result<(), axum::Error> {
    ws.send(WsMessage::Text(v.to_string().into())).await
}

fn error(code: &'static str, message: &str) -> Value {
    json!({"ev": "error", "code": code, "message": message})
}

async fn login(
    s: &WebState,
    ws: &mut WebSocket,
    source: std::net::IpAddr,
) -> Option<(String, String, String, Instant)> {
    let mut tries = 0;
    let deadline = tokio::time::Instant::now() + LOGIN_WITHIN;
    loop {
        let msg = tokio::time::timeout_at(deadline, ws.recv())
            .await
            .ok()??
            .ok()?;
        if super::too_big_before_login(&msg) {
            super::close_too_big(ws).await;
            return None;
        }
        let WsMessage::Text(text) = msg else {
            if matches!(msg, WsMessage::Close(_)) {
                return None;
            }
            continue;
        };
        let Request::Login { agent, password } = Request::parse(&text) else {
            let _ = send(ws, error("not-logged-in", "log in first")).await;
            continue;
        };
        let agent = agent.trim().to_string();
        let refusal = match s.try_login(source, &agent, &password) {
            LoginCheck::Ok => None,
            LoginCheck::Wrong => {
                tracing::info!(agent = %crate::util::sanitize_for_log(&agent), %source, "browser login refused: wrong agent or password");
                Some(error("bad-login", "wrong agent id or password"))
            }
            LoginCheck::Blocked => Some(error(
                "login-blocked",
                "too many failed logins: wait a few minutes, then try again",
            )),
        };
        if let Some(refusal) = refusal {
            tries += 1;
            let _ = send(ws, refusal).await;
            if tries >= MAX_LOGIN_TRIES {
                return None;
            }
            continue;
        }
        match s.app.sessions.open(&agent, Instant::now()) {
            Ok((token, expires)) => {
                let left = expires.saturating_duration_since(Instant::now()).as_secs();
                let _ = send(
                    ws,
                    json!({"ev": "login-ok", "agent": agent, "token": token, "expires_in_s": left,
                        "ice_servers": s.ice_servers}),
                )
                .await;
                return Some((agent, password, token, expires));
            }
            Err(_) => {
                let _ = send(
                    ws,
                    error(
                        "already-logged-in",
                        "this agent is already logged in in another browser",
                    ),
                )
                .await;
            }
        }
    }
}

/// A conversation address as the page names it: "chat-" and digits.
fn conv(v: Option<&str>) -> Option<String> {
    let v = v?;
    let n = v.strip_prefix("chat-")?;
    (!n.is_empty() && n.len() <= 19 && n.bytes().all(|b| b.is_ascii_digit())).then(|| v.to_string())
}

/// One request from the page (the `op`s in the module doc), read from a text frame: every
/// field the session uses is checked here, so the rest of the session never looks at the
/// page's JSON. Public as the fuzzing entry point for the page's messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    Login {
        agent: String,
        password: String,
    },
    /// The browser's SDP offer (None: the field is missing).
    Sdp(Option<String>),
    /// `state` as sent; `reason` (for not-ready) at most 40 characters, "break" if absent.
    State {
        state: String,
        reason: String,
    },
    Answer,
    Hangup,
    Hold(bool),
    /// The key, if it is one of 0-9 * #.
    Dtmf(Option<char>),
    /// The target, if it is a queue name or a number (1-32 of `[A-Za-z0-9+-]`).
    Transfer(Option<String>),
    /// A message in a text conversation: `conv` ("chat-<n>"), the text (1-4000
    /// characters), the page's id for it (at most 40 characters). None: a field is wrong.
    ChatSend(Option<(String, String, String)>),
    ChatClose(Option<String>),
    /// Hand a conversation to a queue: (conv, queue).
    ChatTransfer(Option<(String, String)>),
    /// Not JSON, no `op`, or an `op` we do not know.
    Unknown,
}

impl Request {
    pub fn parse(text: &str) -> Request {
        let v: Value = serde_json::from_str(text).unwrap_or(Value::Null);
        let field = |k: &str| v[k].as_str();
        match field("op").unwrap_or("") {
            "login" => Request::Login {
                agent: field("agent").unwrap_or("").trim().to_string(),
                password: field("password").unwrap_or("").to_string(),
            },
            "sdp" => Request::Sdp(field("sdp").map(str::to_string)),
            "state" => Request::State {
                state: field("state").unwrap_or("").to_string(),
                reason: field("reason")
                    .unwrap_or("break")
                    .chars()
                    .take(40)
                    .collect(),
            },
            "answer" => Request::Answer,
            "hangup" => Request::Hangup,
            "hold" => Request::Hold(v["on"].as_bool().unwrap_or(true)),
            "dtmf" => Request::Dtmf(
                field("digit")
                    .and_then(|d| d.chars().next())
                    .filter(|c| c.is_ascii_digit() || *c == '*' || *c == '#'),
            ),
            "transfer" => {
                let target = field("target").unwrap_or("").trim();
                let ok = !target.is_empty()
                    && target.len() <= 32
                    && target
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '+');
                Request::Transfer(ok.then(|| target.to_string()))
            }
            "chat-send" => {
                let text = field("text").unwrap_or("");
                let id: String = field("id").unwrap_or("").chars().take(40).collect();
                let ok = !text.trim().is_empty() && text.chars().count() <= 4000;
                Request::ChatSend(
                    conv(field("conv"))
                        .filter(|_| ok)
                        .map(|c| (c, text.to_string(), id)),
                )
            }
            "chat-close" => Request::ChatClose(conv(field("conv"))),
            "chat-transfer" => {
                let target = field("target").unwrap_or("").trim();
                let ok = !target.is_empty()
                    && target.len() <= 32
                    && target
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
                Request::ChatTransfer(
                    conv(field("conv"))
                        .filter(|_| ok)
                        .map(|c| (c, target.to_string())),
                )
            }
            _ => Request::Unknown,
        }
    }
}

/// The SIP connection to the engine: messages in (framed by Content-Length) and a writer.
struct SipLink {
    write: tokio::net::tcp::OwnedWriteHalf,
    incoming: mpsc::Receiver<Message>,
    local: std::net::SocketAddr,
}

async fn connect(engine: std::net::SocketAddr) -> std::io::Result<SipLink> {
    let stream = TcpStream::connect(engine).await?;
    stream.set_nodelay(true)?;
    let local = stream.local_addr()?;
    let (mut read, write) = stream.into_split();
    let (tx, incoming) = mpsc::channel(64);
    tokio::spawn(async move {
        let mut buf: Vec<u8> = Vec::with_capacity(8192);
        let mut chunk = vec![0u8; 8192];
        loop {
            // Whole messages out of the buffer first.
            while let Some((len, msg)) = frame(&buf) {
                buf.drain(..len);
                if let Some(m) = msg {
                    if tx.send(m).await.is_err() {
                        return;
                    }
                }
            }
            match read.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
            if buf.len() > 1 << 20 {
                return; // a peer that never frames: drop the connection
            }
        }
    });
    Ok(SipLink {
        write,
        incoming,
        local,
    })
}

/// One message off the front of a TCP stream: its length, and the message (None for a
/// keep-alive CRLF or an unparsable one, which is skipped).
fn frame(buf: &[u8]) -> Option<(usize, Option<Message>)> {
    let lead = buf
        .iter()
        .take_while(|b| **b == b'\r' || **b == b'\n')
        .count();
    if lead > 0 {
        return Some((lead, None));
    }
    let end = buf.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let head = std::str::from_utf8(&buf[..end]).ok()?;
    let len = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            let k = k.trim();
            (k.eq_ignore_ascii_case("content-length") || k == "l")
                .then(|| v.trim().parse::<usize>().ok())
                .flatten()
        })
        .unwrap_or(0);
    // A Content-Length that overflows waits for bytes that never come: the reader drops the
    // connection at 1 MiB.
    let total = end.checked_add(len)?;
    if buf.len() < total {
        return None;
    }
    Some((total, Message::parse(&buf[..total]).ok()))
}

impl SipLink {
    async fn send(&mut self, m: &Message) -> std::io::Result<()> {
        self.write.write_all(&m.to_bytes()).await
    }
}

type Failure = (&'static str, String);

fn unreachable(e: std::io::Error) -> Failure {
    ("engine-unreachable", e.to_string())
}

struct Call {
    record: String,
    connected: bool,
}

/// A logged-in desktop: its stand-in user agent and SIP connection, its WebRTC bridge,
/// and what the agent asked for.
struct Desk<'a> {
    s: &'a Arc<WebState>,
    agent: &'a str,
    sip: SipLink,
    ua: AgentUa,
    bridge: Option<Bridge>,
    peer_events: mpsc::Receiver<PeerEvent>,
    media_up: bool,
    registered: bool,
    want_ready: bool,
    call: Option<Call>,
}

async fn session(
    s: &Arc<WebState>,
    ws: &mut WebSocket,
    agent: &str,
    password: &str,
    expires: Instant,
) -> Result<(), Failure> {
    let sip = connect(s.sip)
        .await
        .map_err(|e| ("engine-unreachable", format!("engine SIP: {e}")))?;
    let ua = AgentUa::new(agent, password, sip.local, s.sip, 0);
    let (dead_tx, peer_events) = mpsc::channel::<PeerEvent>(8);
    drop(dead_tx);
    let mut d = Desk {
        s,
        agent,
        sip,
        ua,
        bridge: None,
        peer_events,
        media_up: false,
        registered: false,
        want_ready: false,
        call: None,
    };
    let mut last_state = String::new();
    let mut own = OwnStates::subscribe(s, agent);
    let expiry = tokio::time::sleep_until(expires.into());
    tokio::pin!(expiry);
    let mut refresh = tokio::time::interval(Duration::from_secs(120));
    refresh.tick().await;
    let outcome: Result<(), Failure> = loop {
        tokio::select! {
            msg = ws.recv() => {
                let text = match msg {
                    Some(Ok(WsMessage::Text(t))) => t,
                    Some(Ok(WsMessage::Close(_))) | None | Some(Err(_)) => break Ok(()),
                    Some(Ok(_)) => continue,
                };
                if let Err(f) = d.on_client(ws, Request::parse(&text)).await {
                    break Err(f);
                }
            }
            m = d.sip.incoming.recv() => {
                let Some(m) = m else {
                    // The engine closed the connection (restart, shutdown): nothing works
                    // without it, and the page must say so rather than look logged in.
                    break Err(("engine-unreachable", "the engine closed the connection".into()));
                };
                if let Err(f) = d.on_sip(ws, &m).await {
                    break Err(f);
                }
            }
            Some(pe) = d.peer_events.recv() => {
                match pe {
                    PeerEvent::Connected => {
                        d.media_up = true;
                        let _ = send(ws, json!({"ev": "media", "state": "connected"})).await;
                    }
                    PeerEvent::Failed => {
                        let _ = send(ws, json!({"ev": "media", "state": "failed"})).await;
                        break Err(("media-failed", "the audio connection to the browser failed".into()));
                    }
                }
            }
            () = &mut expiry => {
                break Err(("session-expired", "the login expired: log in again".into()));
            }
            Ok(()) = own.changed() => {
                let state = own.borrow_and_update().clone();
                if let Some(state) = state {
                    let text = state.to_string();
                    if text != last_state {
                        last_state = text;
                        let _ = send(ws, state).await;
                    }
                }
            }
            _ = refresh.tick(), if d.registered => {
                let m = d.ua.register(300, None);
                if let Err(e) = d.sip.send(&m).await {
                    break Err(unreachable(e));
                }
            }
        }
    };
    d.close().await;
    outcome
}

impl Desk<'_> {
    /// A MESSAGE from the agent into conversation `conv`.
    async fn chat(
        &mut self,
        ws: &mut WebSocket,
        conv: &str,
        text: &str,
        id: &str,
    ) -> Result<(), Failure> {
        match self.ua.chat_send(conv, text, id) {
            Some(m) => self.sip.send(&m).await.map_err(unreachable)?,
            None => {
                let v = json!({"ev": "chat-failed", "conv": conv, "id": id, "code": 503});
                let _ = send(ws, v).await;
            }
        }
        Ok(())
    }

    /// One JSON request from the page.
    async fn on_client(&mut self, ws: &mut WebSocket, req: Request) -> Result<(), Failure> {
        match req {
            Request::Sdp(offer) => self.on_offer(ws, offer).await,
            Request::State { state, reason } => return self.on_state(ws, &state, reason).await,
            Request::Answer => {
                let port = self.bridge.as_ref().and_then(|b| b.local_rtp());
                let video = self
                    .bridge
                    .as_ref()
                    .and_then(|b| b.video())
                    .map(|(codec, addr)| (codec, addr.port()));
                match (
                    port,
                    self.ua
                        .answer(self.s.media_ip, port.map_or(0, |p| p.port()), video),
                ) {
                    (Some(_), Some(ok)) => self.sip.send(&ok).await.map_err(unreachable)?,
                    _ => {
                        let _ = send(ws, error("no-call", "no call is ringing")).await;
                    }
                }
            }
            Request::Hangup => {
                if let Some(m) = self.ua.hang_up() {
                    self.sip.send(&m).await.map_err(unreachable)?;
                    if let Some(b) = &self.bridge {
                        b.set_target(None);
                        b.set_video_target(None);
                    }
                    if let Some(c) = self.call.take() {
                        let _ = send(
                            ws,
                            json!({"ev": "ended", "record": c.record, "by": "agent"}),
                        )
                        .await;
                    }
                }
            }
            Request::Hold(on) => {
                if let (Some(b), Some(c)) = (&self.bridge, &self.call) {
                    b.set_hold(on);
                    let _ = send(ws, json!({"ev": "hold", "record": c.record, "on": on})).await;
                }
            }
            Request::Dtmf(d) => match d.and_then(|d| self.ua.dtmf(d)) {
                Some(m) => self.sip.send(&m).await.map_err(unreachable)?,
                None => {
                    let _ = send(
                        ws,
                        error("bad-request", "dtmf: one of 0-9 * # during a call"),
                    )
                    .await;
                }
            },
            Request::Transfer(target) => match target.and_then(|t| self.ua.refer(&t)) {
                Some(m) => self.sip.send(&m).await.map_err(unreachable)?,
                None => {
                    let _ = send(
                        ws,
                        error(
                            "bad-request",
                            "transfer: a queue name or a number, during a call",
                        ),
                    )
                    .await;
                }
            },
            Request::ChatSend(Some((conv, text, id))) => {
                self.chat(ws, &conv, &text, &id).await?;
            }
            Request::ChatClose(Some(conv)) => {
                let code = self.s.text_codes.0.clone();
                self.chat(ws, &conv, &code, "close").await?;
            }
            Request::ChatTransfer(Some((conv, target))) => {
                let code = format!("{} {target}", self.s.text_codes.1);
                self.chat(ws, &conv, &code, "transfer").await?;
            }
            Request::ChatSend(None) | Request::ChatClose(None) | Request::ChatTransfer(None) => {
                let _ = send(
                    ws,
                    error(
                        "bad-request",
                        "chat: conv is chat-<n>, text 1-4000 characters, target a queue name",
                    ),
                )
                .await;
            }
            Request::Login { .. } => {
                let _ = send(ws, error("bad-request", "already logged in")).await;
            }
            Request::Unknown => {
                let _ = send(ws, error("bad-request", "unknown op")).await;
            }
        }
        Ok(())
    }

    /// The browser's SDP offer: a new WebRTC bridge replaces any old one.
    async fn on_offer(&mut self, ws: &mut WebSocket, offer: Option<String>) {
        let Some(offer) = offer else {
            let _ = send(ws, error("bad-request", "sdp: the browser's offer")).await;
            return;
        };
        if let Some(old) = self.bridge.take() {
            old.close().await;
        }
        let s = self.s;
        match Bridge::answer(
            s.media_ip,
            s.media_advertise,
            s.webrtc_ports,
            offer,
            &s.local_rtp,
        )
        .await
        {
            Ok((b, answer, events)) => {
                self.bridge = Some(b);
                self.peer_events = events;
                let _ = send(ws, json!({"ev": "sdp", "sdp": answer})).await;
            }
            Err(e) => {
                let _ = send(ws, error("media", &e.to_string())).await;
            }
        }
    }

    /// Ready (registers first, once the audio is up), not ready, log out.
    async fn on_state(
        &mut self,
        ws: &mut WebSocket,
        state: &str,
        reason: String,
    ) -> Result<(), Failure> {
        use crate::b2bua::api::StateChange;
        match state {
            "ready" if !self.media_up => {
                let _ = send(
                    ws,
                    error(
                        "media-not-ready",
                        "the audio connection is not up yet (microphone allowed?)",
                    ),
                )
                .await;
            }
            "ready" if !self.registered => {
                self.want_ready = true;
                let m = self.ua.register(300, None);
                self.sip.send(&m).await.map_err(unreachable)?;
            }
            "ready" => set_state(self.s, self.agent, StateChange::Ready, ws).await,
            "not-ready" if self.registered => {
                set_state(self.s, self.agent, StateChange::NotReady(reason), ws).await;
            }
            "not-ready" => {}
            "logout" => {
                if self.registered {
                    let m = self.ua.register(0, None);
                    self.sip.send(&m).await.map_err(unreachable)?;
                }
            }
            _ => {
                let _ = send(
                    ws,
                    error("bad-request", "state: ready, not-ready or logout"),
                )
                .await;
            }
        }
        Ok(())
    }

    /// A SIP message from the engine to the stand-in user agent.
    async fn on_sip(&mut self, ws: &mut WebSocket, m: &Message) -> Result<(), Failure> {
        let (out, events) = self.ua.on_message(m);
        for o in out {
            self.sip.send(&o).await.map_err(unreachable)?;
        }
        for e in events {
            match e {
                UaEvent::Registered => {
                    self.registered = true;
                    self.want_ready = false;
                }
                UaEvent::RegisterFailed(code) => {
                    let msg = format!("the engine refused the registration ({code})");
                    let _ = send(ws, error("register-failed", &msg)).await;
                }
                UaEvent::Unregistered => self.registered = false,
                UaEvent::Offer(info) => {
                    let masked = crate::util::mask_number(&info.caller);
                    self.call = Some(Call {
                        record: info.record.clone(),
                        connected: false,
                    });
                    let _ = send(
                        ws,
                        json!({
                            "ev": "offer", "record": info.record, "caller": masked,
                            "queue": info.queue, "language": info.language, "wait_ms": info.wait_ms,
                            "video": self.ua.offered_video().is_some(),
                        }),
                    )
                    .await;
                }
                UaEvent::Connected { rtp, pt, video } => {
                    if let Some(b) = &self.bridge {
                        b.set_target(Some((rtp, pt)));
                        b.set_video_target(video.map(|(rtp, pt)| VideoTarget { rtp, pt }));
                    }
                    if let Some(c) = self.call.as_mut() {
                        c.connected = true;
                        let _ = send(
                            ws,
                            json!({"ev": "connected", "record": c.record, "video": video.is_some(),
                                "video_kbps": video.and(self.ua.video_kbps())}),
                        )
                        .await;
                    }
                }
                UaEvent::Chat(line) => {
                    let from = if line.from.starts_with("web-") {
                        line.from.clone()
                    } else {
                        crate::util::mask_number(&line.from)
                    };
                    let v = match line.kind.as_str() {
                        "closed" => json!({"ev": "chat-closed", "conv": line.conv, "by": line.by}),
                        "notice" => {
                            json!({"ev": "chat-notice", "conv": line.conv, "text": line.text})
                        }
                        kind => json!({
                            "ev": "chat", "conv": line.conv, "record": line.record,
                            "queue": line.queue, "language": line.language, "from": from,
                            "text": line.text, "history": kind == "history",
                            "at": std::time::SystemTime::now()
                                .duration_since(std::time::UNIX_EPOCH)
                                .map_or(0, |d| d.as_millis() as u64),
                        }),
                    };
                    let _ = send(ws, v).await;
                }
                UaEvent::ChatResult { conv, id, code } => {
                    let v = if (200..300).contains(&code) {
                        json!({"ev": "chat-sent", "conv": conv, "id": id})
                    } else {
                        json!({"ev": "chat-failed", "conv": conv, "id": id, "code": code})
                    };
                    let _ = send(ws, v).await;
                }
                UaEvent::Ended { by } => {
                    if let Some(b) = &self.bridge {
                        b.set_target(None);
                        b.set_video_target(None);
                    }
                    if let Some(c) = self.call.take() {
                        let _ = send(ws, json!({"ev": "ended", "record": c.record, "by": by, "answered": c.connected})).await;
                    }
                }
            }
        }
        Ok(())
    }

    /// The end of the session: the call (if any) is hung up so the engine ends it and
    /// writes its record, then the agent is unregistered and the connection closed (which
    /// logs it out in any case).
    async fn close(mut self) {
        if let Some(m) = self.ua.hang_up() {
            let _ = self.sip.send(&m).await;
        }
        if self.registered {
            let m = self.ua.register(0, None);
            let _ = self.sip.send(&m).await;
        }
        let _ = self.sip.write.shutdown().await;
        if let Some(b) = self.bridge {
            b.close().await;
        }
    }
}

async fn set_state(
    s: &WebState,
    agent: &str,
    change: crate::b2bua::api::StateChange,
    ws: &mut WebSocket,
) {
    if let Err(crate::driver::HandleError::Refused(e)) =
        s.app.engine.set_agent_state(agent, change).await
    {
        let _ = send(ws, error("state-refused", &e.to_string())).await;
    }
}

/// The desktops' own agent states, pushed: while any desktop is open, one task asks the
/// engine for every agent's state four times a second and wakes only the sessions whose
/// agent changed. (Every session asking for its own agent twice a second was a quarter of
/// what 300 logged-in, idle desktops cost the engine.)
#[derive(Default)]
pub struct OwnStates(std::sync::Mutex<Watchers>);

#[derive(Default)]
struct Watchers {
    by_agent: HashMap<String, watch::Sender<Option<Value>>>,
    polling: bool,
}

/// How often the engine is asked (the state a desktop shows is at most this old).
const OWN_STATE_EVERY: Duration = Duration::from_millis(250);

impl OwnStates {
    /// `agent`'s state as its `state` event (None until the first answer), starting the
    /// task that keeps it if none runs.
    pub fn subscribe(s: &Arc<WebState>, agent: &str) -> watch::Receiver<Option<Value>> {
        let mut w = crate::runtime::lock(&s.own_states.0);
        let mut rx = match w.by_agent.get(agent) {
            Some(tx) => tx.subscribe(),
            None => {
                let (tx, rx) = watch::channel(None);
                w.by_agent.insert(agent.to_string(), tx);
                rx
            }
        };
        // A state already known is news to this session.
        rx.mark_changed();
        if !w.polling {
            w.polling = true;
            tokio::spawn(keep_own_states(s.clone()));
        }
        rx
    }
}

async fn keep_own_states(s: Arc<WebState>) {
    let mut tick = tokio::time::interval(OWN_STATE_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        {
            let mut w = crate::runtime::lock(&s.own_states.0);
            w.by_agent.retain(|_, tx| tx.receiver_count() > 0);
            if w.by_agent.is_empty() {
                // Under the lock: a desktop opening now finds `polling` false and starts
                // a new task.
                w.polling = false;
                return;
            }
        }
        let Ok(agents) = s.app.engine.agents().await else {
            continue;
        };
        let w = crate::runtime::lock(&s.own_states.0);
        for a in agents {
            let Some(tx) = w.by_agent.get(&a.id) else {
                continue;
            };
            let v = json!({
                "ev": "state",
                "state": a.state,
                "reason": a.reason,
                "call": a.call,
                "since_ms": a.since_ms,
                "wrap_up_until_ms": a.wrap_up_until_ms,
            });
            tx.send_if_modified(|cur| {
                let changed = cur.as_ref() != Some(&v);
                if changed {
                    *cur = Some(v);
                }
                changed
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{frame, Request};

    #[test]
    fn a_content_length_that_overflows_is_never_framed() {
        let m = format!(
            "OPTIONS sip:x SIP/2.0\r\nContent-Length: {}\r\n\r\nabc",
            usize::MAX
        );
        assert!(frame(m.as_bytes()).is_none());
    }

    #[test]
    fn page_requests_are_checked_when_read() {
        let p = Request::parse;
        assert_eq!(
            p(r#"{"op":"login","agent":" 1001 ","password":"pw"}"#),
            Request::Login {
                agent: "1001".into(),
                password: "pw".into()
            }
        );
        assert_eq!(
            p(r##"{"op":"dtmf","digit":"#"}"##),
            Request::Dtmf(Some('#'))
        );
        assert_eq!(p(r#"{"op":"dtmf","digit":"x"}"#), Request::Dtmf(None));
        assert_eq!(
            p(r#"{"op":"transfer","target":" +8210-1 "}"#),
            Request::Transfer(Some("+8210-1".into()))
        );
        assert_eq!(
            p(r#"{"op":"transfer","target":"a@evil>"}"#),
            Request::Transfer(None)
        );
        let long = "x".repeat(50);
        let Request::State { state, reason } = p(&format!(
            r#"{{"op":"state","state":"not-ready","reason":"{long}"}}"#
        )) else {
            panic!("a state request");
        };
        assert_eq!((state.as_str(), reason.len()), ("not-ready", 40));
        assert_eq!(p(r#"{"op":"hold"}"#), Request::Hold(true));
        assert_eq!(p(r#"{"op":"sdp"}"#), Request::Sdp(None));
        assert_eq!(p("not json"), Request::Unknown);
        assert_eq!(p(r#"{"op":7}"#), Request::Unknown);
        assert_eq!(
            p(r#"{"op":"chat-send","conv":"chat-12","text":"네 😀","id":"m1"}"#),
            Request::ChatSend(Some(("chat-12".into(), "네 😀".into(), "m1".into())))
        );
        let too_long = "가".repeat(4001);
        for bad in [
            r#"{"op":"chat-send","conv":"chat-1;x","text":"a","id":"m"}"#.to_string(),
            r#"{"op":"chat-send","conv":"chat-1","text":"  ","id":"m"}"#.to_string(),
            format!(r#"{{"op":"chat-send","conv":"chat-1","text":"{too_long}","id":"m"}}"#),
        ] {
            assert_eq!(p(&bad), Request::ChatSend(None), "{bad}");
        }
        assert_eq!(
            p(r#"{"op":"chat-close","conv":"chat-3"}"#),
            Request::ChatClose(Some("chat-3".into()))
        );
        assert_eq!(
            p(r#"{"op":"chat-close","conv":"sip:1001@x"}"#),
            Request::ChatClose(None)
        );
        assert_eq!(
            p(r#"{"op":"chat-transfer","conv":"chat-3","target":"en"}"#),
            Request::ChatTransfer(Some(("chat-3".into(), "en".into())))
        );
        assert_eq!(
            p(r#"{"op":"chat-transfer","conv":"chat-3","target":"en *23"}"#),
            Request::ChatTransfer(None)
        );
    }

    #[test]
    fn frames_messages_by_content_length_and_skips_keepalives() {
        let a = b"OPTIONS sip:x SIP/2.0\r\nVia: SIP/2.0/TCP 1.2.3.4;branch=z9hG4bK1\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:x>\r\nCall-ID: c\r\nCSeq: 1 OPTIONS\r\nContent-Length: 4\r\n\r\nbody";
        let mut buf = b"\r\n\r\n".to_vec();
        buf.extend_from_slice(a);
        buf.extend_from_slice(&a[..20]);
        let (n, m) = frame(&buf).unwrap();
        assert_eq!((n, m.is_none()), (4, true), "keep-alive CRLFs");
        let rest = &buf[n..];
        let (n, m) = frame(rest).unwrap();
        assert_eq!(n, a.len());
        assert_eq!(&m.unwrap().body[..], b"body");
        assert!(frame(&rest[n..]).is_none(), "half a message waits for more");
    }
}
