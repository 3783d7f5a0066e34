//! Running the centre: agents (list, one, state changes), queues (live figures and the
//! calls waiting), calls in progress (list, hang up). State changes are audited into the
//! record store.

use super::auth::Role;
use super::{api_error, authorize, ApiError, AppState};
use crate::b2bua::api::StateChange;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use std::sync::Arc;

fn actor(role: &Role) -> String {
    match role {
        Role::Supervisor => "supervisor".into(),
        Role::Reporting => "reporting".into(),
        Role::Agent(id) => format!("agent:{id}"),
    }
}

pub(crate) async fn audit(s: &AppState, role: &Role, action: &str, target: &str, detail: String) {
    let at_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0);
    let ev = crate::records::RecordEvent::Audit {
        at_ms,
        actor: actor(role),
        action: action.into(),
        target: target.into(),
        detail,
    };
    if s.engine.record(ev).await.is_err() {
        tracing::warn!(
            action,
            target,
            "audit entry not written: engine not running"
        );
    }
}

/// What an agent token may see of the centre: its own agent and the calls it rings or
/// talks on; queues, other agents, records and statistics are for supervisor and reporting
/// tokens (the README's roles).
fn sees_agent(role: &Role, id: &str) -> bool {
    match role {
        Role::Agent(own) => own == id,
        Role::Supervisor | Role::Reporting => true,
    }
}

fn sees_call(role: &Role, agent: Option<&str>) -> bool {
    match role {
        Role::Agent(own) => agent == Some(own.as_str()),
        Role::Supervisor | Role::Reporting => true,
    }
}

/// `GET /api/agents`: every agent; an agent token gets a list of itself.
pub async fn agents(State(s): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    let role = match authorize(&s, &headers, |_| true) {
        Ok(r) => r,
        Err(e) => return e.into_response(),
    };
    match s.engine.agents().await {
        Ok(mut list) => {
            list.retain(|a| sees_agent(&role, &a.id));
            Json(list).into_response()
        }
        Err(e) => ApiError::from(e).into_response(),
    }
}

/// `GET /api/agents/{id}`: an agent token for its own agent only.
pub async fn agent(
    State(s): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    if let Err(e) = authorize(&s, &headers, |r| sees_agent(r, &id)) {
        return e.into_response();
    }
    match s.engine.agents().await {
        Ok(list) => match list.into_iter().find(|a| a.id == id) {
            Some(a) => Json(a).into_response(),
            None => api_error(StatusCode::NOT_FOUND, "no such agent"),
        },
        Err(e) => ApiError::from(e).into_response(),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StateBody {
    state: String,
    reason: Option<String>,
}

/// `POST /api/agents/{id}/state` `{"state": "ready" | "not-ready" | "logout", "reason": …}`:
/// supervisors for any agent, an agent token for its own agent only.
pub async fn set_state(
    State(s): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Result<Json<StateBody>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let role = match authorize(&s, &headers, |r| match r {
        Role::Supervisor => true,
        Role::Agent(own) => *own == id,
        Role::Reporting => false,
    }) {
        Ok(r) => r,
        Err(e) => return e.into_response(),
    };
    let Json(b) = match body {
        Ok(b) => b,
        Err(e) => return api_error(StatusCode::BAD_REQUEST, &e.body_text()),
    };
    let change = match (b.state.as_str(), b.reason) {
        ("ready", None) => StateChange::Ready,
        ("logout", None) => StateChange::Logout,
        ("not-ready", Some(r)) if !r.trim().is_empty() && r.len() <= 64 => {
            StateChange::NotReady(r.trim().to_string())
        }
        ("not-ready", _) => {
            return api_error(
                StatusCode::BAD_REQUEST,
                "not-ready needs a reason of 1 to 64 bytes (e.g. \"lunch\")",
            )
        }
        ("ready" | "logout", Some(_)) => {
            return api_error(StatusCode::BAD_REQUEST, "only not-ready takes a reason")
        }
        (other, _) => {
            return api_error(
                StatusCode::BAD_REQUEST,
                &format!("state '{other}': use ready, not-ready or logout"),
            )
        }
    };
    let detail = match &change {
        StateChange::Ready => "ready".to_string(),
        StateChange::NotReady(r) => format!("not-ready: {r}"),
        StateChange::Logout => "logout".to_string(),
    };
    match s.engine.set_agent_state(&id, change).await {
        Ok(view) => {
            audit(&s, &role, "agent-state", &id, detail).await;
            Json(view).into_response()
        }
        Err(e) => ApiError::from(e).into_response(),
    }
}

/// `GET /api/queues`: supervisor and reporting tokens.
pub async fn queues(State(s): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    if let Err(e) = authorize(&s, &headers, |r| !matches!(r, Role::Agent(_))) {
        return e.into_response();
    }
    match s.engine.queues().await {
        Ok(q) => Json(q).into_response(),
        Err(e) => ApiError::from(e).into_response(),
    }
}

/// `GET /api/calls`: calls in progress; an agent token sees the ones it rings or talks on.
pub async fn calls(State(s): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    let role = match authorize(&s, &headers, |_| true) {
        Ok(r) => r,
        Err(e) => return e.into_response(),
    };
    let numbers = role.sees_numbers();
    match s.engine.calls(numbers).await {
        Ok(mut c) => {
            c.retain(|c| sees_call(&role, c.agent.as_deref()));
            Json(c).into_response()
        }
        Err(e) => ApiError::from(e).into_response(),
    }
}

/// `POST /api/calls/{id}/hangup`: supervisors only.
pub async fn hang_up(
    State(s): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let role = match authorize(&s, &headers, |r| matches!(r, Role::Supervisor)) {
        Ok(r) => r,
        Err(e) => return e.into_response(),
    };
    match s.engine.hang_up(&id).await {
        Ok(()) => {
            audit(&s, &role, "hang-up", &id, String::new()).await;
            (StatusCode::OK, Json(serde_json::json!({ "ended": id }))).into_response()
        }
        Err(e) => ApiError::from(e).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_agent_token_sees_its_own_agent_and_calls_and_others_see_all() {
        let me = Role::Agent("1001".into());
        assert!(sees_agent(&me, "1001"));
        assert!(!sees_agent(&me, "1002"));
        assert!(sees_call(&me, Some("1001")));
        assert!(!sees_call(&me, Some("1002")));
        assert!(!sees_call(&me, None), "a waiting call is no agent's");
        for r in [Role::Supervisor, Role::Reporting] {
            assert!(sees_agent(&r, "1002") && sees_call(&r, None) && sees_call(&r, Some("1002")));
        }
    }
}
