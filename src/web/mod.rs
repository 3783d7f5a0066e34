//! Browser agents and the supervisor wallboard, served on the HTTP listener.
//!
//! - `/agent`: the agent desktop. It logs in over a WebSocket (`/agent/ws`) with the
//!   agent's own credentials, sets up one WebRTC connection to the engine ([`bridge`]) and
//!   from then on is an agent like any desk phone: the engine offers it calls through a SIP
//!   user agent that stands in for it ([`ua`]), and it answers, holds, transfers and hangs
//!   up by JSON messages on the same socket ([`agent_ws`]).
//! - `/supervisor`: queues, agents and calls in progress, pushed over `/supervisor/ws`
//!   whenever they change (checked every 250 ms on the server; nothing polls from the page).
//!   The page sends its token in the socket's first message, never in the URL.
//!
//! Both WebSockets refuse a handshake from another site's page with 403
//! ([`crate::http::origin`]), take messages of at most 64 KiB, and at most 4 KiB until the
//! login (or the wallboard's token) is accepted. The desktop's logins are throttled per
//! client address and per agent id ([`crate::util::throttle`]).
//!
//! Signalling is a small JSON protocol on a WebSocket rather than SIP over WebSocket
//! (RFC 7118): the desktop is our own page, so it needs no SIP stack in the browser (no
//! JsSIP dependency, nothing to keep in step with our registrar), the offer carries what the
//! desktop shows (queue, language, wait, the record to write notes to) as plain fields, and
//! the one connection also carries the session's state changes and errors. Standard SIP
//! softphones register over UDP/TCP as before.

pub mod agent_ws;
pub mod bridge;
pub mod peer;
pub mod ua;

use crate::http::auth::Role;
use crate::http::origin::OriginPolicy;
use crate::http::AppState;
use crate::runtime::LocalRtp;
use crate::util::throttle::AuthThrottle;
use axum::extract::ws::{Message as WsMessage, WebSocket, WebSocketUpgrade};
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

mod assets {
    include!(concat!(env!("OUT_DIR"), "/web.rs"));
}

/// What the web side needs: the API's state (engine handle, tokens, logins), the agents'
/// passwords, and where the desktops' SIP and media go.
pub struct WebState {
    pub app: Arc<AppState>,
    /// Agent id → password (the desktop's login checks it before registering).
    passwords: HashMap<String, crate::config::Credential>,
    /// The digest realm, which hashed credentials are bound to.
    realm: String,
    /// The engine's SIP listener, as the agents' stand-in user agents reach it.
    pub sip: SocketAddr,
    /// The address WebRTC and the bridge's RTP socket bind (the engine's media address).
    pub media_ip: IpAddr,
    /// `[media] advertise`: the public address in front of `media_ip` (1:1 NAT).
    pub media_advertise: Option<IpAddr>,
    /// `[webrtc] ice_servers`, handed to each desktop at login.
    pub ice_servers: Vec<crate::config::IceServerConfig>,
    /// `[text] close_code` and `transfer_code`: what the desktop's close and transfer
    /// buttons send in a conversation, as a desk phone would.
    pub text_codes: (String, String),
    /// `[media] webrtc_port_min/max`: where those sockets bind.
    pub webrtc_ports: (u16, u16),
    /// The logged-in desktops' own agent states.
    pub own_states: agent_ws::OwnStates,
    /// The in-process RTP switch the browser legs share with the media plane.
    pub local_rtp: LocalRtp,
    /// Which pages may open the WebSockets (`[http] allowed_origins`).
    pub origins: OriginPolicy,
    /// Failed desktop logins by client address and agent id (`[http] login_*`).
    throttle: std::sync::Mutex<AuthThrottle>,
    /// The wallboard's chart: each queue's waiting calls and service level, sampled every
    /// [`HISTORY_STEP`] over the last hour ([`sample_history`]).
    history: std::sync::Mutex<std::collections::VecDeque<serde_json::Value>>,
}

