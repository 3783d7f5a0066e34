//! The default store: SQLite in the data directory (WAL, `synchronous = FULL`), so the
//! engine runs with no database server. Schema changes are numbered migrations applied
//! in order at open.

use super::{split_list, Outcome, Record, RecordEvent, RecordQuery, Store, StoreError, COLUMNS};
use rusqlite::{params, Connection, OptionalExtension};
use std::path::Path;

/// Migration N brings the schema from version N to N+1.
const MIGRATIONS: &[&str] = &[
    // 1: consultation records.
    "CREATE TABLE calls (
        call_id TEXT PRIMARY KEY,
        sip_call_id TEXT NOT NULL,
        trunk TEXT NOT NULL,
        caller TEXT NOT NULL,
        dialled TEXT NOT NULL,
        channel TEXT NOT NULL,
        language TEXT NOT NULL,
        queue TEXT NOT NULL,
        queues TEXT NOT NULL,
        agent TEXT,
        agents TEXT NOT NULL DEFAULT '',
        arrived_ms INTEGER NOT NULL,
        offered_ms INTEGER,
        answered_ms INTEGER,
        ended_ms INTEGER,
        wait_ms INTEGER,
        talk_ms INTEGER,
        outcome TEXT,
        hangup_side TEXT,
        sip_cause INTEGER,
        dtmf TEXT NOT NULL DEFAULT '',
        survey_score INTEGER,
        category TEXT,
        notes TEXT,
        state TEXT NOT NULL
    );
    CREATE INDEX calls_arrived ON calls (arrived_ms, call_id);
    CREATE INDEX calls_active ON calls (state) WHERE state = 'active';",
    // 2: the audit trail of state-changing API calls.
    "CREATE TABLE audit (
        id INTEGER PRIMARY KEY,
        at_ms INTEGER NOT NULL,
        actor TEXT NOT NULL,
        action TEXT NOT NULL,
        target TEXT NOT NULL,
        detail TEXT NOT NULL
    );
    CREATE INDEX audit_at ON audit (at_ms);",
    // 3: text conversations' messages, in order.
    "CREATE TABLE messages (
        id INTEGER PRIMARY KEY,
        call_id TEXT NOT NULL,
        at_ms INTEGER NOT NULL,
        direction TEXT NOT NULL,
        sender TEXT NOT NULL,
        body TEXT NOT NULL
    );
    CREATE INDEX messages_call ON messages (call_id, id);",
    // 4: video calls' statistics (JSON).
    "ALTER TABLE calls ADD COLUMN video TEXT;",
    // 5: reports: after-call work per call, agents' away periods, repeat callers.
    "ALTER TABLE calls ADD COLUMN wrap_ms INTEGER;
    CREATE TABLE agent_states (
        id INTEGER PRIMARY KEY,
        agent TEXT NOT NULL,
        state TEXT NOT NULL,
        reason TEXT,
        at_ms INTEGER NOT NULL
    );
    CREATE INDEX agent_states_at ON agent_states (at_ms);
    CREATE INDEX calls_caller ON calls (caller, arrived_ms);",
];

pub struct SqliteStore {
    conn: Connection,
}

impl SqliteStore {
    /// Opens (creating if needed) and migrates the database at `path`.
    pub fn open(path: &Path) -> Result<SqliteStore, StoreError> {
        let conn = Connection::open(path).map_err(|source| StoreError::Open {
            path: path.display().to_string(),
            source,
        })?;
        Self::with_connection(conn)
    }

    /// An in-memory store (tests, benchmarks).
    pub fn in_memory() -> Result<SqliteStore, StoreError> {
        Self::with_connection(Connection::open_in_memory()?)
    }

    fn with_connection(conn: Connection) -> Result<SqliteStore, StoreError> {
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        // WAL: readers (the API) never block the writer; FULL: each commit is fsync'd.
        conn.query_row("PRAGMA journal_mode = WAL", [], |_| Ok(()))?;
        conn.execute_batch("PRAGMA synchronous = FULL;")?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL);",
        )?;
        let version: i64 = conn
            .query_row("SELECT version FROM schema_version", [], |r| r.get(0))
            .optional()?
            .unwrap_or(0);
        let known = MIGRATIONS.len() as i64;
        if version > known {
            return Err(StoreError::TooNew {
                found: version,
                known,
            });
        }
        let mut conn = conn;
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(version as usize) {
            let tx = conn.transaction()?;
            tx.execute_batch(sql)?;
            tx.execute("DELETE FROM schema_version", [])?;
            tx.execute(
                "INSERT INTO schema_version (version) VALUES (?1)",
                [i as i64 + 1],
            )?;
            tx.commit()?;
        }
        Ok(SqliteStore { conn })
    }

    pub fn schema_version(&self) -> Result<i64, StoreError> {
        Ok(self
            .conn
            .query_row("SELECT version FROM schema_version", [], |r| r.get(0))?)
    }
}

