//! HTTP listener: health, Prometheus metrics, engine statistics and the API. `/healthz`
//! is open (probes); `/metrics` needs `[http] metrics_token` when one is set and is open
//! to loopback clients otherwise; everything under `/api` needs a bearer token
//! ([`auth`]). Errors are JSON `{"error": "…"}` with a 4xx code for bad input.

pub mod auth;
pub mod chat;
mod ops;
pub mod origin;
mod records;
pub mod reports;
mod sessions;

pub use sessions::{LoginRefused, Sessions};

use crate::driver::{EngineHandle, HandleError};
use crate::metrics::Metrics;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use tokio::sync::watch;

/// What the HTTP side holds: the engine's handle, who may call the API, and the stores it
/// reads directly.
pub struct AppState {
    pub engine: EngineHandle,
    pub metrics: Arc<Metrics>,
    /// API tokens and their roles.
    pub tokens: auth::Tokens,
    /// Browser agents' logins (their session tokens are API tokens of role agent).
    pub sessions: Sessions,
    /// The record database, read by the API (the writer has its own connection).
    pub records_db: Option<crate::records::StoreLocation>,
    /// The knowledge base file.
    pub kb_db: Option<PathBuf>,
    /// `[http] metrics_token`: what `/metrics` asks for; None opens it to loopback clients.
    pub metrics_token: Option<String>,
    /// The public web chat's per-client limits.
    pub chat_limits: chat::ChatLimits,
    /// The reports' clock and the queues' thresholds and targets.
    pub reports: reports::ReportSettings,
}

/// The API's routes. The web pages (`crate::web`) add theirs to it.
pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .route("/api/stats", get(stats))
        .route("/api/agents", get(ops::agents))
        .route("/api/agents/{id}", get(ops::agent))
        .route(
            "/api/agents/{id}/state",
            axum::routing::post(ops::set_state),
        )
        .route("/api/queues", get(ops::queues))
        .route(
            "/api/queues/{name}/targets",
            axum::routing::put(reports::set_targets),
        )
        .route("/api/reports", get(reports::all))
        .route("/api/reports/{section}", get(reports::section))
        .route("/api/calls", get(ops::calls))
        .route("/api/calls/{id}/hangup", axum::routing::post(ops::hang_up))
        .route("/api/records", get(records::list))
        .route(
            "/api/records/{id}",
            get(records::get_one).patch(records::set_notes),
        )
        .route("/api/records/{id}/messages", get(records::messages))
        .route("/api/kb", get(kb_search))
        .route("/api/kb/{id}", get(kb_get))
        .route("/api/chat", axum::routing::post(chat::post))
        .route("/api/chat/ws", get(chat::ws))
        .fallback(|| async { api_error(StatusCode::NOT_FOUND, "no such endpoint") })
        .with_state(state)
}

pub fn api_error(code: StatusCode, message: &str) -> axum::response::Response {
    (code, Json(serde_json::json!({ "error": message }))).into_response()
}

/// The token's role if it may do this (`allowed`), else the 401/403 to answer.
pub fn authorize(
    s: &AppState,
    headers: &axum::http::HeaderMap,
    allowed: impl Fn(&auth::Role) -> bool,
) -> Result<auth::Role, ApiError> {
    // Configured tokens first, then the browser agents' session tokens.
    let role = match s.tokens.check(headers) {
        Ok(r) => r,
        Err((code, msg)) => match s.sessions.role(headers) {
            Some(Ok(r)) => r,
            Some(Err(expired)) => return Err(ApiError(StatusCode::UNAUTHORIZED, expired.into())),
            None => return Err(ApiError(code, msg.to_string())),
        },
    };
    if allowed(&role) {
        Ok(role)
    } else {
        Err(ApiError(
            StatusCode::FORBIDDEN,
            "this token's role may not do that".into(),
        ))
    }
}

/// A 4xx (or 503) with a message, turned into a JSON error response.
#[derive(Debug)]
pub struct ApiError(pub StatusCode, pub String);