/// How often the wallboard's history is sampled, and how many samples it keeps (an hour).
pub const HISTORY_STEP: Duration = Duration::from_secs(30);
const HISTORY_POINTS: usize = 120;

/// Samples the queues for the wallboard's chart while the engine runs.
pub async fn sample_history(s: Arc<WebState>) {
    let mut tick = tokio::time::interval(HISTORY_STEP);
    loop {
        tick.tick().await;
        let Ok(queues) = s.app.engine.queues().await else {
            continue;
        };
        let point = history_point(unix_ms_now(), &queues);
        let mut h = crate::runtime::lock(&s.history);
        if h.len() == HISTORY_POINTS {
            h.pop_front();
        }
        h.push_back(point);
    }
}

fn unix_ms_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// One sample: per queue, calls waiting and the window's service level (null with nothing
/// answered in it).
fn history_point(at_ms: i64, queues: &[crate::b2bua::api::QueueView]) -> serde_json::Value {
    let per: serde_json::Map<String, serde_json::Value> = queues
        .iter()
        .map(|q| {
            let sl = (q.window.answered > 0).then_some(q.window.service_level);
            (
                q.name.clone(),
                serde_json::json!({"waiting": q.waiting.len(), "service_level": sl}),
            )
        })
        .collect();
    serde_json::json!({"at_ms": at_ms, "queues": per})
}

/// What a desktop's login attempt came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoginCheck {
    Ok,
    /// Wrong agent id or password.
    Wrong,
    /// Refused without checking: too many failures from this address or on this agent id.
    Blocked,
}

/// Largest WebSocket message (and frame) either socket takes: a browser's SDP offer is a
/// few KiB.
pub const MAX_MESSAGE: usize = 64 << 10;
/// Largest message before the login (or the wallboard's token) is accepted: a bigger one
/// closes the socket.
pub const MAX_MESSAGE_BEFORE_LOGIN: usize = 4 << 10;

impl WebState {
    pub fn from_config(
        cfg: &crate::config::Config,
        app: Arc<AppState>,
        local_rtp: LocalRtp,
    ) -> WebState {
        let mut sip = cfg.sip.listen;
        if sip.ip().is_unspecified() {
            sip.set_ip(IpAddr::from([127, 0, 0, 1]));
        }
        WebState {
            app,
            passwords: cfg
                .agent_specs()
                .iter()
                .map(|a| (a.id.clone(), a.credential.clone()))
                .collect(),
            realm: cfg.sip.realm.clone(),
            sip,
            media_ip: cfg.media.ip.unwrap_or(sip.ip()),
            media_advertise: cfg.media.advertise,
            ice_servers: cfg.webrtc.ice_servers.clone(),
            text_codes: (cfg.text.close_code.clone(), cfg.text.transfer_code.clone()),
            webrtc_ports: (cfg.media.webrtc_port_min, cfg.media.webrtc_port_max),
            own_states: Default::default(),
            local_rtp,
            origins: OriginPolicy::new(cfg.http.allowed_origins.clone()),
            history: Default::default(),
            throttle: std::sync::Mutex::new(AuthThrottle::new(
                cfg.http.login_max_failures,
                Duration::from_secs(cfg.http.login_window_s.into()),
                Duration::from_secs(cfg.http.login_block_s.into()),
            )),
        }
    }

    /// A desktop's login from `source`: refused unchecked while the address or the agent id
    /// is blocked (the same answer whether the agent exists or not), else the password is
    /// checked and the outcome counted. A failure that starts a block is logged once, in a
    /// line fail2ban-style tools can match:
    /// `auth blocked: source=<ip> account=<id> service=web until=<unix seconds>`.
    pub fn try_login(&self, source: IpAddr, agent: &str, password: &str) -> LoginCheck {
        let now = Instant::now();
        let security = &self.app.metrics.security;
        let mut throttle = crate::runtime::lock(&self.throttle);
        if throttle.check(now, source, agent).is_err() {
            security.with_label_values(&["auth_blocked"]).inc();
            return LoginCheck::Blocked;
        }
        if self.check_password(agent, password) {
            throttle.succeeded(source, agent);
            return LoginCheck::Ok;
        }
        security.with_label_values(&["auth_failed"]).inc();
        if let Some(b) = throttle.failed(now, source, agent) {
            let until = std::time::SystemTime::now() + b.until.saturating_duration_since(now);
            let until = until
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            tracing::warn!(
                "auth blocked: source={source} account={} service=web until={until}",
                crate::util::sanitize_for_log(agent)
            );
        }
        LoginCheck::Wrong
    }