fn apply_one(tx: &rusqlite::Transaction<'_>, ev: &RecordEvent) -> rusqlite::Result<()> {
    match ev {
        RecordEvent::Arrived {
            id,
            sip_call_id,
            trunk,
            caller,
            dialled,
            channel,
            queue,
            language,
            at_ms,
        } => {
            tx.prepare_cached(
                "INSERT OR IGNORE INTO calls (call_id, sip_call_id, trunk, caller, dialled, channel,
                 language, queue, queues, arrived_ms, state)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?8, ?9, 'active')",
            )?
            .execute(params![
                id,
                sip_call_id,
                trunk,
                caller,
                dialled,
                channel,
                language,
                queue,
                at_ms
            ])?;
        }
        RecordEvent::Queue {
            id,
            queue,
            language,
        } => {
            tx.prepare_cached(
                "UPDATE calls SET queue = ?2, language = ?3, queues = queues || ',' || ?2
                 WHERE call_id = ?1",
            )?
            .execute(params![id, queue, language])?;
        }
        RecordEvent::Offered { id, agent, at_ms } => {
            tx.prepare_cached(
                "UPDATE calls SET offered_ms = COALESCE(offered_ms, ?3),
                 agents = CASE WHEN agents = '' THEN ?2 ELSE agents || ',' || ?2 END
                 WHERE call_id = ?1",
            )?
            .execute(params![id, agent, at_ms])?;
        }
        RecordEvent::Answered { id, agent, at_ms } => {
            tx.prepare_cached(
                "UPDATE calls SET agent = ?2, answered_ms = ?3, wait_ms = ?3 - arrived_ms
                 WHERE call_id = ?1",
            )?
            .execute(params![id, agent, at_ms])?;
        }
        RecordEvent::Digit { id, digit } => {
            tx.prepare_cached("UPDATE calls SET dtmf = dtmf || ?2 WHERE call_id = ?1")?
                .execute(params![id, digit.to_string()])?;
        }
        RecordEvent::Ended {
            id,
            outcome,
            side,
            sip_cause,
            at_ms,
        } => {
            tx.prepare_cached(
                "UPDATE calls SET ended_ms = ?2, outcome = ?3, hangup_side = ?4, sip_cause = ?5,
                 state = 'ended',
                 wait_ms = COALESCE(wait_ms, ?2 - arrived_ms),
                 talk_ms = CASE WHEN answered_ms IS NULL THEN NULL ELSE ?2 - answered_ms END
                 WHERE call_id = ?1 AND state = 'active'",
            )?
            .execute(params![id, at_ms, outcome.as_str(), side, sip_cause])?;
        }
        RecordEvent::Survey { id, score } => {
            tx.prepare_cached("UPDATE calls SET survey_score = ?2 WHERE call_id = ?1")?
                .execute(params![id, score])?;
        }
        RecordEvent::Video { id, summary } => {
            let json = serde_json::to_string(summary).unwrap_or_default();
            tx.prepare_cached("UPDATE calls SET video = ?2 WHERE call_id = ?1")?
                .execute(params![id, json])?;
        }
        RecordEvent::Notes {
            id,
            category,
            notes,
        } => {
            tx.prepare_cached(
                "UPDATE calls SET category = COALESCE(?2, category), notes = COALESCE(?3, notes)
                 WHERE call_id = ?1",
            )?
            .execute(params![id, category, notes])?;
        }
        RecordEvent::Message {
            id,
            at_ms,
            direction,
            sender,
            text,
        } => {
            tx.prepare_cached(
                "INSERT INTO messages (call_id, at_ms, direction, sender, body)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
            )?
            .execute(params![id, at_ms, direction, sender, text])?;
        }
        RecordEvent::WrapUp { id, wrap_ms } => {
            tx.prepare_cached("UPDATE calls SET wrap_ms = ?2 WHERE call_id = ?1")?
                .execute(params![id, wrap_ms])?;
        }
        RecordEvent::AgentState {
            agent,
            state,
            reason,
            at_ms,
        } => {
            tx.prepare_cached(
                "INSERT INTO agent_states (agent, state, reason, at_ms) VALUES (?1, ?2, ?3, ?4)",
            )?
            .execute(params![agent, state, reason, at_ms])?;
        }
        RecordEvent::Audit {
            at_ms,
            actor,
            action,
            target,
            detail,
        } => {
            tx.prepare_cached(
                "INSERT INTO audit (at_ms, actor, action, target, detail) VALUES (?1, ?2, ?3, ?4, ?5)",
            )?
            .execute(params![at_ms, actor, action, target, detail])?;
        }
    }
    Ok(())
}

