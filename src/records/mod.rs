//! Consultation records: one per call, written as the call progresses.
//!
//! The engine (sans-IO) emits [`RecordEvent`]s; the driver hands them to the writer
//! ([`writer`]) without ever waiting: a bounded queue, and when that is full a local
//! overflow list that is counted and logged, so that signalling never blocks and no event
//! is dropped. The writer applies events to a [`Store`] in batches, one transaction each,
//! committed at least every `[data] flush_interval_ms` (WAL, `synchronous = FULL`: a
//! commit is on disk when it returns). On start, calls left `active` by a process that died
//! are marked `interrupted`.

pub mod pg;
pub mod reports;
pub mod sqlite;
pub mod writer;

use serde::Serialize;

/// A state change of one call's record. Times are Unix milliseconds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordEvent {
    Arrived {
        id: String,
        sip_call_id: String,
        trunk: String,
        caller: String,
        dialled: String,
        channel: &'static str,
        queue: String,
        language: String,
        at_ms: i64,
    },
    /// The call moved to another queue (a menu choice).
    Queue {
        id: String,
        queue: String,
        language: String,
    },
    Offered {
        id: String,
        agent: String,
        at_ms: i64,
    },
    Answered {
        id: String,
        agent: String,
        at_ms: i64,
    },
    Digit {
        id: String,
        digit: char,
    },
    Ended {
        id: String,
        outcome: Outcome,
        /// "caller", "agent" or "engine".
        side: &'static str,
        sip_cause: u16,
        at_ms: i64,
    },
    /// The caller's post-call survey answer, 1-5.
    Survey {
        id: String,
        score: u8,
    },
    /// The agent's category and notes, during or after the call (None: unchanged).
    Notes {
        id: String,
        category: Option<String>,
        notes: Option<String>,
    },
    /// One message of a text conversation (channel `text`), in the order the engine took
    /// or sent it: `direction` "in" (from the sender) or "out" (an agent's reply, or the
    /// engine's own acknowledgement with `sender` "engine").
    Message {
        id: String,
        at_ms: i64,
        direction: &'static str,
        sender: String,
        text: String,
    },
    /// A video call's statistics (channel `video`), when its relay ended.
    Video {
        id: String,
        summary: crate::media::video::VideoSummary,
    },
    /// The agent who answered the call finished its after-call work (wrap-up) this long
    /// after the call ended (early with "I'm done", or at the queue's `wrap_up_s`).
    WrapUp {
        id: String,
        wrap_ms: i64,
    },
    /// An agent went away ("not-ready" with its reason, "logged-out") or came back
    /// ("available"): the periods the agent summary counts as not-ready time by reason.
    AgentState {
        agent: String,
        state: &'static str,
        reason: Option<String>,
        at_ms: i64,
    },
    /// A state-changing API call: who, what, on what.
    Audit {
        at_ms: i64,
        actor: String,
        action: String,
        target: String,
        detail: String,
    },
}

impl RecordEvent {
    pub fn id(&self) -> &str {
        match self {
            RecordEvent::Arrived { id, .. }
            | RecordEvent::Queue { id, .. }
            | RecordEvent::Offered { id, .. }
            | RecordEvent::Answered { id, .. }
            | RecordEvent::Digit { id, .. }
            | RecordEvent::Ended { id, .. }
            | RecordEvent::Notes { id, .. }
            | RecordEvent::Message { id, .. }
            | RecordEvent::Video { id, .. }
            | RecordEvent::WrapUp { id, .. }
            | RecordEvent::Survey { id, .. } => id,
            RecordEvent::AgentState { agent, .. } => agent,
            RecordEvent::Audit { target, .. } => target,
        }
    }
}

/// How a call ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Answered,
    Abandoned,
    TimedOut,
    Callback,
    Transferred,
    Rejected,
    Interrupted,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Answered => "answered",
            Outcome::Abandoned => "abandoned",
            Outcome::TimedOut => "timed_out",
            Outcome::Callback => "callback",
            Outcome::Transferred => "transferred",
            Outcome::Rejected => "rejected",
            Outcome::Interrupted => "interrupted",
        }
    }
}