    /// Whether `password` is the agent's (compared in constant time).
    pub fn check_password(&self, agent: &str, password: &str) -> bool {
        let Some(c) = self.passwords.get(agent) else {
            // Same work for an unknown agent: no timing hint about which ids exist.
            let _ = crate::config::ha1(true, agent, &self.realm, password);
            return false;
        };
        c.matches(agent, &self.realm, password)
    }
}

/// The desktop's and the wallboard's routes, to merge into the API's router.
pub fn router(state: Arc<WebState>) -> Router {
    Router::new()
        .route("/agent", get(|| async { page("agent.html") }))
        .route("/supervisor", get(|| async { page("supervisor.html") }))
        .route("/reports", get(|| async { page("reports.html") }))
        .route("/chat", get(|| async { page("chat.html") }))
        .route("/web/{file}", get(asset))
        .route("/agent/ws", get(agent_socket))
        .route("/supervisor/ws", get(supervisor_socket))
        .with_state(state)
}

fn page(name: &str) -> Response {
    match assets::WEB.iter().find(|(n, _)| *n == name) {
        Some((_, body)) => ([("content-type", "text/html; charset=utf-8")], *body).into_response(),
        None => (StatusCode::NOT_FOUND, "no such page").into_response(),
    }
}

async fn asset(Path(file): Path<String>) -> Response {
    let Some((_, body)) = assets::WEB.iter().find(|(n, _)| *n == file) else {
        if file.ends_with(".js") {
            // The pages load; this says why they cannot run.
            return (
                [("content-type", "text/javascript")],
                "document.body.insertAdjacentHTML('afterbegin','<p role=alert>The front end was not built: run scripts/web-build.sh, then rebuild the engine.</p>');",
            )
                .into_response();
        }
        return (StatusCode::NOT_FOUND, "no such file").into_response();
    };
    let ct = match file.rsplit('.').next() {
        Some("js") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        _ => "text/html; charset=utf-8",
    };
    ([("content-type", ct)], *body).into_response()
}

async fn agent_socket(
    State(s): State<Arc<WebState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    ws: WebSocketUpgrade,
) -> Response {
    if let Err(refused) = checked_origin(&s, &headers, peer) {
        return refused.into_response();
    }
    limited(ws).on_upgrade(move |socket| agent_ws::run(s, socket, peer.ip()))
}

/// The 403 for a handshake from a page that may not open our sockets (counted).
fn checked_origin(
    s: &WebState,
    headers: &HeaderMap,
    peer: SocketAddr,
) -> Result<(), crate::http::ApiError> {
    s.origins.check(headers).map_err(|why| {
        s.app
            .metrics
            .security
            .with_label_values(&["ws_origin"])
            .inc();
        let origin = headers
            .get("origin")
            .and_then(|v| v.to_str().ok())
            .map(crate::util::sanitize_for_log)
            .unwrap_or_default();
        tracing::info!(%peer, origin, "WebSocket handshake refused: {why}");
        crate::http::ApiError(StatusCode::FORBIDDEN, why.into())
    })
}

fn limited(ws: WebSocketUpgrade) -> WebSocketUpgrade {
    ws.max_message_size(MAX_MESSAGE).max_frame_size(MAX_MESSAGE)
}