fn row_to_record(r: &rusqlite::Row<'_>) -> rusqlite::Result<Record> {
    Ok(Record {
        call_id: r.get(0)?,
        sip_call_id: r.get(1)?,
        trunk: r.get(2)?,
        caller: r.get(3)?,
        dialled: r.get(4)?,
        channel: r.get(5)?,
        language: r.get(6)?,
        queue: r.get(7)?,
        queues: split_list(r.get(8)?),
        agent: r.get(9)?,
        agents: split_list(r.get(10)?),
        arrived_ms: r.get(11)?,
        offered_ms: r.get(12)?,
        answered_ms: r.get(13)?,
        ended_ms: r.get(14)?,
        wait_ms: r.get(15)?,
        talk_ms: r.get(16)?,
        outcome: r.get(17)?,
        hangup_side: r.get(18)?,
        sip_cause: r.get(19)?,
        dtmf: r.get(20)?,
        survey_score: r.get(21)?,
        category: r.get(22)?,
        notes: r.get(23)?,
        video: r.get(24)?,
        wrap_ms: r.get(25)?,
    })
}

/// `SELECT columns` of the records that arrived in `[?1, ?2)`, read as a run of the table.
fn in_arrival_order(columns: &str) -> String {
    format!(
        "SELECT {columns} FROM calls NOT INDEXED
         WHERE rowid BETWEEN
             COALESCE((SELECT MIN(rowid) FROM calls WHERE arrived_ms >= ?1 AND arrived_ms < ?2), 0)
           AND COALESCE((SELECT MAX(rowid) FROM calls WHERE arrived_ms >= ?1 AND arrived_ms < ?2), -1)
           AND arrived_ms >= ?1 AND arrived_ms < ?2"
    )
}

/// A text column, borrowed (None for NULL or bytes that are not UTF-8).
fn text<'r>(r: &'r rusqlite::Row<'_>, i: usize) -> rusqlite::Result<Option<&'r str>> {
    Ok(match r.get_ref(i)? {
        rusqlite::types::ValueRef::Text(t) => std::str::from_utf8(t).ok(),
        _ => None,
    })
}

impl Store for SqliteStore {
    fn scan_callers(
        &mut self,
        from_ms: i64,
        to_ms: i64,
        f: &mut dyn FnMut(&str, i64),
    ) -> Result<(), StoreError> {
        let mut st = self
            .conn
            .prepare_cached(&in_arrival_order("caller, arrived_ms"))?;
        let mut rows = st.query(params![from_ms, to_ms])?;
        while let Some(r) = rows.next()? {
            f(text(r, 0)?.unwrap_or(""), r.get(1)?);
        }
        Ok(())
    }