impl From<HandleError> for ApiError {
    fn from(e: HandleError) -> ApiError {
        use crate::b2bua::api::ApiRefusal;
        let code = match &e {
            HandleError::NotRunning => StatusCode::SERVICE_UNAVAILABLE,
            HandleError::Refused(ApiRefusal::NoAgent | ApiRefusal::NoCall) => StatusCode::NOT_FOUND,
            HandleError::Refused(ApiRefusal::State(_)) => StatusCode::CONFLICT,
        };
        ApiError(code, e.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> axum::response::Response {
        api_error(self.0, &self.1)
    }
}

async fn healthz(State(s): State<Arc<AppState>>) -> impl IntoResponse {
    if s.engine.sip_ready() {
        (StatusCode::OK, "ok\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "starting\n")
    }
}

async fn metrics(
    State(s): State<Arc<AppState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> axum::response::Response {
    if let Err(e) = metrics_access(s.metrics_token.as_deref(), &headers, peer.ip()) {
        return e.into_response();
    }
    // Scrape-time gauges come from the engine task; a stopped engine still renders the rest.
    let _ = tokio::time::timeout(
        std::time::Duration::from_secs(2),
        s.engine.refresh_metrics(),
    )
    .await;
    (
        [("content-type", "text/plain; version=0.0.4; charset=utf-8")],
        s.metrics.render(),
    )
        .into_response()
}

/// Who may read `/metrics`: with a token configured, whoever presents it (401 otherwise);
/// without one, loopback clients that reached the engine by an address or `localhost`
/// (not a page that re-pointed its own name at 127.0.0.1), and 403 for the rest.
fn metrics_access(token: Option<&str>, headers: &HeaderMap, peer: IpAddr) -> Result<(), ApiError> {
    match token {
        Some(want) => {
            let given = headers
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Bearer "))
                .map(str::trim);
            match given {
                Some(g) if auth::constant_time_eq(g.as_bytes(), want.as_bytes()) => Ok(()),
                Some(_) => Err(ApiError(StatusCode::UNAUTHORIZED, "wrong metrics token".into())),
                None => Err(ApiError(
                    StatusCode::UNAUTHORIZED,
                    "missing Authorization: Bearer <[http] metrics_token>".into(),
                )),
            }
        }
        None if peer.to_canonical().is_loopback() && origin::host_is_address_or_localhost(headers) => {
            Ok(())
        }
        None => Err(ApiError(
            StatusCode::FORBIDDEN,
            "/metrics is open to loopback clients only: set [http] metrics_token to scrape from elsewhere".into(),
        )),
    }
}

/// Post-dial delay (trunk INVITE in → agent INVITE out) and text delivery (a sender's
/// MESSAGE in → the agent's MESSAGE out) quantiles as the engine measured them, in
/// microseconds. Supervisor and reporting tokens.
async fn stats(
    State(s): State<Arc<AppState>>,
    headers: axum::http::HeaderMap,
) -> axum::response::Response {
    if let Err(e) = authorize(&s, &headers, |r| !matches!(r, auth::Role::Agent(_))) {
        return e.into_response();
    }
    let q = |h: &crate::metrics::LatencyHist| {
        serde_json::json!({
            "count": h.count(),
            "p50": h.quantile(0.50),
            "p99": h.quantile(0.99),
            "max": h.quantile(1.0),
        })
    };
    Json(serde_json::json!({
        "post_dial_delay_us": q(&s.metrics.pdd_us),
        "text_delivery_us": q(&s.metrics.text_delivery_us),
        "calls_active": s.metrics.calls_active.get(),
    }))
    .into_response()
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct KbParams {
    q: String,
    limit: Option<usize>,
}

/// `GET /api/kb?q=…`: the knowledge base, best match first (any role).
async fn kb_search(
    State(s): State<Arc<AppState>>,
    headers: axum::http::HeaderMap,
    params: Result<axum::extract::Query<KbParams>, axum::extract::rejection::QueryRejection>,
) -> axum::response::Response {
    if let Err(e) = authorize(&s, &headers, |_| true) {
        return e.into_response();
    }
    let p = match params {
        Ok(axum::extract::Query(p)) => p,
        Err(e) => return api_error(StatusCode::BAD_REQUEST, &e.body_text()),
    };
    let limit = p.limit.unwrap_or(20);
    if limit == 0 || limit > 100 {
        return api_error(StatusCode::BAD_REQUEST, "limit must be 1..=100");
    }
    if p.q.trim().is_empty() || p.q.len() > 200 {
        return api_error(StatusCode::BAD_REQUEST, "q: 1 to 200 bytes of search text");
    }
    let Some(path) = s.kb_db.clone() else {
        return api_error(StatusCode::SERVICE_UNAVAILABLE, "no knowledge base");
    };
    let hits = tokio::task::spawn_blocking(move || {
        crate::kb::Kb::open(&path).and_then(|kb| kb.search(&p.q, limit))
    })
    .await;
    match hits {
        Ok(Ok(h)) => Json(serde_json::json!({ "results": h })).into_response(),
        _ => api_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "knowledge base unavailable",
        ),
    }
}

async fn kb_get(
    State(s): State<Arc<AppState>>,
    headers: axum::http::HeaderMap,
    axum::extract::Path(id): axum::extract::Path<String>,
) -> axum::response::Response {
    if let Err(e) = authorize(&s, &headers, |_| true) {
        return e.into_response();
    }
    let Ok(id) = id.parse::<i64>() else {
        return api_error(StatusCode::BAD_REQUEST, "entry ids are numbers");
    };
    let Some(path) = s.kb_db.clone() else {
        return api_error(StatusCode::SERVICE_UNAVAILABLE, "no knowledge base");
    };
    let found =
        tokio::task::spawn_blocking(move || crate::kb::Kb::open(&path).and_then(|kb| kb.get(id)))
            .await;
    match found {
        Ok(Ok(Some(e))) => Json(e).into_response(),
        Ok(Ok(None)) => api_error(StatusCode::NOT_FOUND, "no such entry"),
        _ => api_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "knowledge base unavailable",
        ),
    }
}

/// Bounds on HTTP connections, which any peer can open before it has authenticated.
#[derive(Debug, Clone, Copy)]
pub struct HttpLimits {
    /// A request's headers must arrive within this (slowloris).
    pub header_timeout: std::time::Duration,
    pub max_connections: usize,
    pub max_per_source: usize,
}

impl Default for HttpLimits {
    fn default() -> Self {
        HttpLimits {
            header_timeout: std::time::Duration::from_secs(10),
            max_connections: 20_000,
            max_per_source: 2_000,
        }
    }
}

/// Serves `app` until `shutdown` turns true. Each connection is HTTP/1.1 with upgrades
/// (WebSockets); a peer gets `limits.header_timeout` to send a request's headers, and
/// connections are bounded in total and per source address (beyond them, closed at once
/// and counted in `metrics`), so slow or numerous peers cannot starve the API.
pub async fn serve(
    listen: SocketAddr,
    app: Router,
    limits: HttpLimits,
    metrics: Option<Arc<crate::metrics::Metrics>>,
    tls: Option<Arc<crate::runtime::tls::Reloadable>>,
    mut shutdown: watch::Receiver<bool>,
) -> std::io::Result<()> {
    use hyper_util::rt::{TokioIo, TokioTimer};
    let listener = tokio::net::TcpListener::bind(listen).await?;
    if tls.is_some() {
        tracing::info!(%listen, "HTTPS listening");
    } else {
        tracing::info!(%listen, "HTTP listening");
    }
    let counts = Arc::new(std::sync::Mutex::new(ConnCounts::default()));
    loop {
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!("HTTP accept failed: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = shutdown.changed() => {
                if *shutdown.borrow() {
                    return Ok(());
                }
                continue;
            }
        };
        let Some(slot) = ConnSlot::take(&counts, peer.ip(), &limits) else {
            if let Some(m) = &metrics {
                m.security
                    .with_label_values(&["http_connection_refused"])
                    .inc();
            }
            drop(stream);
            continue;
        };
        // The peer's address reaches handlers (`ConnectInfo`): /metrics and the desktop's
        // login throttle need it.
        let svc = app
            .clone()
            .layer(axum::Extension(axum::extract::ConnectInfo(peer)));
        let svc = hyper_util::service::TowerToHyperService::new(svc);
        let header_timeout = limits.header_timeout;
        // Taken per connection: a SIGHUP reload serves new connections the new certificate.
        let acceptor = tls
            .as_ref()
            .map(|t| tokio_rustls::TlsAcceptor::from(t.current()));
        let metrics = metrics.clone();
        tokio::spawn(async move {
            let mut b = hyper::server::conn::http1::Builder::new();
            b.timer(TokioTimer::new())
                .header_read_timeout(header_timeout);
            match acceptor {
                None => {
                    let _ = b
                        .serve_connection(TokioIo::new(stream), svc)
                        .with_upgrades()
                        .await;
                }
                Some(acceptor) => {
                    // The handshake shares the header deadline: a client that stalls in
                    // either holds a connection slot no longer.
                    let event =
                        match tokio::time::timeout(header_timeout, acceptor.accept(stream)).await {
                            Ok(Ok(s)) => {
                                let _ = b
                                    .serve_connection(TokioIo::new(s), svc)
                                    .with_upgrades()
                                    .await;
                                None
                            }
                            Ok(Err(e)) => {
                                tracing::debug!(%peer, "HTTPS handshake failed: {e}");
                                Some("https_handshake_failed")
                            }
                            Err(_) => Some("https_handshake_timeout"),
                        };
                    if let (Some(ev), Some(m)) = (event, &metrics) {
                        m.security.with_label_values(&[ev]).inc();
                    }
                }
            }
            drop(slot);
        });
    }
}

#[derive(Default)]
struct ConnCounts {
    total: usize,
    per_source: HashMap<std::net::IpAddr, usize>,
}

/// One connection's place in [`ConnCounts`], given back when it ends.
struct ConnSlot {
    counts: Arc<std::sync::Mutex<ConnCounts>>,
    source: std::net::IpAddr,
}

impl ConnSlot {
    fn take(
        counts: &Arc<std::sync::Mutex<ConnCounts>>,
        source: std::net::IpAddr,
        limits: &HttpLimits,
    ) -> Option<ConnSlot> {
        let mut c = counts.lock().unwrap_or_else(|p| p.into_inner());
        let mine = c.per_source.get(&source).copied().unwrap_or(0);
        if c.total >= limits.max_connections || mine >= limits.max_per_source {
            return None;
        }
        c.total += 1;
        *c.per_source.entry(source).or_insert(0) += 1;
        Some(ConnSlot {
            counts: counts.clone(),
            source,
        })
    }
}

impl Drop for ConnSlot {
    fn drop(&mut self) {
        let mut c = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        c.total = c.total.saturating_sub(1);
        if let Some(n) = c.per_source.get_mut(&self.source) {
            *n -= 1;
            if *n == 0 {
                c.per_source.remove(&self.source);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    /// (method, path) of every `.route(…)` in this file's router.
    fn routes_in_source() -> BTreeSet<(String, String)> {
        let src = include_str!("mod.rs");
        let body = &src[..src.find("pub(crate) fn api_error").unwrap_or(src.len())];
        let mut out = BTreeSet::new();
        for chunk in body.split(".route(").skip(1) {
            let Some(start) = chunk.find('"') else {
                continue;
            };
            let rest = &chunk[start + 1..];
            let Some(end) = rest.find('"') else { continue };
            let path = rest[..end].to_string();
            // The method routers up to the closing parenthesis of .route(
            let mut depth = 1;
            let mut args = String::new();
            for c in rest[end + 1..].chars() {
                match c {
                    '(' => depth += 1,
                    ')' => depth -= 1,
                    _ => {}
                }
                if depth == 0 {
                    break;
                }
                args.push(c);
            }
            for m in ["get", "post", "patch", "put", "delete"] {
                if args.contains(&format!("{m}(")) {
                    out.insert((m.to_string(), path.clone()));
                }
            }
        }
        out
    }

    #[test]
    fn metrics_need_the_token_if_one_is_set_else_a_loopback_client() {
        use super::{metrics_access, HeaderMap, StatusCode};
        let code = |token: Option<&str>, auth: Option<&str>, host: &str, peer: &str| {
            let mut h = HeaderMap::new();
            h.insert("host", host.parse().unwrap());
            if let Some(a) = auth {
                h.insert("authorization", a.parse().unwrap());
            }
            match metrics_access(token, &h, peer.parse().unwrap()) {
                Ok(()) => StatusCode::OK,
                Err(e) => e.0,
            }
        };
        let t = Some("metrics-token-0123456789");
        let good = Some("Bearer metrics-token-0123456789");
        assert_eq!(code(t, good, "10.0.0.1:8080", "192.0.2.7"), StatusCode::OK);
        assert_eq!(code(t, good, "127.0.0.1:8080", "127.0.0.1"), StatusCode::OK);
        for bad in [None, Some("Bearer nope"), Some("Basic eHg=")] {
            assert_eq!(
                code(t, bad, "127.0.0.1:8080", "127.0.0.1"),
                StatusCode::UNAUTHORIZED,
                "{bad:?}"
            );
        }
        for (host, peer) in [
            ("127.0.0.1:8080", "127.0.0.1"),
            ("127.0.0.1:8080", "127.9.9.9"),
            ("[::1]:8080", "::1"),
            ("localhost:8080", "::ffff:127.0.0.1"),
        ] {
            assert_eq!(
                code(None, None, host, peer),
                StatusCode::OK,
                "{host} {peer}"
            );
        }
        for (host, peer) in [
            ("10.0.0.1:8080", "192.0.2.7"),
            ("10.0.0.1:8080", "::ffff:192.0.2.7"),
            ("evil.example:8080", "127.0.0.1"),
        ] {
            assert_eq!(
                code(None, good, host, peer),
                StatusCode::FORBIDDEN,
                "{host} {peer}"
            );
        }
    }

    #[test]
    fn openapi_describes_every_route_and_nothing_else() {
        let spec: serde_json::Value =
            serde_json::from_str(include_str!("../../api/openapi.json")).expect("openapi.json");
        let mut documented = BTreeSet::new();
        for (path, ops) in spec["paths"].as_object().expect("paths") {
            for (method, op) in ops.as_object().expect("operations") {
                assert!(op["responses"].is_object(), "{method} {path} has responses");
                documented.insert((method.clone(), path.clone()));
            }
        }
        let served = routes_in_source();
        assert!(served.len() >= 14, "{served:?}");
        assert_eq!(
            served, documented,
            "the router and api/openapi.json disagree"
        );
    }
}