/// A record as stored and exported.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Record {
    pub call_id: String,
    pub sip_call_id: String,
    pub trunk: String,
    pub caller: String,
    pub dialled: String,
    pub channel: String,
    pub language: String,
    /// The queue the call ended in.
    pub queue: String,
    /// Every queue it passed through, in order.
    pub queues: Vec<String>,
    /// The agent who answered, if any.
    pub agent: Option<String>,
    /// Every agent it was offered to, in order.
    pub agents: Vec<String>,
    pub arrived_ms: i64,
    pub offered_ms: Option<i64>,
    pub answered_ms: Option<i64>,
    pub ended_ms: Option<i64>,
    pub wait_ms: Option<i64>,
    pub talk_ms: Option<i64>,
    /// `None` while the call is in progress.
    pub outcome: Option<String>,
    pub hangup_side: Option<String>,
    pub sip_cause: Option<i64>,
    pub dtmf: String,
    pub survey_score: Option<i64>,
    pub category: Option<String>,
    pub notes: Option<String>,
    /// A video call's statistics (JSON: codec, agent_video, from_caller, from_agent with
    /// packets, frames, fps, kbps, lost, keyframe_requests, dropped; waiting_packets).
    #[serde(serialize_with = "json_text")]
    pub video: Option<String>,
    /// The answering agent's after-call work, once it ended.
    pub wrap_ms: Option<i64>,
}

/// A JSON column as the JSON it holds (not as a string), null when absent or unreadable.
fn json_text<S: serde::Serializer>(v: &Option<String>, s: S) -> Result<S::Ok, S::Error> {
    let value = v
        .as_deref()
        .and_then(|t| serde_json::from_str::<serde_json::Value>(t).ok());
    serde::Serialize::serialize(&value, s)
}

/// The record columns in [`Record`] field order, shared by the SQL backends.
pub(crate) const COLUMNS: &str =
    "call_id, sip_call_id, trunk, caller, dialled, channel, language, queue,
    queues, agent, agents, arrived_ms, offered_ms, answered_ms, ended_ms, wait_ms, talk_ms,
    outcome, hangup_side, sip_cause, dtmf, survey_score, category, notes, video, wrap_ms";

/// A comma-joined list column back into its items.
pub(crate) fn split_list(s: String) -> Vec<String> {
    s.split(',')
        .filter(|x| !x.is_empty())
        .map(str::to_string)
        .collect()
}

