//! PostgreSQL behind the same [`Store`] trait, selected by `[data] database =
//! "postgresql://…"`. The same numbered migrations idea as SQLite; each batch is one
//! transaction (PostgreSQL's commit is durable with its default `synchronous_commit`).

use super::{split_list, Outcome, Record, RecordEvent, RecordQuery, Store, StoreError, COLUMNS};
use postgres::{Client, NoTls, Statement};

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
        arrived_ms BIGINT NOT NULL,
        offered_ms BIGINT,
        answered_ms BIGINT,
        ended_ms BIGINT,
        wait_ms BIGINT,
        talk_ms BIGINT,
        outcome TEXT,
        hangup_side TEXT,
        sip_cause BIGINT,
        dtmf TEXT NOT NULL DEFAULT '',
        survey_score BIGINT,
        category TEXT,
        notes TEXT,
        state TEXT NOT NULL
    );
    CREATE INDEX calls_arrived ON calls (arrived_ms, call_id);
    CREATE INDEX calls_active ON calls (state) WHERE state = 'active';",
    // 2: the audit trail of state-changing API calls.
    "CREATE TABLE audit (
        id BIGSERIAL PRIMARY KEY,
        at_ms BIGINT NOT NULL,
        actor TEXT NOT NULL,
        action TEXT NOT NULL,
        target TEXT NOT NULL,
        detail TEXT NOT NULL
    );
    CREATE INDEX audit_at ON audit (at_ms);",
    // 3: text conversations' messages, in order.
    "CREATE TABLE messages (
        id BIGSERIAL PRIMARY KEY,
        call_id TEXT NOT NULL,
        at_ms BIGINT NOT NULL,
        direction TEXT NOT NULL,
        sender TEXT NOT NULL,
        body TEXT NOT NULL
    );
    CREATE INDEX messages_call ON messages (call_id, id);",
    // 4: video calls' statistics (JSON).
    "ALTER TABLE calls ADD COLUMN video TEXT;",
    // 5: reports: after-call work per call, agents' away periods, repeat callers.
    "ALTER TABLE calls ADD COLUMN wrap_ms BIGINT;
    CREATE TABLE agent_states (
        id BIGSERIAL PRIMARY KEY,
        agent TEXT NOT NULL,
        state TEXT NOT NULL,
        reason TEXT,
        at_ms BIGINT NOT NULL
    );
    CREATE INDEX agent_states_at ON agent_states (at_ms);
    CREATE INDEX calls_caller ON calls (caller, arrived_ms);",
];

struct Prepared {
    arrived: Statement,
    queue: Statement,
    offered: Statement,
    answered: Statement,
    digit: Statement,
    ended: Statement,
}

pub struct PgStore {
    client: Client,
    st: Prepared,
}

fn pg(e: postgres::Error) -> StoreError {
    StoreError::Backend(e.to_string())
}

