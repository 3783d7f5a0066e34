//! `GET /api/records`: consultation records by arrival time and queue, as JSON or CSV,
//! a page at a time. Caller numbers are masked unless the token's role may see them.
//! CSV fields go through [`crate::util::csv`], which quotes them and neutralises formulas.

use super::auth::Role;
use super::{api_error, authorize, ApiError, AppState};
use crate::records::{Record, RecordQuery};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use std::sync::Arc;

const MAX_LIMIT: usize = 1000;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Params {
    from: Option<String>,
    to: Option<String>,
    queue: Option<String>,
    channel: Option<String>,
    format: Option<String>,
    limit: Option<usize>,
    cursor: Option<String>,
}

/// `2026-11-25`, `2026-11-25T09:00:00Z` (UTC) or Unix milliseconds.
pub fn parse_time(s: &str) -> Option<i64> {
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        return s.parse().ok();
    }
    let (date, time) = match s.split_once('T') {
        Some((d, t)) => (d, Some(t.strip_suffix('Z')?)),
        None => (s, None),
    };
    let mut d = date.split('-').map(|x| x.parse::<i64>().ok());
    let (y, m, day) = (d.next()??, d.next()??, d.next()??);
    if d.next().is_some() || !(1..=12).contains(&m) || !(1..=31).contains(&day) {
        return None;
    }
    let (hh, mm, ss) = match time {
        None => (0, 0, 0),
        Some(t) => {
            let mut p = t.split(':').map(|x| x.parse::<i64>().ok());
            let v = (p.next()??, p.next()??, p.next()??);
            if p.next().is_some() || v.0 > 23 || v.1 > 59 || v.2 > 60 {
                return None;
            }
            v
        }
    };
    // Days from the civil date (Howard Hinnant's algorithm), proleptic Gregorian.
    let y2 = if m <= 2 { y - 1 } else { y };
    let era = y2.div_euclid(400);
    let yoe = y2 - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(((days * 86_400) + hh * 3600 + mm * 60 + ss) * 1000)
}

fn cursor_of(r: &Record) -> String {
    format!("{}.{}", r.arrived_ms, r.call_id)
}

fn parse_cursor(c: &str) -> Option<(i64, String)> {
    let (ms, id) = c.split_once('.')?;
    Some((ms.parse().ok()?, id.to_string()))
}

pub async fn list(
    State(s): State<Arc<AppState>>,
    headers: HeaderMap,
    params: Result<Query<Params>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let role = match authorize(&s, &headers, |r| !matches!(r, Role::Agent(_))) {
        Ok(r) => r,
        Err(e) => return e.into_response(),
    };
    let Query(p) = match params {
        Ok(p) => p,
        Err(e) => return api_error(StatusCode::BAD_REQUEST, &e.body_text()),
    };
    let time = |v: &Option<String>, name: &str| -> Result<Option<i64>, ApiError> {
        match v {
            None => Ok(None),
            Some(t) => parse_time(t).map(Some).ok_or_else(|| {
                ApiError(
                    StatusCode::BAD_REQUEST,
                    format!("{name}: '{t}' is not a date (2026-11-25), a UTC time (2026-11-25T09:00:00Z) or Unix milliseconds"),
                )
            }),
        }
    };
    let (from, to) = match (time(&p.from, "from"), time(&p.to, "to")) {
        (Ok(f), Ok(t)) => (f, t),
        (Err(e), _) | (_, Err(e)) => return e.into_response(),
    };
    let limit = p.limit.unwrap_or(100);
    if limit == 0 || limit > MAX_LIMIT {
        return api_error(
            StatusCode::BAD_REQUEST,
            &format!("limit must be 1..={MAX_LIMIT}"),
        );
    }
    let after = match p.cursor.as_deref().map(parse_cursor) {
        Some(None) => return api_error(StatusCode::BAD_REQUEST, "cursor is not one we issued"),
        Some(Some(c)) => Some(c),
        None => None,
    };
    let csv = match p.format.as_deref() {
        None | Some("json") => false,
        Some("csv") => true,
        Some(f) => {
            return api_error(
                StatusCode::BAD_REQUEST,
                &format!("format '{f}': use json or csv"),
            )
        }
    };
    let Some(db) = s.records_db.clone() else {
        return api_error(StatusCode::SERVICE_UNAVAILABLE, "records are not kept");
    };
    let q = RecordQuery {
        from_ms: from,
        to_ms: to,
        queue: p.queue,
        channel: p.channel,
        after,
        limit,
    };
    let rows =
        tokio::task::spawn_blocking(move || db.open().and_then(|mut store| store.query(&q))).await;
    let mut rows = match rows {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => {
            tracing::error!("records query: {e}");
            return api_error(StatusCode::SERVICE_UNAVAILABLE, "record store unavailable");
        }
        Err(_) => return api_error(StatusCode::SERVICE_UNAVAILABLE, "record query failed"),
    };
    if !role.sees_numbers() {
        for r in &mut rows {
            r.caller = crate::util::mask_number(&r.caller);
        }
    }
    let next = (rows.len() == limit)
        .then(|| rows.last().map(cursor_of))
        .flatten();
    if csv {
        let mut out = String::from(CSV_HEADER);
        for r in &rows {
            csv_row(&mut out, r);
        }
        let mut resp = ([("content-type", "text/csv; charset=utf-8")], out).into_response();
        if let Some(n) = next.and_then(|n| n.parse().ok()) {
            resp.headers_mut().insert("x-next-cursor", n);
        }
        return resp;
    }
    Json(serde_json::json!({ "records": rows, "next": next })).into_response()
}

