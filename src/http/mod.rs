//! HTTP listener: health, Prometheus metrics, engine statistics and the API. `/healthz`
//! and `/metrics` are open (probes and scrapers); everything under `/api` needs a bearer
//! token ([`auth`]). Errors are JSON `{"error": "…"}` with a 4xx code for bad input.

pub mod auth;
mod ops;
mod records;
mod sessions;

pub use sessions::{LoginRefused, Sessions};

use crate::driver::{EngineHandle, HandleError};
use crate::metrics::Metrics;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use std::net::SocketAddr;
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
        .route("/api/calls", get(ops::calls))
        .route("/api/calls/{id}/hangup", axum::routing::post(ops::hang_up))
        .route("/api/records", get(records::list))
        .route(
            "/api/records/{id}",
            get(records::get_one).patch(records::set_notes),
        )
        .route("/api/kb", get(kb_search))
        .route("/api/kb/{id}", get(kb_get))
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

async fn metrics(State(s): State<Arc<AppState>>) -> impl IntoResponse {
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
}

/// Post-dial delay quantiles as the engine measured them (trunk INVITE in → agent INVITE
/// out), in microseconds.
async fn stats(
    State(s): State<Arc<AppState>>,
    headers: axum::http::HeaderMap,
) -> axum::response::Response {
    if let Err(e) = authorize(&s, &headers, |_| true) {
        return e.into_response();
    }
    let h = &s.metrics.pdd_us;
    Json(serde_json::json!({
        "post_dial_delay_us": {
            "count": h.count(),
            "p50": h.quantile(0.50),
            "p99": h.quantile(0.99),
            "max": h.quantile(1.0),
        },
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

/// Serves `app` (the API's [`router`] with whatever the caller merged into it) until
/// `shutdown` turns true.
pub async fn serve(
    listen: SocketAddr,
    app: Router,
    mut shutdown: watch::Receiver<bool>,
) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(listen).await?;
    tracing::info!(%listen, "HTTP listening");
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            while !*shutdown.borrow() {
                if shutdown.changed().await.is_err() {
                    break;
                }
            }
        })
        .await
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