/// Whether a message received before the login is too big to be one (the socket is then
/// closed).
pub(crate) fn too_big_before_login(msg: &WsMessage) -> bool {
    let len = match msg {
        WsMessage::Text(t) => t.len(),
        WsMessage::Binary(b) => b.len(),
        _ => 0,
    };
    len > MAX_MESSAGE_BEFORE_LOGIN
}

/// Closes a socket whose peer sent a message too big before logging in (1009).
pub(crate) async fn close_too_big(socket: &mut WebSocket) {
    let _ = socket
        .send(WsMessage::Close(Some(axum::extract::ws::CloseFrame {
            code: 1009,
            reason: "message too big before login".into(),
        })))
        .await;
}

/// The wallboard's feed: supervisor and reporting tokens only. Browsers cannot set
/// headers on a WebSocket, and a token in the URL ends up in proxies' and servers' logs
/// and the browser's history, so the page sends it as the first message,
/// `{"op": "auth", "token": "…"}`, and gets `{"ev": "auth-ok", "role": …}` or an error
/// and the socket closed.
async fn supervisor_socket(
    State(s): State<Arc<WebState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    ws: WebSocketUpgrade,
) -> Response {
    if let Err(refused) = checked_origin(&s, &headers, peer) {
        return refused.into_response();
    }
    limited(ws).on_upgrade(move |mut socket| async move {
        if let Some(role) = wallboard_auth(&s, &mut socket).await {
            wallboard(s, socket, role).await;
        }
    })
}

/// How long the wallboard has to send its token.
const AUTH_WITHIN: Duration = Duration::from_secs(10);

async fn wallboard_auth(s: &WebState, socket: &mut WebSocket) -> Option<Role> {
    let refuse = |code: &str, message: &str| {
        WsMessage::Text(
            serde_json::json!({"ev": "error", "code": code, "message": message})
                .to_string()
                .into(),
        )
    };
    let msg = match tokio::time::timeout(AUTH_WITHIN, socket.recv()).await {
        Ok(Some(Ok(m))) => m,
        Ok(_) => return None,
        Err(_) => {
            let _ = socket
                .send(refuse(
                    "no-token",
                    "send {\"op\":\"auth\",\"token\":…} first",
                ))
                .await;
            let _ = socket.send(WsMessage::Close(None)).await;
            return None;
        }
    };
    if too_big_before_login(&msg) {
        close_too_big(socket).await;
        return None;
    }
    let v: serde_json::Value = match &msg {
        WsMessage::Text(t) => serde_json::from_str(t).unwrap_or_default(),
        _ => serde_json::Value::Null,
    };
    let mut headers = HeaderMap::new();
    if let (Some("auth"), Some(token)) = (v["op"].as_str(), v["token"].as_str()) {
        if let Ok(h) = format!("Bearer {token}").parse() {
            headers.insert("authorization", h);
        }
    }
    let role = crate::http::authorize(&s.app, &headers, |r| {
        matches!(r, Role::Supervisor | Role::Reporting)
    });
    match role {
        Ok(role) => {
            let who = match role {
                Role::Supervisor => "supervisor",
                _ => "reporting",
            };
            let ok = serde_json::json!({"ev": "auth-ok", "role": who}).to_string();
            socket.send(WsMessage::Text(ok.into())).await.ok()?;
            Some(role)
        }
        Err(e) => {
            let _ = socket.send(refuse("bad-token", &e.1)).await;
            let _ = socket.send(WsMessage::Close(None)).await;
            None
        }
    }
}