pub async fn get_one(
    State(s): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let role = match authorize(&s, &headers, |r| !matches!(r, Role::Agent(_))) {
        Ok(r) => r,
        Err(e) => return e.into_response(),
    };
    let Some(db) = s.records_db.clone() else {
        return api_error(StatusCode::SERVICE_UNAVAILABLE, "records are not kept");
    };
    let found =
        tokio::task::spawn_blocking(move || db.open().and_then(|mut store| store.get(&id))).await;
    match found {
        Ok(Ok(Some(mut r))) => {
            if !role.sees_numbers() {
                r.caller = crate::util::mask_number(&r.caller);
            }
            Json(r).into_response()
        }
        Ok(Ok(None)) => api_error(StatusCode::NOT_FOUND, "no such record"),
        _ => api_error(StatusCode::SERVICE_UNAVAILABLE, "record store unavailable"),
    }
}

/// `GET /api/records/{id}/messages`: a text conversation's transcript, in order.
pub async fn messages(
    State(s): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let role = match authorize(&s, &headers, |r| !matches!(r, Role::Agent(_))) {
        Ok(r) => r,
        Err(e) => return e.into_response(),
    };
    let Some(db) = s.records_db.clone() else {
        return api_error(StatusCode::SERVICE_UNAVAILABLE, "records are not kept");
    };
    let found = tokio::task::spawn_blocking(move || {
        db.open().and_then(|mut store| {
            let r = store.get(&id)?;
            r.map(|_| store.messages(&id)).transpose()
        })
    })
    .await;
    match found {
        Ok(Ok(Some(mut m))) => {
            if !role.sees_numbers() {
                for x in &mut m {
                    if x.direction == "in" {
                        x.sender = crate::util::mask_number(&x.sender);
                    }
                }
            }
            Json(serde_json::json!({ "messages": m })).into_response()
        }
        Ok(Ok(None)) => api_error(StatusCode::NOT_FOUND, "no such record"),
        _ => api_error(StatusCode::SERVICE_UNAVAILABLE, "record store unavailable"),
    }
}

const CSV_HEADER: &str = "call_id,sip_call_id,trunk,caller,dialled,channel,language,queue,queues,agent,agents,arrived_ms,offered_ms,answered_ms,ended_ms,wait_ms,talk_ms,outcome,hangup_side,sip_cause,dtmf,survey_score,category,notes,video,wrap_ms\n";

