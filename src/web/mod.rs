//! Browser agents and the supervisor wallboard, served on the HTTP listener.
//!
//! - `/agent`: the agent desktop. It logs in over a WebSocket (`/agent/ws`) with the
//!   agent's own credentials, sets up one WebRTC connection to the engine ([`bridge`]) and
//!   from then on is an agent like any desk phone: the engine offers it calls through a SIP
//!   user agent that stands in for it ([`ua`]), and it answers, holds, transfers and hangs
//!   up by JSON messages on the same socket ([`agent_ws`]).
//! - `/supervisor`: queues, agents and calls in progress, pushed over `/supervisor/ws`
//!   whenever they change (checked every 250 ms on the server; nothing polls from the page).
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
use crate::http::AppState;
use crate::runtime::LocalRtp;
use axum::extract::ws::{Message as WsMessage, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, Query, State};
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
    passwords: HashMap<String, String>,
    /// The engine's SIP listener, as the agents' stand-in user agents reach it.
    pub sip: SocketAddr,
    /// The address WebRTC and the bridge's RTP socket bind (the engine's media address).
    pub media_ip: IpAddr,
    /// `[media] webrtc_port_min/max`: where those sockets bind.
    pub webrtc_ports: (u16, u16),
    /// The logged-in desktops' own agent states.
    pub own_states: agent_ws::OwnStates,
    /// The in-process RTP switch the browser legs share with the media plane.
    pub local_rtp: LocalRtp,
}

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
                .map(|a| (a.id.clone(), a.password.clone()))
                .collect(),
            sip,
            media_ip: cfg.media.ip.unwrap_or(sip.ip()),
            webrtc_ports: (cfg.media.webrtc_port_min, cfg.media.webrtc_port_max),
            own_states: Default::default(),
            local_rtp,
        }
    }

    /// Whether `password` is the agent's (compared in constant time).
    pub fn check_password(&self, agent: &str, password: &str) -> bool {
        let Some(p) = self.passwords.get(agent) else {
            // Same work for an unknown agent: no timing hint about which ids exist.
            let _ = constant_eq(password.as_bytes(), password.as_bytes());
            return false;
        };
        constant_eq(p.as_bytes(), password.as_bytes())
    }
}

fn constant_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The desktop's and the wallboard's routes, to merge into the API's router.
pub fn router(state: Arc<WebState>) -> Router {
    Router::new()
        .route("/agent", get(|| async { page("agent.html") }))
        .route("/supervisor", get(|| async { page("supervisor.html") }))
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

async fn agent_socket(State(s): State<Arc<WebState>>, ws: WebSocketUpgrade) -> Response {
    ws.on_upgrade(move |socket| agent_ws::run(s, socket))
}

#[derive(serde::Deserialize)]
struct TokenParam {
    token: String,
}

/// The wallboard's feed. Browsers cannot set headers on a WebSocket, so the supervisor
/// token comes as `?token=`; only supervisor and reporting tokens are accepted.
async fn supervisor_socket(
    State(s): State<Arc<WebState>>,
    q: Result<Query<TokenParam>, axum::extract::rejection::QueryRejection>,
    ws: WebSocketUpgrade,
) -> Response {
    let Ok(Query(q)) = q else {
        return crate::http::api_error(StatusCode::UNAUTHORIZED, "token missing");
    };
    let mut headers = HeaderMap::new();
    if let Ok(v) = format!("Bearer {}", q.token).parse() {
        headers.insert("authorization", v);
    }
    let role = match crate::http::authorize(&s.app, &headers, |r| {
        matches!(r, Role::Supervisor | Role::Reporting)
    }) {
        Ok(r) => r,
        Err(e) => return e.into_response(),
    };
    ws.on_upgrade(move |socket| wallboard(s, socket, role))
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
        let Some(snapshot) = snapshot(&s.app.engine, role.sees_numbers()).await else {
            let _ = socket
                .send(WsMessage::Text(
                    r#"{"ev":"error","message":"engine not running"}"#.into(),
                ))
                .await;
            continue;
        };
        let changed = snapshot != last;
        if changed || last_sent.elapsed() >= Duration::from_secs(5) {
            if socket
                .send(WsMessage::Text(snapshot.clone().into()))
                .await
                .is_err()
            {
                return;
            }
            last = snapshot;
            last_sent = Instant::now();
        }
    }
}

async fn snapshot(engine: &crate::driver::EngineHandle, numbers: bool) -> Option<String> {
    let (queues, agents, calls) =
        tokio::join!(engine.queues(), engine.agents(), engine.calls(numbers));
    let (queues, agents, calls) = (queues.ok()?, agents.ok()?, calls.ok()?);
    serde_json::to_string(&serde_json::json!({
        "ev": "snapshot",
        "queues": queues,
        "agents": agents,
        "calls": calls,
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
        });
        let w = WebState::from_config(&cfg, app, LocalRtp::default());
        assert!(w.check_password("1001", "dasan-demo"));
        assert!(!w.check_password("1001", "dasan-dem"));
        assert!(!w.check_password("9999", "dasan-demo"));
    }
}