impl PgStore {
    /// Connects to `url`; `schema` (tests) sets the search path first.
    pub fn connect(url: &str, schema: Option<&str>) -> Result<PgStore, StoreError> {
        let mut client = Client::connect(url, NoTls).map_err(|e| StoreError::Connect {
            url: redact(url),
            reason: e.to_string(),
        })?;
        if let Some(s) = schema {
            client
                .batch_execute(&format!("SET search_path TO {s}"))
                .map_err(pg)?;
        }
        client
            .batch_execute("CREATE TABLE IF NOT EXISTS schema_version (version BIGINT NOT NULL)")
            .map_err(pg)?;
        let version: i64 = client
            .query_opt("SELECT version FROM schema_version", &[])
            .map_err(pg)?
            .map(|r| r.get(0))
            .unwrap_or(0);
        let known = MIGRATIONS.len() as i64;
        if version > known {
            return Err(StoreError::TooNew {
                found: version,
                known,
            });
        }
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(version as usize) {
            let mut tx = client.transaction().map_err(pg)?;
            tx.batch_execute(sql).map_err(pg)?;
            tx.execute("DELETE FROM schema_version", &[]).map_err(pg)?;
            tx.execute(
                "INSERT INTO schema_version (version) VALUES ($1)",
                &[&(i as i64 + 1)],
            )
            .map_err(pg)?;
            tx.commit().map_err(pg)?;
        }
        let st = Prepared {
            arrived: client
                .prepare(
                    "INSERT INTO calls (call_id, sip_call_id, trunk, caller, dialled, channel,
                     language, queue, queues, arrived_ms, state)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8, $9, 'active')
                     ON CONFLICT (call_id) DO NOTHING",
                )
                .map_err(pg)?,
            queue: client
                .prepare(
                    "UPDATE calls SET queue = $2, language = $3, queues = queues || ',' || $2
                     WHERE call_id = $1",
                )
                .map_err(pg)?,
            offered: client
                .prepare(
                    "UPDATE calls SET offered_ms = COALESCE(offered_ms, $3),
                     agents = CASE WHEN agents = '' THEN $2 ELSE agents || ',' || $2 END
                     WHERE call_id = $1",
                )
                .map_err(pg)?,
            answered: client
                .prepare(
                    "UPDATE calls SET agent = $2, answered_ms = $3, wait_ms = $3 - arrived_ms
                     WHERE call_id = $1",
                )
                .map_err(pg)?,
            digit: client
                .prepare("UPDATE calls SET dtmf = dtmf || $2 WHERE call_id = $1")
                .map_err(pg)?,
            ended: client
                .prepare(
                    "UPDATE calls SET ended_ms = $2, outcome = $3, hangup_side = $4, sip_cause = $5,
                     state = 'ended',
                     wait_ms = COALESCE(wait_ms, $2 - arrived_ms),
                     talk_ms = CASE WHEN answered_ms IS NULL THEN NULL ELSE $2 - answered_ms END
                     WHERE call_id = $1 AND state = 'active'",
                )
                .map_err(pg)?,
        };
        Ok(PgStore { client, st })
    }
}

/// The URL without its password, for error messages.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let creds = &url[s + 3..at];
            let user = creds.split(':').next().unwrap_or("");
            format!("{}{user}:***{}", &url[..s + 3], &url[at..])
        }
        _ => url.to_string(),
    }
}

fn row_to_record(r: &postgres::Row) -> Record {
    Record {
        call_id: r.get(0),
        sip_call_id: r.get(1),
        trunk: r.get(2),
        caller: r.get(3),
        dialled: r.get(4),
        channel: r.get(5),
        language: r.get(6),
        queue: r.get(7),
        queues: split_list(r.get(8)),
        agent: r.get(9),
        agents: split_list(r.get(10)),
        arrived_ms: r.get(11),
        offered_ms: r.get(12),
        answered_ms: r.get(13),
        ended_ms: r.get(14),
        wait_ms: r.get(15),
        talk_ms: r.get(16),
        outcome: r.get(17),
        hangup_side: r.get(18),
        sip_cause: r.get(19),
        dtmf: r.get(20),
        survey_score: r.get(21),
        category: r.get(22),
        notes: r.get(23),
        video: r.get(24),
        wrap_ms: r.get(25),
    }
}

/// `?N` placeholders (SQLite's) as PostgreSQL's `$N`. The reports' SQL has no `?` in
/// string literals.
fn dollar_params(sql: &str) -> String {
    sql.replace('?', "$")
}

