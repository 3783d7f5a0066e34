//! The public web chat: a web page or a messenger bridge writes to the same text channel
//! as SMS (`POST /api/chat`) and gets the counsellor's replies on a WebSocket
//! (`/api/chat/ws`) or by asking again (`POST /api/chat` with `after`).
//!
//! No login: the chat's token, handed out when it starts, is its only key (24 random
//! characters; it is also why the WebSocket takes any origin — it carries no cookie or
//! ambient credential a foreign page could borrow). Every client address is limited in
//! chats started and messages sent per minute; the engine limits each chat as it limits
//! an SMS sender, and bounds chats in all by `sip.max_calls`. A message is answered only
//! once it is in the consultation record, as an SMS gateway's 202 is.

use super::{api_error, AppState};
use crate::b2bua::{TextRefusal, WebPoll};
use axum::extract::ws::{Message as WsMessage, WebSocket, WebSocketUpgrade};
use axum::extract::{ConnectInfo, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;
use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Chats one client address may start per minute.
const STARTS_PER_MINUTE: usize = 5;
/// Requests (messages, polls, closes) one client address may make per minute.
const REQUESTS_PER_MINUTE: usize = 120;
/// Client addresses tracked at once; beyond it, new addresses are refused until old ones
/// age out (a flood from many addresses cannot grow the table).
const MAX_CLIENTS: usize = 10_000;
/// How often the WebSocket looks for replies.
const POLL_EVERY: Duration = Duration::from_millis(100);
/// A chat's text: what a MESSAGE body may hold.
const MAX_TEXT: usize = 64 * 1024;

/// When one client's recent chat starts and requests came.
type Recent = (VecDeque<Instant>, VecDeque<Instant>);

/// Per client address: when its recent chat starts and requests came.
#[derive(Default)]
pub struct ChatLimits(Mutex<HashMap<IpAddr, Recent>>);

impl ChatLimits {
    /// True when `ip` may make one more request (a start if `start`), and counts it.
    pub fn admit(&self, ip: IpAddr, start: bool, now: Instant) -> bool {
        let minute = Duration::from_secs(60);
        let mut map = match self.0.lock() {
            Ok(m) => m,
            Err(p) => p.into_inner(),
        };
        if map.len() >= MAX_CLIENTS && !map.contains_key(&ip) {
            map.retain(|_, (_, r)| r.back().is_some_and(|t| now.duration_since(*t) < minute));
            if map.len() >= MAX_CLIENTS {
                return false;
            }
        }
        let (starts, requests) = map.entry(ip).or_default();
        for q in [&mut *starts, &mut *requests] {
            while q.front().is_some_and(|t| now.duration_since(*t) >= minute) {
                q.pop_front();
            }
        }
        if requests.len() >= REQUESTS_PER_MINUTE || (start && starts.len() >= STARTS_PER_MINUTE) {
            return false;
        }
        requests.push_back(now);
        if start {
            starts.push_back(now);
        }
        true
    }
}

/// `POST /api/chat`: `{"service": "120", "text": …}` starts a chat (201 with its token),
/// `{"token": …, "text": …}` sends in it (202), `{"token": …, "after": n}` collects the
/// replies after line n, `{"token": …, "close": true}` ends it.
pub async fn post(
    State(s): State<Arc<AppState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    body: axum::body::Bytes,
) -> Response {
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(&body) else {
        return api_error(StatusCode::BAD_REQUEST, "the body must be a JSON object");
    };
    let token = v["token"].as_str();
    let text = v["text"].as_str();
    if !s
        .chat_limits
        .admit(peer.ip(), token.is_none(), Instant::now())
    {
        s.metrics.security.with_label_values(&["chat_rate"]).inc();
        return api_error(StatusCode::TOO_MANY_REQUESTS, "too many chat requests");
    }
    if text.is_some_and(|t| t.len() > MAX_TEXT) {
        return api_error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "a message holds at most 64 KiB",
        );
    }
    let engine = &s.engine;
    match (token, text) {
        (None, Some(text)) => {
            let service = v["service"].as_str().unwrap_or("120");
            match engine.web_chat_start(service, text).await {
                Ok(Ok((token, poll))) => (
                    StatusCode::CREATED,
                    Json(json!({"token": token, "lines": poll.lines, "closed": poll.closed})),
                )
                    .into_response(),
                Ok(Err(r)) => refused(r),
                Err(e) => super::ApiError::from(e).into_response(),
            }
        }
        (Some(token), Some(text)) => match engine.web_chat_send(token, text).await {
            Ok(Ok(())) => (StatusCode::ACCEPTED, Json(json!({"accepted": true}))).into_response(),
            Ok(Err(r)) => refused(r),
            Err(e) => super::ApiError::from(e).into_response(),
        },
        (Some(token), None) if v["close"].as_bool() == Some(true) => {
            match engine.web_chat_close(token).await {
                Ok(Ok(())) => Json(json!({"closed": true})).into_response(),
                Ok(Err(r)) => refused(r),
                Err(e) => super::ApiError::from(e).into_response(),
            }
        }
        (Some(token), None) => {
            let after = v["after"].as_u64().unwrap_or(0);
            match engine.web_chat_poll(token, after).await {
                Ok(Some(poll)) => Json(poll).into_response(),
                Ok(None) => api_error(StatusCode::NOT_FOUND, "no such chat"),
                Err(e) => super::ApiError::from(e).into_response(),
            }
        }
        (None, None) => api_error(StatusCode::BAD_REQUEST, "text is missing"),
    }
}

