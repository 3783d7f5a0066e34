//! HTTP listener: health, Prometheus metrics and engine statistics.

use crate::driver::Shared;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use tokio::sync::watch;

pub fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .route("/api/stats", get(stats))
        .route("/api/agents", get(agents))
        .with_state(shared)
}

async fn healthz(State(s): State<Arc<Shared>>) -> impl IntoResponse {
    if s.sip_ready.load(Ordering::SeqCst) {
        (StatusCode::OK, "ok\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "starting\n")
    }
}

async fn metrics(State(s): State<Arc<Shared>>) -> impl IntoResponse {
    (
        [("content-type", "text/plain; version=0.0.4; charset=utf-8")],
        s.metrics.render(),
    )
}

/// Post-dial delay quantiles as the engine measured them (trunk INVITE in → agent INVITE
/// out), in microseconds.
async fn stats(State(s): State<Arc<Shared>>) -> impl IntoResponse {
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
}

async fn agents(State(s): State<Arc<Shared>>) -> impl IntoResponse {
    let (tx, rx) = tokio::sync::oneshot::channel();
    if s.query(crate::driver::Query::Agents(tx)).await.is_none() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(serde_json::json!({"error": "engine not running"})),
        );
    }
    match rx.await {
        Ok(list) => (
            StatusCode::OK,
            Json(serde_json::json!(list
                .into_iter()
                .map(|(id, state)| serde_json::json!({"id": id, "state": state}))
                .collect::<Vec<_>>())),
        ),
        Err(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(serde_json::json!({"error": "engine not running"})),
        ),
    }
}

pub async fn serve(
    listen: SocketAddr,
    shared: Arc<Shared>,
    mut shutdown: watch::Receiver<bool>,
) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(listen).await?;
    tracing::info!(%listen, "HTTP listening");
    axum::serve(listener, router(shared))
        .with_graceful_shutdown(async move {
            while !*shutdown.borrow() {
                if shutdown.changed().await.is_err() {
                    break;
                }
            }
        })
        .await
}