/// Pushes a snapshot (queues with their figures, agents, calls) whenever it changed, and at
/// least every 5 s (so the page can show it is live).
async fn wallboard(s: Arc<WebState>, mut socket: WebSocket, role: Role) {
    let mut last = String::new();
    let mut last_sent = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            msg = socket.recv() => match msg {
                Some(Ok(WsMessage::Close(_))) | None | Some(Err(_)) => return,
                _ => continue,
            },
        }
        let Some(snapshot) = snapshot(&s, role.sees_numbers()).await else {
            let _ = socket
                .send(WsMessage::Text(
                    r#"{"ev":"error","message":"engine not running"}"#.into(),
                ))
                .await;
            continue;
        };
        // The server's clock goes out with each snapshot, but is no reason to send one.
        let changed = snapshot != last;
        if changed || last_sent.elapsed() >= Duration::from_secs(5) {
            let body = format!(
                "{},\"now_ms\":{}}}",
                snapshot.strip_suffix('}').unwrap_or(&snapshot),
                unix_ms_now()
            );
            if socket.send(WsMessage::Text(body.into())).await.is_err() {
                return;
            }
            last = snapshot;
            last_sent = Instant::now();
        }
    }
}

async fn snapshot(s: &WebState, numbers: bool) -> Option<String> {
    let engine = &s.app.engine;
    let (queues, agents, calls) =
        tokio::join!(engine.queues(), engine.agents(), engine.calls(numbers));
    let (queues, agents, calls) = (queues.ok()?, agents.ok()?, calls.ok()?);
    // Each queue with its threshold and the targets the wallboard colours by.
    let targets = s.app.reports.targets();
    let mut queues = serde_json::to_value(queues).ok()?;
    for q in queues.as_array_mut().into_iter().flatten() {
        if let Some((threshold, t)) = q["name"].as_str().and_then(|n| targets.get(n)) {
            q["sl_threshold_s"] = serde_json::json!(threshold);
            q["targets"] = serde_json::json!(t);
        }
    }
    let points: Vec<serde_json::Value> = crate::runtime::lock(&s.history).iter().cloned().collect();
    serde_json::to_string(&serde_json::json!({
        "ev": "snapshot",
        "queues": queues,
        "agents": agents,
        "calls": calls,
        "history": {"step_s": HISTORY_STEP.as_secs(), "points": points},
    }))
    .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_checked() {
        let cfg = crate::config::Config::parse(crate::config::DEFAULT_CONFIG, "d").unwrap();
        let (engine, _inbox) = crate::driver::EngineHandle::channel();
        let app = Arc::new(AppState {
            engine,
            metrics: Arc::new(crate::metrics::Metrics::new().unwrap()),
            tokens: Default::default(),
            sessions: crate::http::Sessions::new(Duration::from_secs(60)),
            records_db: None,
            kb_db: None,
            metrics_token: None,
            chat_limits: Default::default(),
            reports: Default::default(),
        });
        let w = WebState::from_config(&cfg, app, LocalRtp::default());
        assert!(w.check_password("1001", "dasan-demo"));
        assert!(!w.check_password("1001", "dasan-dem"));
        assert!(!w.check_password("9999", "dasan-demo"));
        // Ten failures from one address, then even the right password is refused
        // unchecked, from that address; another address and agent still log in.
        let (a, b) = (IpAddr::from([192, 0, 2, 1]), IpAddr::from([192, 0, 2, 2]));
        for _ in 0..10 {
            assert_eq!(w.try_login(a, "1001", "guess"), LoginCheck::Wrong);
        }
        assert_eq!(w.try_login(a, "1001", "dasan-demo"), LoginCheck::Blocked);
        assert_eq!(w.try_login(a, "1002", "dasan-demo"), LoginCheck::Blocked);
        assert_eq!(w.try_login(b, "1001", "dasan-demo"), LoginCheck::Blocked);
        assert_eq!(w.try_login(b, "1002", "dasan-demo"), LoginCheck::Ok);
        let count = |e: &str| w.app.metrics.security.with_label_values(&[e]).get();
        assert_eq!((count("auth_failed"), count("auth_blocked")), (10, 3));
    }

    #[test]
    fn ids_from_clients_cannot_forge_log_lines() {
        let id = "x service=web\nauth blocked: source=1.2.3.4";
        let logged = crate::util::sanitize_for_log(id);
        assert!(!logged.contains([' ', '\n']), "{logged}");
        assert_eq!(crate::util::sanitize_for_log(&"9".repeat(500)).len(), 64);
    }
}