/// A page of records: arrival time in [from, to), optionally one queue, after a cursor.
#[derive(Debug, Clone, Default)]
pub struct RecordQuery {
    pub from_ms: Option<i64>,
    pub to_ms: Option<i64>,
    pub queue: Option<String>,
    /// "voice" or "text".
    pub channel: Option<String>,
    /// Continue after this (arrived_ms, call_id), as returned with the previous page.
    pub after: Option<(i64, String)>,
    pub limit: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database {path}: {source}")]
    Open {
        path: String,
        source: rusqlite::Error,
    },
    #[error("database: {0}")]
    Sql(#[from] rusqlite::Error),
    #[error("database schema version {found} is newer than this engine's {known}")]
    TooNew { found: i64, known: i64 },
    #[error("database {url}: {reason}")]
    Connect { url: String, reason: String },
    #[error("database: {0}")]
    Backend(String),
}

/// The record store. One implementation per backend; the same test suite runs on each.
pub trait Store: Send {
    /// Applies events in order, in one transaction, durable when this returns.
    fn apply(&mut self, events: &[RecordEvent]) -> Result<(), StoreError>;
    /// Calls still `active` (the process died mid-call) become `interrupted`; returns how
    /// many.
    fn mark_interrupted(&mut self, now_ms: i64) -> Result<usize, StoreError>;
    fn query(&mut self, q: &RecordQuery) -> Result<Vec<Record>, StoreError>;
    fn get(&mut self, call_id: &str) -> Result<Option<Record>, StoreError>;
    /// A text conversation's messages, in order (empty for a voice call).
    fn messages(&mut self, call_id: &str) -> Result<Vec<TextMessage>, StoreError>;
    /// Runs a read-only query the reports build ([`reports`]): written for SQLite with
    /// `?N` parameters (each wrapped in a `CAST`, so PostgreSQL can type it), integer and
    /// text columns only.
    fn select(&mut self, sql: &str, params: &[SqlParam]) -> Result<Vec<Vec<SqlValue>>, StoreError>;
    /// Every record that arrived in `[from_ms, to_ms)`, in no particular order, as the
    /// reports read them.
    fn scan_calls(
        &mut self,
        from_ms: i64,
        to_ms: i64,
        f: &mut dyn FnMut(&CallRow<'_>),
    ) -> Result<(), StoreError>;
    /// The caller and arrival of every record that arrived in `[from_ms, to_ms)`: the
    /// next calls first-contact resolution looks for, read narrowly (a week of them).
    fn scan_callers(
        &mut self,
        from_ms: i64,
        to_ms: i64,
        f: &mut dyn FnMut(&str, i64),
    ) -> Result<(), StoreError>;
}

/// The columns of a record the reports read, borrowed from the store's row.
#[derive(Debug, Clone, Copy)]
pub struct CallRow<'a> {
    pub arrived_ms: i64,
    pub queue: &'a str,
    pub language: &'a str,
    pub channel: &'a str,
    pub agent: Option<&'a str>,
    pub answered: bool,
    pub wait_ms: Option<i64>,
    pub outcome: Option<&'a str>,
    pub talk_ms: Option<i64>,
    pub wrap_ms: Option<i64>,
    pub survey: Option<i64>,
    pub category: Option<&'a str>,
    pub caller: &'a str,
}

/// What [`Store::scan_calls`] selects, in [`CallRow`] order.
pub(crate) const SCAN_COLUMNS: &str = "arrived_ms, queue, language, channel, agent,
    answered_ms IS NOT NULL, wait_ms, outcome, talk_ms, wrap_ms, survey_score, category, caller";

/// A query parameter of [`Store::select`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SqlParam {
    Int(i64),
    Text(Option<String>),
}

/// A column value [`Store::select`] returns.
#[derive(Debug, Clone, PartialEq)]
pub enum SqlValue {
    Null,
    Int(i64),
    Real(f64),
    Text(String),
}

impl SqlValue {
    pub fn int(&self) -> i64 {
        match self {
            SqlValue::Int(i) => *i,
            SqlValue::Real(r) => *r as i64,
            _ => 0,
        }
    }

    pub fn opt_int(&self) -> Option<i64> {
        match self {
            SqlValue::Null | SqlValue::Text(_) => None,
            v => Some(v.int()),
        }
    }

    pub fn text(&self) -> String {
        match self {
            SqlValue::Text(t) => t.clone(),
            SqlValue::Int(i) => i.to_string(),
            SqlValue::Real(r) => r.to_string(),
            SqlValue::Null => String::new(),
        }
    }
}

/// One stored message of a text conversation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TextMessage {
    pub at_ms: i64,
    pub direction: String,
    pub sender: String,
    pub text: String,
}

/// Where records live: `[data] database` (a `postgresql://` URL) or SQLite in the data
/// directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreLocation {
    Sqlite(std::path::PathBuf),
    Postgres(String),
}

impl StoreLocation {
    pub fn from_config(cfg: &crate::config::Config) -> StoreLocation {
        match &cfg.data.database {
            Some(url) => StoreLocation::Postgres(url.clone()),
            None => StoreLocation::Sqlite(cfg.data.dir.join("records.db")),
        }
    }

    pub fn open(&self) -> Result<Box<dyn Store>, StoreError> {
        Ok(match self {
            StoreLocation::Sqlite(p) => Box::new(sqlite::SqliteStore::open(p)?),
            StoreLocation::Postgres(url) => Box::new(pg::PgStore::connect(url, None)?),
        })
    }

    /// For logs: the file, or the URL without its password.
    pub fn describe(&self) -> String {
        match self {
            StoreLocation::Sqlite(p) => p.display().to_string(),
            StoreLocation::Postgres(url) => pg::redact(url),
        }
    }
}