impl Store for PgStore {
    fn scan_callers(
        &mut self,
        from_ms: i64,
        to_ms: i64,
        f: &mut dyn FnMut(&str, i64),
    ) -> Result<(), StoreError> {
        use postgres::fallible_iterator::FallibleIterator;
        let params: [&(dyn postgres::types::ToSql + Sync); 2] = [&from_ms, &to_ms];
        let mut rows = self
            .client
            .query_raw(
                "SELECT caller, arrived_ms FROM calls WHERE arrived_ms >= $1 AND arrived_ms < $2",
                params,
            )
            .map_err(pg)?;
        while let Some(r) = rows.next().map_err(pg)? {
            f(r.try_get(0).map_err(pg)?, r.try_get(1).map_err(pg)?);
        }
        Ok(())
    }

    fn scan_calls(
        &mut self,
        from_ms: i64,
        to_ms: i64,
        f: &mut dyn FnMut(&super::CallRow<'_>),
    ) -> Result<(), StoreError> {
        use postgres::fallible_iterator::FallibleIterator;
        let sql = format!(
            "SELECT {} FROM calls WHERE arrived_ms >= $1 AND arrived_ms < $2",
            super::SCAN_COLUMNS
        );
        // Streamed: a month is not held in memory at once.
        let params: [&(dyn postgres::types::ToSql + Sync); 2] = [&from_ms, &to_ms];
        let mut rows = self.client.query_raw(&sql, params).map_err(pg)?;
        while let Some(r) = rows.next().map_err(pg)? {
            f(&super::CallRow {
                arrived_ms: r.try_get(0).map_err(pg)?,
                queue: r.try_get(1).map_err(pg)?,
                language: r.try_get(2).map_err(pg)?,
                channel: r.try_get(3).map_err(pg)?,
                agent: r.try_get(4).map_err(pg)?,
                answered: r.try_get(5).map_err(pg)?,
                wait_ms: r.try_get(6).map_err(pg)?,
                outcome: r.try_get(7).map_err(pg)?,
                talk_ms: r.try_get(8).map_err(pg)?,
                wrap_ms: r.try_get(9).map_err(pg)?,
                survey: r.try_get(10).map_err(pg)?,
                category: r.try_get(11).map_err(pg)?,
                caller: r.try_get(12).map_err(pg)?,
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
        use postgres::types::{ToSql, Type};
        let boxed: Vec<Box<dyn ToSql + Sync>> = params
            .iter()
            .map(|p| -> Box<dyn ToSql + Sync> {
                match p {
                    SqlParam::Int(i) => Box::new(*i),
                    SqlParam::Text(t) => Box::new(t.clone()),
                }
            })
            .collect();
        let refs: Vec<&(dyn ToSql + Sync)> = boxed.iter().map(|b| b.as_ref()).collect();
        let rows = self.client.query(&dollar_params(sql), &refs).map_err(pg)?;
        let mut out = Vec::with_capacity(rows.len());
        for r in &rows {
            let mut row = Vec::with_capacity(r.len());
            for (i, c) in r.columns().iter().enumerate() {
                let v = match *c.type_() {
                    Type::INT8 => r.get::<_, Option<i64>>(i).map(SqlValue::Int),
                    Type::INT4 => r.get::<_, Option<i32>>(i).map(|x| SqlValue::Int(x.into())),
                    Type::INT2 => r.get::<_, Option<i16>>(i).map(|x| SqlValue::Int(x.into())),
                    Type::FLOAT8 => r.get::<_, Option<f64>>(i).map(SqlValue::Real),
                    Type::TEXT | Type::VARCHAR => r.get::<_, Option<String>>(i).map(SqlValue::Text),
                    ref t => {
                        return Err(StoreError::Backend(format!(
                            "report column {} has type {t}; cast it to BIGINT or TEXT",
                            c.name()
                        )))
                    }
                };
                row.push(v.unwrap_or(SqlValue::Null));
            }
            out.push(row);
        }
        Ok(out)
    }

    fn apply(&mut self, events: &[RecordEvent]) -> Result<(), StoreError> {
        let st = &self.st;
        let mut tx = self.client.transaction().map_err(pg)?;
        for ev in events {
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
                } => tx.execute(
                    &st.arrived,
                    &[
                        id,
                        sip_call_id,
                        trunk,
                        caller,
                        dialled,
                        channel,
                        language,
                        queue,
                        at_ms,
                    ],
                ),
                RecordEvent::Queue {
                    id,
                    queue,
                    language,
                } => tx.execute(&st.queue, &[id, queue, language]),
                RecordEvent::Offered { id, agent, at_ms } => {
                    tx.execute(&st.offered, &[id, agent, at_ms])
                }
                RecordEvent::Answered { id, agent, at_ms } => {
                    tx.execute(&st.answered, &[id, agent, at_ms])
                }
                RecordEvent::Digit { id, digit } => {
                    tx.execute(&st.digit, &[id, &digit.to_string()])
                }
                RecordEvent::Ended {
                    id,
                    outcome,
                    side,
                    sip_cause,
                    at_ms,
                } => tx.execute(
                    &st.ended,
                    &[id, at_ms, &outcome.as_str(), side, &(*sip_cause as i64)],
                ),
                RecordEvent::Survey { id, score } => tx.execute(
                    "UPDATE calls SET survey_score = $2 WHERE call_id = $1",
                    &[id, &(*score as i64)],
                ),
                RecordEvent::Video { id, summary } => tx.execute(
                    "UPDATE calls SET video = $2 WHERE call_id = $1",
                    &[id, &serde_json::to_string(summary).unwrap_or_default()],
                ),
                RecordEvent::Notes {
                    id,
                    category,
                    notes,
                } => tx.execute(
                    "UPDATE calls SET category = COALESCE($2, category), notes = COALESCE($3, notes)
                     WHERE call_id = $1",
                    &[id, category, notes],
                ),
                RecordEvent::Message {
                    id,
                    at_ms,
                    direction,
                    sender,
                    text,
                } => tx.execute(
                    "INSERT INTO messages (call_id, at_ms, direction, sender, body)
                     VALUES ($1, $2, $3, $4, $5)",
                    &[id, at_ms, direction, sender, text],
                ),
                RecordEvent::WrapUp { id, wrap_ms } => tx.execute(
                    "UPDATE calls SET wrap_ms = $2 WHERE call_id = $1",
                    &[id, wrap_ms],
                ),
                RecordEvent::AgentState {
                    agent,
                    state,
                    reason,
                    at_ms,
                } => tx.execute(
                    "INSERT INTO agent_states (agent, state, reason, at_ms) VALUES ($1, $2, $3, $4)",
                    &[agent, state, reason, at_ms],
                ),
                RecordEvent::Audit {
                    at_ms,
                    actor,
                    action,
                    target,
                    detail,
                } => tx.execute(
                    "INSERT INTO audit (at_ms, actor, action, target, detail)
                     VALUES ($1, $2, $3, $4, $5)",
                    &[at_ms, actor, action, target, detail],
                ),
            }
            .map_err(pg)?;
        }
        tx.commit().map_err(pg)
    }

    fn mark_interrupted(&mut self, now_ms: i64) -> Result<usize, StoreError> {
        let n = self
            .client
            .execute(
                "UPDATE calls SET state = 'ended', outcome = $2, ended_ms = $1,
                 hangup_side = 'engine',
                 wait_ms = COALESCE(wait_ms, $1 - arrived_ms),
                 talk_ms = CASE WHEN answered_ms IS NULL THEN NULL ELSE $1 - answered_ms END
                 WHERE state = 'active'",
                &[&now_ms, &Outcome::Interrupted.as_str()],
            )
            .map_err(pg)?;
        Ok(n as usize)
    }

    fn query(&mut self, q: &RecordQuery) -> Result<Vec<Record>, StoreError> {
        let (after_ms, after_id) = q.after.clone().unwrap_or((i64::MIN, String::new()));
        let sql = format!(
            "SELECT {COLUMNS} FROM calls
             WHERE arrived_ms >= $1 AND arrived_ms < $2
               AND ($3::TEXT IS NULL OR queue = $3)
               AND (arrived_ms > $4 OR (arrived_ms = $4 AND call_id > $5))
               AND ($7::TEXT IS NULL OR channel = $7)
             ORDER BY arrived_ms, call_id LIMIT $6"
        );
        let rows = self
            .client
            .query(
                &sql,
                &[
                    &q.from_ms.unwrap_or(i64::MIN),
                    &q.to_ms.unwrap_or(i64::MAX),
                    &q.queue,
                    &after_ms,
                    &after_id,
                    &(q.limit as i64),
                    &q.channel,
                ],
            )
            .map_err(pg)?;
        Ok(rows.iter().map(row_to_record).collect())
    }

    fn get(&mut self, call_id: &str) -> Result<Option<Record>, StoreError> {
        let sql = format!("SELECT {COLUMNS} FROM calls WHERE call_id = $1");
        Ok(self
            .client
            .query_opt(&sql, &[&call_id])
            .map_err(pg)?
            .map(|r| row_to_record(&r)))
    }

    fn messages(&mut self, call_id: &str) -> Result<Vec<super::TextMessage>, StoreError> {
        let rows = self
            .client
            .query(
                "SELECT at_ms, direction, sender, body FROM messages WHERE call_id = $1 ORDER BY id",
                &[&call_id],
            )
            .map_err(pg)?;
        Ok(rows
            .iter()
            .map(|r| super::TextMessage {
                at_ms: r.get(0),
                direction: r.get(1),
                sender: r.get(2),
                text: r.get(3),
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs `f` with the PostgreSQL server `scripts/test.sh` starts (DASAN_TEST_PG), in a
    /// schema of its own that is dropped afterwards.
    fn in_scratch_schema(name: &str, f: impl FnOnce(&str, &str)) {
        let url = std::env::var("DASAN_TEST_PG")
            .expect("DASAN_TEST_PG: a postgresql:// URL (scripts/test.sh sets it)");
        let schema = format!("{name}_{}", std::process::id());
        let mut admin = Client::connect(&url, NoTls).expect("connect");
        admin
            .batch_execute(&format!(
                "DROP SCHEMA IF EXISTS {schema} CASCADE; CREATE SCHEMA {schema}"
            ))
            .unwrap();
        f(&url, &schema);
        admin
            .batch_execute(&format!("DROP SCHEMA {schema} CASCADE"))
            .unwrap();
    }

    #[test]
    #[ignore = "needs PostgreSQL: scripts/test.sh starts one and runs it"]
    fn postgres_passes_the_store_suite() {
        in_scratch_schema("dasan_test", |url, schema| {
            {
                let mut s = PgStore::connect(url, Some(schema)).unwrap();
                crate::records::sqlite::tests::store_suite(&mut s);
            }
            // Migrations are not re-run on an up-to-date database.
            let mut again = PgStore::connect(url, Some(schema)).unwrap();
            assert!(again.get("a").unwrap().is_some());
        });
    }

    /// The reports' known day on PostgreSQL: the same answers as on SQLite.
    #[test]
    #[ignore = "needs PostgreSQL: scripts/test.sh starts one and runs it"]
    fn postgres_reports_the_known_day() {
        in_scratch_schema("dasan_reports", |url, schema| {
            let mut s = PgStore::connect(url, Some(schema)).unwrap();
            crate::records::reports::tests::report_suite(&mut s);
        });
    }

    #[test]
    fn urls_are_redacted_in_errors() {
        assert_eq!(
            redact("postgresql://dasan:secret@db:5432/x"),
            "postgresql://dasan:***@db:5432/x"
        );
        let err = PgStore::connect("postgresql://u:pw@127.0.0.1:1/x", None)
            .err()
            .unwrap()
            .to_string();
        assert!(!err.contains("pw@"), "{err}");
    }
}