fn csv_row(out: &mut String, r: &Record) {
    let opt = |v: Option<i64>| v.map(|x| x.to_string()).unwrap_or_default();
    let fields = [
        r.call_id.clone(),
        r.sip_call_id.clone(),
        r.trunk.clone(),
        r.caller.clone(),
        r.dialled.clone(),
        r.channel.clone(),
        r.language.clone(),
        r.queue.clone(),
        r.queues.join(" "),
        r.agent.clone().unwrap_or_default(),
        r.agents.join(" "),
        r.arrived_ms.to_string(),
        opt(r.offered_ms),
        opt(r.answered_ms),
        opt(r.ended_ms),
        opt(r.wait_ms),
        opt(r.talk_ms),
        r.outcome.clone().unwrap_or_default(),
        r.hangup_side.clone().unwrap_or_default(),
        opt(r.sip_cause),
        r.dtmf.clone(),
        opt(r.survey_score),
        r.category.clone().unwrap_or_default(),
        r.notes.clone().unwrap_or_default(),
        r.video.clone().unwrap_or_default(),
        opt(r.wrap_ms),
    ];
    crate::util::csv::push_row(out, &fields);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_parse_as_utc_or_unix_ms_and_garbage_is_none() {
        assert_eq!(parse_time("1970-01-01"), Some(0));
        assert_eq!(parse_time("2026-11-25T09:00:00Z"), Some(1_795_597_200_000));
        assert_eq!(parse_time("2000-03-01"), Some(951_868_800_000));
        assert_eq!(parse_time("1795597200000"), Some(1_795_597_200_000));
        for bad in [
            "",
            "yesterday",
            "2026-13-01",
            "2026-11-25T25:00:00Z",
            "2026-11-25T09:00:00",
        ] {
            assert_eq!(parse_time(bad), None, "{bad}");
        }
    }

    /// Every text column holding a formula comes out as text; the numbers as they were.
    #[test]
    fn csv_neutralises_formulas_in_every_text_column() {
        let evil = ["=cmd|' /C calc'!A0", "+1", "-1", "@A1", "\t=1", "\r=1"];
        let mut n = 0;
        let mut e = || {
            n += 1;
            format!("{}{n}", evil[n % evil.len()])
        };
        let r = Record {
            call_id: e(),
            sip_call_id: e(),
            trunk: e(),
            caller: e(),
            dialled: e(),
            channel: e(),
            language: e(),
            queue: e(),
            queues: vec![e(), e()],
            agent: Some(e()),
            agents: vec![e()],
            arrived_ms: 1_795_597_200_000,
            offered_ms: Some(1),
            answered_ms: Some(2),
            ended_ms: Some(3),
            wait_ms: Some(4),
            talk_ms: Some(5),
            outcome: Some(e()),
            hangup_side: Some(e()),
            sip_cause: Some(200),
            dtmf: e(),
            survey_score: Some(5),
            category: Some(e()),
            notes: Some(e()),
            video: Some(e()),
            wrap_ms: Some(6),
        };
        let mut out = String::from(CSV_HEADER);
        csv_row(&mut out, &r);
        let rows = crate::util::csv::parse(&out);
        let (head, row) = (&rows[0], &rows[1]);
        assert_eq!(head.len(), row.len());
        let numbers = [
            "arrived_ms",
            "offered_ms",
            "answered_ms",
            "ended_ms",
            "wait_ms",
            "talk_ms",
            "sip_cause",
            "survey_score",
            "wrap_ms",
        ];
        for (name, v) in head.iter().zip(row) {
            if numbers.contains(&name.as_str()) {
                assert!(v.bytes().all(|b| b.is_ascii_digit()), "{name}: {v:?}");
            } else {
                assert!(v.starts_with('\''), "{name}: {v:?}");
                assert!(evil.iter().any(|x| v[1..].starts_with(x)), "{name}: {v:?}");
            }
        }
        assert_eq!(head.len() - numbers.len(), 17, "text columns");
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotesBody {
    category: Option<String>,
    notes: Option<String>,
}

/// `PATCH /api/records/{id}` `{"category": …, "notes": …}`: the consultation form, during
/// or after the call. Supervisors for any record; an agent for calls it was offered.
pub async fn set_notes(
    State(s): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Result<Json<NotesBody>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let role = match authorize(&s, &headers, |r| !matches!(r, Role::Reporting)) {
        Ok(r) => r,
        Err(e) => return e.into_response(),
    };
    let Json(b) = match body {
        Ok(b) => b,
        Err(e) => return api_error(StatusCode::BAD_REQUEST, &e.body_text()),
    };
    if b.category.is_none() && b.notes.is_none() {
        return api_error(StatusCode::BAD_REQUEST, "give category, notes or both");
    }
    if b.category.as_ref().is_some_and(|c| c.len() > 100)
        || b.notes.as_ref().is_some_and(|n| n.len() > 10_000)
    {
        return api_error(
            StatusCode::BAD_REQUEST,
            "category is at most 100 bytes, notes at most 10,000",
        );
    }
    let Some(db) = s.records_db.clone() else {
        return api_error(StatusCode::SERVICE_UNAVAILABLE, "records are not kept");
    };
    let lookup = id.clone();
    let found =
        tokio::task::spawn_blocking(move || db.open().and_then(|mut st| st.get(&lookup))).await;
    let record = match found {
        Ok(Ok(Some(r))) => r,
        Ok(Ok(None)) => return api_error(StatusCode::NOT_FOUND, "no such record"),
        _ => return api_error(StatusCode::SERVICE_UNAVAILABLE, "record store unavailable"),
    };
    if let Role::Agent(own) = &role {
        if !record.agents.contains(own) {
            return api_error(
                StatusCode::FORBIDDEN,
                "an agent may only write notes on its own calls",
            );
        }
    }
    let ev = crate::records::RecordEvent::Notes {
        id: id.clone(),
        category: b.category,
        notes: b.notes,
    };
    if s.engine.record(ev).await.is_err() {
        return api_error(StatusCode::SERVICE_UNAVAILABLE, "engine not running");
    }
    super::ops::audit(&s, &role, "record-notes", &id, String::new()).await;
    (
        StatusCode::ACCEPTED,
        Json(serde_json::json!({ "call_id": id })),
    )
        .into_response()
}