    fn scan_calls(
        &mut self,
        from_ms: i64,
        to_ms: i64,
        f: &mut dyn FnMut(&super::CallRow<'_>),
    ) -> Result<(), StoreError> {
        // Rows are stored in arrival order (inserted when the call arrives), so the range
        // is read as a run of the table between its first and last row: one sequential
        // pass, where the arrival index would cost a lookup per row (5x slower on a
        // month). Rows out of order are still inside the run, and the test on arrived_ms
        // keeps only the range.
        let mut st = self
            .conn
            .prepare_cached(&in_arrival_order(super::SCAN_COLUMNS))?;
        let mut rows = st.query(params![from_ms, to_ms])?;
        while let Some(r) = rows.next()? {
            f(&super::CallRow {
                arrived_ms: r.get(0)?,
                queue: text(r, 1)?.unwrap_or(""),
                language: text(r, 2)?.unwrap_or(""),
                channel: text(r, 3)?.unwrap_or(""),
                agent: text(r, 4)?,
                answered: r.get(5)?,
                wait_ms: r.get(6)?,
                outcome: text(r, 7)?,
                talk_ms: r.get(8)?,
                wrap_ms: r.get(9)?,
                survey: r.get(10)?,
                category: text(r, 11)?,
                caller: text(r, 12)?.unwrap_or(""),
            });
        }
        Ok(())
    }

    fn select(
        &mut self,
        sql: &str,
        params: &[super::SqlParam],
    ) -> Result<Vec<Vec<super::SqlValue>>, StoreError> {
        use super::{SqlParam, SqlValue};
        use rusqlite::types::ValueRef;
        let mut st = self.conn.prepare_cached(sql)?;
        let n = st.column_count();
        let values: Vec<rusqlite::types::Value> = params
            .iter()
            .map(|p| match p {
                SqlParam::Int(i) => rusqlite::types::Value::Integer(*i),
                SqlParam::Text(Some(t)) => rusqlite::types::Value::Text(t.clone()),
                SqlParam::Text(None) => rusqlite::types::Value::Null,
            })
            .collect();
        let rows = st.query_map(rusqlite::params_from_iter(values.iter()), |r| {
            (0..n)
                .map(|i| {
                    Ok(match r.get_ref(i)? {
                        ValueRef::Null => SqlValue::Null,
                        ValueRef::Integer(x) => SqlValue::Int(x),
                        ValueRef::Real(x) => SqlValue::Real(x),
                        ValueRef::Text(t) => SqlValue::Text(String::from_utf8_lossy(t).into()),
                        ValueRef::Blob(_) => SqlValue::Null,
                    })
                })
                .collect::<rusqlite::Result<Vec<_>>>()
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn apply(&mut self, events: &[RecordEvent]) -> Result<(), StoreError> {
        let tx = self.conn.transaction()?;
        for ev in events {
            apply_one(&tx, ev)?;
        }
        tx.commit()?;
        Ok(())
    }

    fn mark_interrupted(&mut self, now_ms: i64) -> Result<usize, StoreError> {
        Ok(self.conn.execute(
            "UPDATE calls SET state = 'ended', outcome = ?2, ended_ms = ?1, hangup_side = 'engine',
             wait_ms = COALESCE(wait_ms, ?1 - arrived_ms),
             talk_ms = CASE WHEN answered_ms IS NULL THEN NULL ELSE ?1 - answered_ms END
             WHERE state = 'active'",
            params![now_ms, Outcome::Interrupted.as_str()],
        )?)
    }

    fn query(&mut self, q: &RecordQuery) -> Result<Vec<Record>, StoreError> {
        let (after_ms, after_id) = q.after.clone().unwrap_or((i64::MIN, String::new()));
        let sql = format!(
            "SELECT {COLUMNS} FROM calls
             WHERE arrived_ms >= ?1 AND arrived_ms < ?2
               AND (?3 IS NULL OR queue = ?3)
               AND (arrived_ms > ?4 OR (arrived_ms = ?4 AND call_id > ?5))
               AND (?7 IS NULL OR channel = ?7)
             ORDER BY arrived_ms, call_id LIMIT ?6"
        );
        let mut stmt = self.conn.prepare_cached(&sql)?;
        let rows = stmt.query_map(
            params![
                q.from_ms.unwrap_or(i64::MIN),
                q.to_ms.unwrap_or(i64::MAX),
                q.queue,
                after_ms,
                after_id,
                q.limit as i64,
                q.channel
            ],
            row_to_record,
        )?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    }

    fn get(&mut self, call_id: &str) -> Result<Option<Record>, StoreError> {
        let sql = format!("SELECT {COLUMNS} FROM calls WHERE call_id = ?1");
        Ok(self
            .conn
            .query_row(&sql, [call_id], row_to_record)
            .optional()?)
    }

    fn messages(&mut self, call_id: &str) -> Result<Vec<super::TextMessage>, StoreError> {
        let mut st = self.conn.prepare_cached(
            "SELECT at_ms, direction, sender, body FROM messages WHERE call_id = ?1 ORDER BY id",
        )?;
        let rows = st.query_map([call_id], |r| {
            Ok(super::TextMessage {
                at_ms: r.get(0)?,
                direction: r.get(1)?,
                sender: r.get(2)?,
                text: r.get(3)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    fn arrived(id: &str, at: i64, queue: &str) -> RecordEvent {
        RecordEvent::Arrived {
            id: id.into(),
            sip_call_id: format!("sip-{id}"),
            trunk: "carrier".into(),
            caller: "0212345678".into(),
            dialled: "120".into(),
            channel: "voice",
            queue: queue.into(),
            language: "ko".into(),
            at_ms: at,
        }
    }

    /// The suite every backend passes.
    pub(crate) fn store_suite(s: &mut dyn Store) {
        s.apply(&[
            arrived("a", 1_000, "general"),
            RecordEvent::Offered {
                id: "a".into(),
                agent: "1001".into(),
                at_ms: 1_010,
            },
            RecordEvent::Offered {
                id: "a".into(),
                agent: "1002".into(),
                at_ms: 16_000,
            },
            RecordEvent::Answered {
                id: "a".into(),
                agent: "1002".into(),
                at_ms: 20_000,
            },
        ])
        .unwrap();
        s.apply(&[
            arrived("b", 2_000, "general"),
            RecordEvent::Digit {
                id: "b".into(),
                digit: '9',
            },
            RecordEvent::Digit {
                id: "b".into(),
                digit: '1',
            },
            RecordEvent::Queue {
                id: "b".into(),
                queue: "en".into(),
                language: "en".into(),
            },
            RecordEvent::Ended {
                id: "b".into(),
                outcome: Outcome::Abandoned,
                side: "caller",
                sip_cause: 487,
                at_ms: 9_000,
            },
            arrived("c", 3_000, "general"),
            RecordEvent::Ended {
                id: "a".into(),
                outcome: Outcome::Answered,
                side: "agent",
                sip_cause: 200,
                at_ms: 80_000,
            },
        ])
        .unwrap();
        let a = s.get("a").unwrap().unwrap();
        assert_eq!(a.agent.as_deref(), Some("1002"));
        assert_eq!(a.agents, vec!["1001", "1002"]);
        assert_eq!(
            (a.offered_ms, a.wait_ms, a.talk_ms),
            (Some(1_010), Some(19_000), Some(60_000))
        );
        assert_eq!(a.outcome.as_deref(), Some("answered"));
        assert_eq!(a.hangup_side.as_deref(), Some("agent"));
        let b = s.get("b").unwrap().unwrap();
        assert_eq!(
            (b.queue.as_str(), b.queues.clone()),
            ("en", vec!["general".to_string(), "en".to_string()])
        );
        assert_eq!((b.dtmf.as_str(), b.language.as_str()), ("91", "en"));
        assert_eq!(
            (b.wait_ms, b.talk_ms, b.sip_cause),
            (Some(7_000), None, Some(487))
        );
        // A record that ended is not ended again by a late event.
        s.apply(&[RecordEvent::Ended {
            id: "b".into(),
            outcome: Outcome::TimedOut,
            side: "engine",
            sip_cause: 480,
            at_ms: 99_000,
        }])
        .unwrap();
        assert_eq!(
            s.get("b").unwrap().unwrap().outcome.as_deref(),
            Some("abandoned")
        );
        s.apply(&[
            RecordEvent::Notes {
                id: "a".into(),
                category: Some("여권".into()),
                notes: Some("발급 기간 안내".into()),
            },
            RecordEvent::Notes {
                id: "a".into(),
                category: None,
                notes: Some("재안내".into()),
            },
            RecordEvent::Audit {
                at_ms: 1,
                actor: "supervisor".into(),
                action: "agent-state".into(),
                target: "1001".into(),
                detail: "not-ready: lunch".into(),
            },
        ])
        .unwrap();
        s.apply(&[RecordEvent::Survey {
            id: "a".into(),
            score: 4,
        }])
        .unwrap();
        let a = s.get("a").unwrap().unwrap();
        assert_eq!(a.survey_score, Some(4));
        assert_eq!(
            (a.category.as_deref(), a.notes.as_deref()),
            (Some("여권"), Some("재안내")),
            "None leaves a field as it was"
        );
        // "c" was in progress when the process died.
        assert_eq!(s.mark_interrupted(50_000).unwrap(), 1);
        let c = s.get("c").unwrap().unwrap();
        assert_eq!(
            (c.outcome.as_deref(), c.wait_ms),
            (Some("interrupted"), Some(47_000))
        );
        // Pages in arrival order, filtered by time and queue.
        let mut page = |after, limit| {
            s.query(&RecordQuery {
                after,
                limit,
                ..Default::default()
            })
            .unwrap()
        };
        let p1 = page(None, 2);
        assert_eq!(
            p1.iter().map(|r| r.call_id.as_str()).collect::<Vec<_>>(),
            ["a", "b"]
        );
        let p2 = page(Some((p1[1].arrived_ms, p1[1].call_id.clone())), 2);
        assert_eq!(
            p2.iter().map(|r| r.call_id.as_str()).collect::<Vec<_>>(),
            ["c"]
        );
        let en = s
            .query(&RecordQuery {
                queue: Some("en".into()),
                limit: 10,
                ..Default::default()
            })
            .unwrap();
        assert_eq!(en.len(), 1);
        let window = s
            .query(&RecordQuery {
                from_ms: Some(1_500),
                to_ms: Some(3_000),
                limit: 10,
                ..Default::default()
            })
            .unwrap();
        assert_eq!(window.len(), 1, "from inclusive, to exclusive");
        assert!(s.get("nope").unwrap().is_none());

        // A text conversation: its messages in order, Korean and emoji intact; the
        // channel filter finds it.
        let mut t = arrived("t", 4_000, "general");
        if let RecordEvent::Arrived { channel, .. } = &mut t {
            *channel = "text";
        }
        let msg = |at_ms, direction, sender: &str, text: &str| RecordEvent::Message {
            id: "t".into(),
            at_ms,
            direction,
            sender: sender.into(),
            text: text.into(),
        };
        s.apply(&[
            t,
            msg(4_000, "in", "01011112222", "버스 시간표 🚌"),
            msg(4_000, "out", "engine", "상담사가 곧 답변드리겠습니다."),
        ])
        .unwrap();
        s.apply(&[msg(9_000, "out", "1001", "10분 간격입니다")])
            .unwrap();
        let got = s.messages("t").unwrap();
        assert_eq!(
            got.iter()
                .map(|m| (
                    m.at_ms,
                    m.direction.as_str(),
                    m.sender.as_str(),
                    m.text.as_str()
                ))
                .collect::<Vec<_>>(),
            [
                (4_000, "in", "01011112222", "버스 시간표 🚌"),
                (4_000, "out", "engine", "상담사가 곧 답변드리겠습니다."),
                (9_000, "out", "1001", "10분 간격입니다"),
            ],
            "in the order they came, even in the same millisecond"
        );
        assert!(s.messages("a").unwrap().is_empty(), "a call has none");
        let text = s
            .query(&RecordQuery {
                channel: Some("text".into()),
                limit: 10,
                ..Default::default()
            })
            .unwrap();
        assert_eq!(
            text.iter().map(|r| r.call_id.as_str()).collect::<Vec<_>>(),
            ["t"]
        );
    }

    #[test]
    fn sqlite_passes_the_store_suite() {
        let mut s = SqliteStore::in_memory().unwrap();
        store_suite(&mut s);
    }

    #[test]
    fn migrates_an_empty_file_and_reopens_it() {
        let dir = std::env::temp_dir().join(format!("dasan-store-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("records.db");
        let _ = std::fs::remove_file(&path);
        {
            let mut s = SqliteStore::open(&path).unwrap();
            assert_eq!(s.schema_version().unwrap(), MIGRATIONS.len() as i64);
            s.apply(&[arrived("x", 5, "general")]).unwrap();
        }
        let mut s = SqliteStore::open(&path).unwrap();
        assert_eq!(s.get("x").unwrap().unwrap().arrived_ms, 5);
        // A database from a newer engine is refused, not damaged.
        s.conn
            .execute("UPDATE schema_version SET version = 99", [])
            .unwrap();
        drop(s);
        assert!(matches!(
            SqliteStore::open(&path),
            Err(StoreError::TooNew { found: 99, .. })
        ));
        let _ = std::fs::remove_dir_all(dir);
    }
}