/// The engine's refusal as the HTTP status that means the same.
fn refused(TextRefusal(code, why): TextRefusal) -> Response {
    let status = StatusCode::from_u16(code).unwrap_or(StatusCode::BAD_REQUEST);
    let status = match code {
        // SIP's 488 (this number takes no text) and 415 have no better HTTP twin than 4xx.
        488 => StatusCode::UNPROCESSABLE_ENTITY,
        _ => status,
    };
    api_error(status, why)
}

/// `GET /api/chat/ws`: the first message is `{"token": …}`; then every reply comes as
/// `{"ev": "line", "seq", "at_ms", "from", "text"}`, the end as `{"ev": "closed"}`, and the
/// page may send `{"op": "send", "text": …}`.
pub async fn ws(
    State(s): State<Arc<AppState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    ws: WebSocketUpgrade,
) -> Response {
    if !s.chat_limits.admit(peer.ip(), false, Instant::now()) {
        return api_error(StatusCode::TOO_MANY_REQUESTS, "too many chat requests");
    }
    ws.max_message_size(MAX_TEXT + 1024)
        .max_frame_size(MAX_TEXT + 1024)
        .on_upgrade(move |socket| session(s, socket, peer.ip()))
}

async fn session(s: Arc<AppState>, mut ws: WebSocket, ip: IpAddr) {
    let first = tokio::time::timeout(Duration::from_secs(10), ws.recv()).await;
    let token = match first {
        Ok(Some(Ok(WsMessage::Text(t)))) => serde_json::from_str::<serde_json::Value>(&t)
            .ok()
            .and_then(|v| v["token"].as_str().map(str::to_string)),
        _ => None,
    };
    let Some(token) = token else {
        let _ = send(
            &mut ws,
            json!({"ev": "error", "error": "send {\"token\": …} first"}),
        )
        .await;
        return;
    };
    let mut after = 0;
    let mut tick = tokio::time::interval(POLL_EVERY);
    loop {
        tokio::select! {
            _ = tick.tick() => {
                let poll: Option<WebPoll> = match s.engine.web_chat_poll(&token, after).await {
                    Ok(p) => p,
                    Err(_) => return,
                };
                let Some(poll) = poll else {
                    let _ = send(&mut ws, json!({"ev": "error", "error": "no such chat"})).await;
                    return;
                };
                for l in poll.lines {
                    after = l.seq;
                    let v = json!({"ev": "line", "seq": l.seq, "at_ms": l.at_ms, "from": l.from, "text": l.text});
                    if send(&mut ws, v).await.is_err() {
                        return;
                    }
                }
                if poll.closed {
                    let _ = send(&mut ws, json!({"ev": "closed"})).await;
                    return;
                }
            }
            msg = ws.recv() => {
                let text = match msg {
                    Some(Ok(WsMessage::Text(t))) => t,
                    Some(Ok(WsMessage::Close(_))) | None | Some(Err(_)) => return,
                    Some(Ok(_)) => continue,
                };
                let v: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
                let (Some("send"), Some(body)) = (v["op"].as_str(), v["text"].as_str()) else {
                    let _ = send(&mut ws, json!({"ev": "error", "error": "unknown op"})).await;
                    continue;
                };
                if !s.chat_limits.admit(ip, false, Instant::now()) {
                    let _ = send(&mut ws, json!({"ev": "error", "code": 429, "error": "too many chat requests"})).await;
                    continue;
                }
                let reply = match s.engine.web_chat_send(&token, body).await {
                    Ok(Ok(())) => json!({"ev": "sent"}),
                    Ok(Err(TextRefusal(code, why))) => json!({"ev": "error", "code": code, "error": why}),
                    Err(_) => return,
                };
                if send(&mut ws, reply).await.is_err() {
                    return;
                }
            }
        }
    }
}

async fn send(ws: &mut WebSocket, v: serde_json::Value) -> Result<(), axum::Error> {
    ws.send(WsMessage::Text(v.to_string().into())).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_client_is_limited_in_starts_and_requests_per_minute() {
        let l = ChatLimits::default();
        let ip: IpAddr = "127.0.0.9".parse().unwrap();
        let t0 = Instant::now();
        for _ in 0..STARTS_PER_MINUTE {
            assert!(l.admit(ip, true, t0));
        }
        assert!(!l.admit(ip, true, t0), "a sixth chat in the minute");
        assert!(l.admit(ip, false, t0), "messages in the chats still go");
        for _ in 0..REQUESTS_PER_MINUTE {
            l.admit(ip, false, t0);
        }
        assert!(!l.admit(ip, false, t0));
        let other: IpAddr = "127.0.0.10".parse().unwrap();
        assert!(l.admit(other, true, t0), "another client is not affected");
        assert!(
            l.admit(ip, true, t0 + Duration::from_secs(61)),
            "a minute later"
        );
    }
}
