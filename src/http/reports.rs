//! `GET /api/reports`: the supervisor's reports for a range of local days (the charts'
//! data, [`crate::records::reports`]), `GET /api/reports/{section}` one part of it, as
//! JSON or (tables) CSV; and the queues' targets: the service-level target and the longest
//! wait the wallboard marks, which the dialplan sets and a supervisor may change
//! (`PUT /api/queues/{name}/targets`, kept in `<data dir>/wallboard-targets.json`).

use super::auth::Role;
use super::{api_error, authorize, AppState};
use crate::records::reports::{self, Report, ReportQuery};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

/// The longest range one report covers.
pub const MAX_DAYS: i64 = 92;
/// Ranges longer than this are reported per day instead of per half hour.
const HALF_HOURS_UP_TO_DAYS: i64 = 2;

/// A queue's targets as the wallboard and the reports use them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Targets {
    /// Share of calls to answer within the threshold, 0-1.
    pub sl_target: f64,
    /// The wallboard marks a longest wait over this.
    pub wait_alert_s: u32,
}

#[derive(Debug, Clone)]
struct QueueInfo {
    sl_threshold_s: u32,
    targets: Targets,
}

/// What the reports and the wallboard know of the configuration.
#[derive(Debug, Default)]
pub struct ReportSettings {
    pub utc_offset_s: i64,
    /// Queue name → threshold and targets, in the dialplan's order.
    queues: Mutex<Vec<(String, QueueInfo)>>,
    /// Where a supervisor's changes to the targets are kept.
    file: Option<PathBuf>,
}

impl ReportSettings {
    /// From the configuration; targets a supervisor changed earlier are read from
    /// `<data dir>/wallboard-targets.json` (an unreadable file is logged and ignored: the
    /// dialplan's targets apply).
    pub fn from_config(cfg: &crate::config::Config) -> ReportSettings {
        let mut queues: Vec<(String, QueueInfo)> = cfg
            .queues
            .iter()
            .map(|(name, q)| {
                (
                    name.clone(),
                    QueueInfo {
                        sl_threshold_s: q.sl_threshold_s,
                        targets: Targets {
                            sl_target: f64::from(q.sl_target_percent) / 100.0,
                            wait_alert_s: q.wait_alert_s,
                        },
                    },
                )
            })
            .collect();
        let file = cfg.data.dir.join("wallboard-targets.json");
        if let Ok(text) = std::fs::read_to_string(&file) {
            match serde_json::from_str::<BTreeMap<String, Targets>>(&text) {
                Ok(saved) => {
                    for (name, t) in saved {
                        match queues.iter_mut().find(|(n, _)| *n == name) {
                            Some((_, q)) if valid(&t).is_ok() => q.targets = t,
                            _ => tracing::warn!(
                                "{}: targets for queue '{}' ignored (no such queue, or out of range)",
                                file.display(),
                                crate::util::sanitize_for_log(&name)
                            ),
                        }
                    }
                }
                Err(e) => tracing::warn!("{}: ignored: {e}", file.display()),
            }
        }
        ReportSettings {
            utc_offset_s: cfg.clock.offset_s().unwrap_or(0),
            queues: Mutex::new(queues),
            file: Some(file),
        }
    }

    /// Each queue's threshold (s) and targets.
    pub fn targets(&self) -> BTreeMap<String, (u32, Targets)> {
        crate::runtime::lock(&self.queues)
            .iter()
            .map(|(n, q)| (n.clone(), (q.sl_threshold_s, q.targets.clone())))
            .collect()
    }

    fn set(&self, name: &str, t: Targets) -> Result<(), (StatusCode, String)> {
        valid(&t).map_err(|m| (StatusCode::BAD_REQUEST, m))?;
        let saved: BTreeMap<String, Targets> = {
            let mut queues = crate::runtime::lock(&self.queues);
            let Some((_, q)) = queues.iter_mut().find(|(n, _)| n == name) else {
                return Err((StatusCode::NOT_FOUND, "no such queue".into()));
            };
            q.targets = t;
            queues
                .iter()
                .map(|(n, q)| (n.clone(), q.targets.clone()))
                .collect()
        };
        if let Some(file) = &self.file {
            // Written aside and renamed: a crash leaves the old file or the new one.
            let tmp = file.with_extension("json.tmp");
            let text = serde_json::to_string_pretty(&saved).unwrap_or_default();
            if let Err(e) = std::fs::write(&tmp, text).and_then(|()| std::fs::rename(&tmp, file)) {
                tracing::error!("{}: {e}", file.display());
                return Err((
                    StatusCode::SERVICE_UNAVAILABLE,
                    "the targets changed but could not be saved".into(),
                ));
            }
        }
        Ok(())
    }
}

