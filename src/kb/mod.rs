//! The standard counselling knowledge base agents search while they talk.
//!
//! Storage and search: SQLite FTS5 with the `trigram` tokenizer, in `<data dir>/kb.db`.
//! Why: Korean has no spaces between a word and its particles (서울시청에서, 여권을), so a
//! word tokenizer misses most matches, and a proper Korean analyzer (mecab-ko and the
//! like) is a large native dependency. Trigrams match any substring of three or more
//! characters in any script, need nothing beyond SQLite, and rank with bm25. Korean terms
//! of one or two syllables (여권, 수도) are shorter than a trigram: those are matched with
//! a substring scan instead, which at the real centre's ~13,000 entries takes a few
//! milliseconds. The knowledge base stays in SQLite even when records go to PostgreSQL: it
//! is reference data, imported and read, never written by calls.

use rusqlite::{params, Connection, OptionalExtension};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// The sample set shipped with the engine (Seoul city services), loaded into an empty
/// knowledge base at first start.
pub const SAMPLE: &str = include_str!("../../kb/sample.json");

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Entry {
    #[serde(default)]
    pub id: Option<i64>,
    pub title: String,
    pub body: String,
    #[serde(default)]
    pub department: String,
    #[serde(default)]
    pub contact: String,
    /// Comma-separated.
    #[serde(default)]
    pub tags: String,
    /// ISO date (2026-11-25) or time; free text as the source gives it.
    #[serde(default)]
    pub updated_at: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Hit {
    #[serde(flatten)]
    pub entry: Entry,
    /// Lower is better (bm25); substring-only matches rank after full-text ones.
    pub rank: f64,
}

#[derive(Debug, thiserror::Error)]
pub enum KbError {
    #[error("knowledge base: {0}")]
    Sql(#[from] rusqlite::Error),
    #[error("{file}: {reason}")]
    Import { file: String, reason: String },
}

pub struct Kb {
    conn: Connection,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS kb (
    id INTEGER PRIMARY KEY,
    title TEXT NOT NULL UNIQUE,
    body TEXT NOT NULL,
    department TEXT NOT NULL DEFAULT '',
    contact TEXT NOT NULL DEFAULT '',
    tags TEXT NOT NULL DEFAULT '',
    updated_at TEXT NOT NULL DEFAULT ''
);
CREATE VIRTUAL TABLE IF NOT EXISTS kb_fts USING fts5(
    title, body, department, tags, content = 'kb', content_rowid = 'id', tokenize = 'trigram'
);
CREATE TRIGGER IF NOT EXISTS kb_ai AFTER INSERT ON kb BEGIN
    INSERT INTO kb_fts (rowid, title, body, department, tags)
    VALUES (new.id, new.title, new.body, new.department, new.tags);
END;
CREATE TRIGGER IF NOT EXISTS kb_ad AFTER DELETE ON kb BEGIN
    INSERT INTO kb_fts (kb_fts, rowid, title, body, department, tags)
    VALUES ('delete', old.id, old.title, old.body, old.department, old.tags);
END;
CREATE TRIGGER IF NOT EXISTS kb_au AFTER UPDATE ON kb BEGIN
    INSERT INTO kb_fts (kb_fts, rowid, title, body, department, tags)
    VALUES ('delete', old.id, old.title, old.body, old.department, old.tags);
    INSERT INTO kb_fts (rowid, title, body, department, tags)
    VALUES (new.id, new.title, new.body, new.department, new.tags);
END;
";

impl Kb {
    pub fn open(path: &Path) -> Result<Kb, KbError> {
        Self::init(Connection::open(path)?)
    }

    pub fn in_memory() -> Result<Kb, KbError> {
        Self::init(Connection::open_in_memory()?)
    }

    fn init(conn: Connection) -> Result<Kb, KbError> {
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.query_row("PRAGMA journal_mode = WAL", [], |_| Ok(()))?;
        conn.execute_batch(SCHEMA)?;
        Ok(Kb { conn })
    }

    pub fn count(&self) -> Result<usize, KbError> {
        Ok(self
            .conn
            .query_row("SELECT COUNT(*) FROM kb", [], |r| r.get::<_, i64>(0))? as usize)
    }

    /// Adds entries, replacing any with the same title; returns how many.
    pub fn upsert(&mut self, entries: &[Entry]) -> Result<usize, KbError> {
        let tx = self.conn.transaction()?;
        for e in entries {
            tx.prepare_cached(
                "INSERT INTO kb (title, body, department, contact, tags, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                 ON CONFLICT (title) DO UPDATE SET body = excluded.body,
                   department = excluded.department, contact = excluded.contact,
                   tags = excluded.tags, updated_at = excluded.updated_at",
            )?
            .execute(params![
                e.title,
                e.body,
                e.department,
                e.contact,
                e.tags,
                e.updated_at
            ])?;
        }
        tx.commit()?;
        Ok(entries.len())
    }

    pub fn get(&self, id: i64) -> Result<Option<Entry>, KbError> {
        Ok(self
            .conn
            .query_row(
                "SELECT id, title, body, department, contact, tags, updated_at FROM kb WHERE id = ?1",
                [id],
                entry_of,
            )
            .optional()?)
    }

    /// Entries matching every term of `q` (whitespace-separated), best first.
    pub fn search(&self, q: &str, limit: usize) -> Result<Vec<Hit>, KbError> {
        let terms: Vec<&str> = q.split_whitespace().take(8).collect();
        if terms.is_empty() {
            return Ok(Vec::new());
        }
        let (long, short): (Vec<&str>, Vec<&str>) =
            terms.iter().partition(|t| t.chars().count() >= 3);
        // Each long term as a quoted FTS5 string (quotes doubled), all required.
        let fts = long
            .iter()
            .map(|t| format!("\"{}\"", t.replace('"', "\"\"")))
            .collect::<Vec<_>>()
            .join(" AND ");
        let like: Vec<String> = short
            .iter()
            .map(|t| {
                let escaped = t
                    .replace('\\', "\\\\")
                    .replace('%', "\\%")
                    .replace('_', "\\_");
                format!("%{escaped}%")
            })
            .collect();
        let like_sql = (0..like.len())
            .map(|i| {
                let n = i + 3;
                format!(
                    " AND (kb.title LIKE ?{n} ESCAPE '\\' OR kb.body LIKE ?{n} ESCAPE '\\' \
                     OR kb.tags LIKE ?{n} ESCAPE '\\' OR kb.department LIKE ?{n} ESCAPE '\\')"
                )
            })
            .collect::<String>();
        let sql = if long.is_empty() {
            format!(
                "SELECT id, title, body, department, contact, tags, updated_at, 0.0 FROM kb
                 WHERE (?1 = '' OR 1) {like_sql} ORDER BY length(title), id LIMIT ?2"
            )
        } else {
            format!(
                "SELECT kb.id, kb.title, kb.body, kb.department, kb.contact, kb.tags,
                        kb.updated_at, bm25(kb_fts, 10.0, 1.0, 2.0, 5.0)
                 FROM kb_fts JOIN kb ON kb.id = kb_fts.rowid
                 WHERE kb_fts MATCH ?1 {like_sql}
                 ORDER BY bm25(kb_fts, 10.0, 1.0, 2.0, 5.0) LIMIT ?2"
            )
        };
        let mut stmt = self.conn.prepare(&sql)?;
        let mut args: Vec<&dyn rusqlite::ToSql> = vec![&fts, &limit];
        for l in &like {
            args.push(l);
        }
        let rows = stmt.query_map(args.as_slice(), |r| {
            Ok(Hit {
                entry: entry_of(r)?,
                rank: r.get(7)?,
            })
        })?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    }
}

fn entry_of(r: &rusqlite::Row<'_>) -> rusqlite::Result<Entry> {
    Ok(Entry {
        id: r.get(0)?,
        title: r.get(1)?,
        body: r.get(2)?,
        department: r.get(3)?,
        contact: r.get(4)?,
        tags: r.get(5)?,
        updated_at: r.get(6)?,
    })
}

/// Reads entries from a JSON array or a CSV file with a header row naming the fields
/// (`title` and `body` required; `department`, `contact`, `tags`, `updated_at` optional).
pub fn parse_file(name: &str, text: &str) -> Result<Vec<Entry>, KbError> {
    let err = |reason: String| KbError::Import {
        file: name.to_string(),
        reason,
    };
    let trimmed = text.trim_start_matches('\u{feff}').trim_start();
    let entries: Vec<Entry> = if trimmed.starts_with('[') {
        serde_json::from_str(trimmed).map_err(|e| err(format!("line {}: {e}", e.line())))?
    } else {
        parse_csv(trimmed).map_err(err)?
    };
    for (i, e) in entries.iter().enumerate() {
        if e.title.trim().is_empty() || e.body.trim().is_empty() {
            return Err(err(format!("entry {}: title and body are required", i + 1)));
        }
    }
    Ok(entries)
}

fn parse_csv(text: &str) -> Result<Vec<Entry>, String> {
    let mut rows = csv_rows(text)?.into_iter();
    let header = rows.next().ok_or("empty file")?;
    let col = |name: &str| header.iter().position(|h| h.trim() == name);
    let (Some(title), Some(body)) = (col("title"), col("body")) else {
        return Err("the header row must name 'title' and 'body' columns".into());
    };
    for h in &header {
        if ![
            "title",
            "body",
            "department",
            "contact",
            "tags",
            "updated_at",
            "id",
        ]
        .contains(&h.trim())
        {
            return Err(format!("unknown column '{}'", h.trim()));
        }
    }
    let (dept, contact, tags, updated) = (
        col("department"),
        col("contact"),
        col("tags"),
        col("updated_at"),
    );
    let mut out = Vec::new();
    for (n, row) in rows.enumerate() {
        if row.iter().all(|f| f.trim().is_empty()) {
            continue;
        }
        if row.len() != header.len() {
            return Err(format!(
                "row {}: {} fields, the header has {}",
                n + 2,
                row.len(),
                header.len()
            ));
        }
        let get = |c: Option<usize>| c.map(|i| row[i].clone()).unwrap_or_default();
        out.push(Entry {
            id: None,
            title: row[title].clone(),
            body: row[body].clone(),
            department: get(dept),
            contact: get(contact),
            tags: get(tags),
            updated_at: get(updated),
        });
    }
    Ok(out)
}

/// RFC 4180 records: quoted fields may hold commas, quotes ("") and line breaks.
fn csv_rows(text: &str) -> Result<Vec<Vec<String>>, String> {
    let mut rows = Vec::new();
    let mut row = Vec::new();
    let mut field = String::new();
    let mut chars = text.chars().peekable();
    let mut quoted = false;
    let mut line = 1;
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                chars.next();
                field.push('"');
            }
            (true, '"') => quoted = false,
            (true, c) => {
                if c == '\n' {
                    line += 1;
                }
                field.push(c);
            }
            (false, '"') if field.is_empty() => quoted = true,
            (false, ',') => row.push(std::mem::take(&mut field)),
            (false, '\r') => {}
            (false, '\n') => {
                line += 1;
                row.push(std::mem::take(&mut field));
                rows.push(std::mem::take(&mut row));
            }
            (false, c) => field.push(c),
        }
    }
    if quoted {
        return Err(format!("line {line}: a quoted field is not closed"));
    }
    if !field.is_empty() || !row.is_empty() {
        row.push(field);
        rows.push(row);
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Kb {
        let mut kb = Kb::in_memory().unwrap();
        kb.upsert(&parse_file("sample.json", SAMPLE).unwrap())
            .unwrap();
        kb
    }

    #[test]
    fn the_sample_set_loads_about_fifty_entries() {
        let kb = sample();
        let n = kb.count().unwrap();
        assert!((45..=70).contains(&n), "{n} entries");
    }

    #[test]
    fn korean_search_finds_substrings_long_and_short() {
        let kb = sample();
        // Three syllables and more: full text (trigram), matching inside words with particles.
        let hits = kb.search("대형폐기물", 5).unwrap();
        assert!(!hits.is_empty());
        assert!(
            hits[0].entry.title.contains("대형폐기물"),
            "{:?}",
            hits[0].entry.title
        );
        // Two syllables: substring scan.
        let hits = kb.search("여권", 5).unwrap();
        assert!(hits.iter().any(|h| h.entry.title.contains("여권")));
        // Terms combine (AND), and nothing matches nonsense.
        let both = kb.search("따릉이 대여", 5).unwrap();
        assert!(both.iter().all(|h| {
            let t = format!("{} {} {}", h.entry.title, h.entry.body, h.entry.tags);
            t.contains("따릉이") && t.contains("대여")
        }));
        assert!(!both.is_empty());
        assert!(kb.search("쥬라기공원티라노", 5).unwrap().is_empty());
        // Query syntax is data, not FTS5 operators or LIKE wildcards.
        assert!(kb.search("\"*) OR (", 5).is_ok());
        assert!(kb.search("%%", 5).unwrap().is_empty());
    }

    #[test]
    fn csv_import_with_quotes_and_bad_files_name_the_problem() {
        let csv = "title,body,department,tags\n\"주차, 견인\",\"견인된 차량은 \"\"견인차량 보관소\"\"에서\n찾습니다.\",교통행정과,\"주차,견인\"\n";
        let entries = parse_file("k.csv", csv).unwrap();
        assert_eq!(entries.len(), 1);
        assert_eq!(entries[0].title, "주차, 견인");
        assert!(entries[0]
            .body
            .contains("\"견인차량 보관소\"에서\n찾습니다"));
        let mut kb = Kb::in_memory().unwrap();
        kb.upsert(&entries).unwrap();
        kb.upsert(&entries).unwrap();
        assert_eq!(kb.count().unwrap(), 1, "same title replaces");
        assert!(kb.search("보관소", 3).unwrap().len() == 1);
        for (bad, why) in [
            ("title,bodyy\nx,y\n", "title' and 'body'"),
            ("title,body\n\"x,y\n", "not closed"),
            ("title,body\nx\n", "row 2"),
            ("[{\"title\": \"x\"}]", "line 1"),
            ("title,body\n ,y\n", "required"),
        ] {
            let e = parse_file("bad.csv", bad).unwrap_err().to_string();
            assert!(
                e.starts_with("bad.csv: ") && e.contains(why),
                "{bad:?}: {e}"
            );
        }
    }
}