fn valid(t: &Targets) -> Result<(), String> {
    if !(t.sl_target > 0.0 && t.sl_target <= 1.0) {
        return Err(format!("sl_target must be in (0, 1], not {}", t.sl_target));
    }
    if t.wait_alert_s == 0 || t.wait_alert_s > 86_400 {
        return Err("wait_alert_s must be 1..=86400".into());
    }
    Ok(())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Params {
    /// First local day, `2026-12-01` (default today).
    from: Option<String>,
    /// Last local day, inclusive (default `from`).
    to: Option<String>,
    queue: Option<String>,
    language: Option<String>,
    channel: Option<String>,
    format: Option<String>,
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// The local day `YYYY-MM-DD` as its first millisecond.
fn local_day(s: &str, offset_s: i64) -> Option<i64> {
    if s.len() != 10 || s.contains('T') {
        return None;
    }
    super::records::parse_time(s).map(|ms| ms - offset_s * 1000)
}

/// The local day (`2026-12-01`) that contains `ms`.
pub fn day_name(ms: i64, offset_s: i64) -> String {
    let days = (ms + offset_s * 1000).div_euclid(86_400_000);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}

/// The query a request asks for, or the 400 to answer.
fn query_of(
    settings: &ReportSettings,
    p: &Params,
) -> Result<(ReportQuery, String, String), String> {
    let off = settings.utc_offset_s;
    let now = now_ms();
    let day = |v: &Option<String>, name: &str, default: i64| match v.as_deref() {
        None | Some("") => Ok(default),
        Some(d) => local_day(d, off)
            .ok_or_else(|| format!("{name}: '{d}' is not a day such as 2026-12-01")),
    };
    let today = local_day(&day_name(now, off), off).unwrap_or(0);
    let from = day(&p.from, "from", today)?;
    let to = day(&p.to, "to", from)?;
    if to < from {
        return Err("to is before from".into());
    }
    let days = (to - from) / 86_400_000 + 1;
    if days > MAX_DAYS {
        return Err(format!("at most {MAX_DAYS} days at once"));
    }
    let pick = |v: &Option<String>| v.clone().filter(|s| !s.is_empty());
    let targets = settings.targets();
    let default_threshold_ms = targets
        .values()
        .next()
        .map_or(20_000, |t| t.0 as i64 * 1000);
    Ok((
        ReportQuery {
            from_ms: from,
            to_ms: to + 86_400_000,
            utc_offset_s: off,
            bucket_s: if days <= HALF_HOURS_UP_TO_DAYS {
                1800
            } else {
                86_400
            },
            queue: pick(&p.queue),
            language: pick(&p.language),
            channel: pick(&p.channel),
            thresholds: targets
                .iter()
                .map(|(n, t)| (n.clone(), i64::from(t.0) * 1000))
                .collect(),
            default_threshold_ms,
            wait_bin_s: 10,
            wait_bins: 30,
            now_ms: now,
        },
        day_name(from, off),
        day_name(to, off),
    ))
}

/// The report as the page reads it (documented in api/openapi.yaml).
fn to_json(
    settings: &ReportSettings,
    q: &ReportQuery,
    r: &Report,
    days: (String, String),
    server_ms: f64,
) -> serde_json::Value {
    use serde_json::json;
    let targets = settings.targets();
    let (threshold, target) = q
        .queue
        .as_ref()
        .and_then(|n| targets.get(n))
        .or_else(|| targets.values().next())
        .map_or((20, 0.8), |(s, t)| (*s, t.sl_target));
    let mut options = serde_json::to_value(&r.options).unwrap_or_default();
    // Configured queues are offered even on a day they had no calls.
    if let Some(list) = options["queues"].as_array_mut() {
        for name in targets.keys() {
            if !list.iter().any(|v| v == name) {
                list.push(json!(name));
            }
        }
    }
    let named = |v: &[reports::Count], key: &str| -> Vec<serde_json::Value> {
        v.iter()
            .map(|c| json!({ key: c.name, "calls": c.calls }))
            .collect()
    };
    let averages = |v: &[reports::ScoreAverage], key: &str| -> Vec<serde_json::Value> {
        v.iter()
            .map(|a| json!({ key: a.name, "answers": a.answers, "average": a.average }))
            .collect()
    };
    let mut waits = serde_json::to_value(&r.waits).unwrap_or_default();
    waits["sl_threshold_s"] = json!(threshold);
    json!({
        "from": days.0,
        "to": days.1,
        "utc_offset_s": q.utc_offset_s,
        "bucket_s": r.bucket_s,
        "options": options,
        "target": { "sl_threshold_s": threshold, "sl_target": target },
        "totals": r.totals,
        "intervals": r.intervals,
        "waits": waits,
        "categories": named(&r.categories, "category"),
        "languages": named(&r.languages, "language"),
        "channels": named(&r.channels, "channel"),
        "survey": {
            "scores": r.survey.scores,
            "answers": r.survey.answers,
            "average": r.survey.average,
            "by_queue": averages(&r.survey.by_queue, "queue"),
            "by_agent": averages(&r.survey.by_agent, "agent"),
        },
        "fcr": r.fcr,
        "agents": r.agents,
        "server_ms": server_ms,
    })
}

/// The sections `GET /api/reports/{section}` serves; the tables among them also as CSV.
const SECTIONS: &[&str] = &[
    "totals",
    "intervals",
    "waits",
    "categories",
    "languages",
    "channels",
    "survey",
    "survey-agents",
    "fcr",
    "agents",
];

async fn run(s: Arc<AppState>, headers: HeaderMap, p: Params, section: Option<String>) -> Response {
    if let Err(e) = authorize(&s, &headers, |r| {
        matches!(r, Role::Supervisor | Role::Reporting)
    }) {
        return e.into_response();
    }
    if let Some(sec) = &section {
        if !SECTIONS.contains(&sec.as_str()) {
            return api_error(
                StatusCode::NOT_FOUND,
                &format!(
                    "no report section '{}': one of {}",
                    sec,
                    SECTIONS.join(", ")
                ),
            );
        }
    }
    let csv = match p.format.as_deref() {
        None | Some("json") => false,
        Some("csv") if section.is_some() => true,
        Some("csv") => {
            return api_error(
                StatusCode::BAD_REQUEST,
                "CSV is per table: /api/reports/{agents|intervals|categories|survey-agents|waits}?format=csv",
            )
        }
        Some(f) => return api_error(StatusCode::BAD_REQUEST, &format!("format '{f}': use json or csv")),
    };
    let (q, from, to) = match query_of(&s.reports, &p) {
        Ok(x) => x,
        Err(m) => return api_error(StatusCode::BAD_REQUEST, &m),
    };
    let Some(db) = s.records_db.clone() else {
        return api_error(StatusCode::SERVICE_UNAVAILABLE, "records are not kept");
    };
    let qq = q.clone();
    let started = std::time::Instant::now();
    let built = tokio::task::spawn_blocking(move || {
        db.open()
            .and_then(|mut store| reports::build(store.as_mut(), &qq))
    })
    .await;
    let server_ms = started.elapsed().as_secs_f64() * 1000.0;
    let report = match built {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => {
            tracing::error!("report: {e}");
            return api_error(StatusCode::SERVICE_UNAVAILABLE, "record store unavailable");
        }
        Err(_) => return api_error(StatusCode::SERVICE_UNAVAILABLE, "report failed"),
    };
    if csv {
        let sec = section.as_deref().unwrap_or_default();
        return match reports::csv(&report, sec) {
            Some(body) => {
                let name = format!("attachment; filename=\"{sec}-{from}-{to}.csv\"");
                let mut resp = ([("content-type", "text/csv; charset=utf-8")], body).into_response();
                if let Ok(v) = name.parse() {
                    resp.headers_mut().insert("content-disposition", v);
                }
                resp
            }
            None => api_error(
                StatusCode::BAD_REQUEST,
                &format!("'{sec}' is not a table: CSV is for agents, intervals, categories, survey-agents, waits"),
            ),
        };
    }
    let mut all = to_json(&s.reports, &q, &report, (from, to), server_ms);
    let Some(sec) = section else {
        return Json(all).into_response();
    };
    let part = if sec == "survey-agents" {
        all["survey"]["by_agent"].take()
    } else {
        all[sec.as_str()].take()
    };
    Json(serde_json::json!({
        "from": all["from"],
        "to": all["to"],
        sec: part,
        "server_ms": server_ms,
    }))
    .into_response()
}

pub async fn all(
    State(s): State<Arc<AppState>>,
    headers: HeaderMap,
    params: Result<Query<Params>, axum::extract::rejection::QueryRejection>,
) -> Response {
    match params {
        Ok(Query(p)) => run(s, headers, p, None).await,
        Err(e) => api_error(StatusCode::BAD_REQUEST, &e.body_text()),
    }
}

pub async fn section(
    State(s): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(section): Path<String>,
    params: Result<Query<Params>, axum::extract::rejection::QueryRejection>,
) -> Response {
    match params {
        Ok(Query(p)) => run(s, headers, p, Some(section)).await,
        Err(e) => api_error(StatusCode::BAD_REQUEST, &e.body_text()),
    }
}

/// `PUT /api/queues/{name}/targets` `{"sl_target": 0.85, "wait_alert_s": 45}`:
/// supervisors only; audited.
pub async fn set_targets(
    State(s): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(name): Path<String>,
    body: Result<Json<Targets>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let role = match authorize(&s, &headers, |r| matches!(r, Role::Supervisor)) {
        Ok(r) => r,
        Err(e) => return e.into_response(),
    };
    let Json(t) = match body {
        Ok(b) => b,
        Err(e) => return api_error(StatusCode::BAD_REQUEST, &e.body_text()),
    };
    let detail = format!("sl_target={} wait_alert_s={}", t.sl_target, t.wait_alert_s);
    match s.reports.set(&name, t.clone()) {
        Ok(()) => {
            super::ops::audit(&s, &role, "queue-targets", &name, detail).await;
            Json(t).into_response()
        }
        Err((code, m)) => api_error(code, &m),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_days_round_trip_and_bad_ones_are_refused() {
        let off = 9 * 3600;
        let d = local_day("2026-12-01", off).unwrap();
        assert_eq!(d, crate::records::reports::tests::DAY);
        assert_eq!(day_name(d, off), "2026-12-01");
        assert_eq!(day_name(d + 86_399_999, off), "2026-12-01");
        assert_eq!(day_name(d + 86_400_000, off), "2026-12-02");
        assert_eq!(
            day_name(local_day("2024-02-29", 0).unwrap(), 0),
            "2024-02-29"
        );
        for bad in [
            "2026-13-01",
            "2026-12-01T00:00:00Z",
            "1796050800000",
            "yesterday",
            "",
        ] {
            assert!(local_day(bad, off).is_none(), "{bad}");
        }
        let s = ReportSettings {
            utc_offset_s: off,
            ..Default::default()
        };
        let p = |from: &str, to: &str| Params {
            from: Some(from.into()),
            to: Some(to.into()),
            queue: None,
            language: None,
            channel: Some(String::new()),
            format: None,
        };
        let (q, f, t) = query_of(&s, &p("2026-12-01", "2026-12-02")).unwrap();
        assert_eq!(
            (q.bucket_s, f.as_str(), t.as_str()),
            (1800, "2026-12-01", "2026-12-02")
        );
        assert_eq!(q.to_ms - q.from_ms, 2 * 86_400_000);
        assert_eq!(q.channel, None, "an empty filter is no filter");
        assert_eq!(
            query_of(&s, &p("2026-12-01", "2026-12-31"))
                .unwrap()
                .0
                .bucket_s,
            86_400
        );
        assert!(query_of(&s, &p("2026-12-02", "2026-12-01")).is_err());
        assert!(
            query_of(&s, &p("2026-01-01", "2026-12-31")).is_err(),
            "over 92 days"
        );
    }

    #[test]
    fn targets_are_checked_and_kept_in_a_file() {
        let dir = std::env::temp_dir().join(format!("dasan-targets-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut cfg = crate::config::Config::parse(crate::config::DEFAULT_CONFIG, "d").unwrap();
        cfg.data.dir = dir.clone();
        let s = ReportSettings::from_config(&cfg);
        let first = s.targets().keys().next().unwrap().clone();
        let t = |sl, w| Targets {
            sl_target: sl,
            wait_alert_s: w,
        };
        assert!(s.set(&first, t(1.5, 30)).is_err());
        assert!(s.set(&first, t(0.9, 0)).is_err());
        assert_eq!(
            s.set("nope", t(0.9, 30)).unwrap_err().0,
            StatusCode::NOT_FOUND
        );
        s.set(&first, t(0.9, 30)).unwrap();
        // A restart reads them back.
        let again = ReportSettings::from_config(&cfg);
        assert_eq!(again.targets()[&first].1, t(0.9, 30));
        // A damaged file is ignored: the dialplan's targets apply.
        std::fs::write(dir.join("wallboard-targets.json"), "{not json").unwrap();
        let fresh = ReportSettings::from_config(&cfg);
        assert_ne!(fresh.targets()[&first].1, t(0.9, 30));
        let _ = std::fs::remove_dir_all(dir);
    }
}
