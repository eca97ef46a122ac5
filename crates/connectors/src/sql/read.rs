//! Reading a stream from a configured query, table or view.
//!
//! Rows become records the way CSV rows do: column names are field paths (`price.amount` builds
//! `{"price": {"amount": …}}`, after the connection's `columns` renames), NULL and empty text are left
//! out, values are text (numbers exactly as the server holds them) except booleans and JSON columns; the
//! flow's mapping does the rest.
//!
//! With a `cursor` column (an updated-at time, or a row version that grows with every change) reads are
//! incremental: `WHERE cursor >= checkpoint − overlap OR cursor IS NULL ORDER BY cursor`. The overlap
//! re-reads rows written by transactions that committed late or by clocks a little behind; the content
//! hash drops those that did not change. The checkpoint is the greatest cursor value read, never an id.

use super::db::{Db, DecodedRow, describe, is_transient};
use super::ident::{Dialect, TableName};
use super::value::SqlValue;
use chrono::{DateTime, Duration as ChronoDuration, NaiveDate, Utc};
use chrono_tz::Tz;
use ferry_engine::{ConnectorError, ReadItem, SourceRecord};
use ferry_model::Stream;
use futures::StreamExt;
use futures::stream::BoxStream;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::{HashMap, HashSet};
use std::str::FromStr;

/// Rows between two checkpoints of a long read (a killed run resumes from the last one).
const CHECKPOINT_EVERY: usize = 5_000;

/// Default overlap of a time cursor, in seconds: longer than most transactions take to commit and most
/// clocks drift, short enough that a run re-reads little.
pub(crate) const DEFAULT_OVERLAP_SECONDS: i64 = 300;

#[derive(Clone, Debug)]
pub(crate) enum Source {
    /// Any SELECT; wrapped as a derived table, so it may join, filter and alias freely.
    Query(String),
    Table(TableName),
}

#[derive(Clone, Debug)]
pub(crate) struct ReadSpec {
    pub(crate) source: Source,
    pub(crate) cursor: Option<String>,
    /// Seconds for a time cursor, versions for a number cursor, whole days (rounded up) for a date cursor.
    pub(crate) overlap: Option<i64>,
    /// Column → field path (like the csv connector's `columns`).
    pub(crate) renames: HashMap<String, String>,
}

impl ReadSpec {
    /// Names the source in positions and messages: `web_products row 17`, `products query row 17`.
    pub(crate) fn label(&self, stream: Stream) -> String {
        match &self.source {
            Source::Table(t) => t.to_string(),
            Source::Query(_) => format!("{stream} query"),
        }
    }

    pub(crate) fn source_sql(&self, dialect: Dialect) -> String {
        match &self.source {
            Source::Table(t) => t.quoted(dialect),
            Source::Query(q) => format!("({q}) AS ferry_source"),
        }
    }
}

/// What kind of value the cursor column holds, from the server's type name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum CursorKind {
    /// An instant (timestamptz, MySQL TIMESTAMP).
    Instant,
    /// A wall-clock time without zone (timestamp, DATETIME), in the connection's time zone.
    Local,
    Date,
    /// A whole number (a row version, a change counter).
    Integer,
    Decimal,
}

impl CursorKind {
    fn of(type_name: &str, dialect: Dialect) -> Option<CursorKind> {
        Some(match type_name {
            // MySQL's TIMESTAMP is an instant (stored in UTC); PostgreSQL's has no zone.
            "TIMESTAMPTZ" => CursorKind::Instant,
            "TIMESTAMP" if dialect == Dialect::MySql => CursorKind::Instant,
            "TIMESTAMP" | "DATETIME" => CursorKind::Local,
            "DATE" => CursorKind::Date,
            "INT2" | "INT4" | "INT8" | "TINYINT" | "SMALLINT" | "INT" | "MEDIUMINT" | "BIGINT" | "TINYINT UNSIGNED" | "SMALLINT UNSIGNED"
            | "INT UNSIGNED" | "MEDIUMINT UNSIGNED" | "BIGINT UNSIGNED" => CursorKind::Integer,
            "NUMERIC" | "DECIMAL" => CursorKind::Decimal,
            _ => return None,
        })
    }

    fn default_overlap(self) -> i64 {
        match self {
            CursorKind::Instant | CursorKind::Local | CursorKind::Date => DEFAULT_OVERLAP_SECONDS,
            CursorKind::Integer | CursorKind::Decimal => 0,
        }
    }
}

/// The stored checkpoint: which column, its kind, and the greatest value read (as read: RFC 3339 for
/// times, the number's text).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) struct Checkpoint {
    pub(crate) cursor: String,
    pub(crate) kind: CursorKind,
    pub(crate) value: String,
}

impl Checkpoint {
    /// The lower bound to read from: the value less the overlap, typed for the column.
    fn lower_bound(&self, overlap: Option<i64>, tz: Tz) -> Result<SqlValue, String> {
        let overlap = overlap.unwrap_or(self.kind.default_overlap()).max(0);
        let bad = || format!("checkpoint value {:?} is not a {:?} cursor value", self.value, self.kind);
        Ok(match self.kind {
            CursorKind::Instant | CursorKind::Local => {
                let t = DateTime::parse_from_rfc3339(&self.value).map_err(|_| bad())?.with_timezone(&Utc) - ChronoDuration::seconds(overlap);
                match self.kind {
                    CursorKind::Instant => SqlValue::Instant(t),
                    _ => SqlValue::LocalDateTime(t.with_timezone(&tz).naive_local()),
                }
            }
            CursorKind::Date => {
                let d = NaiveDate::parse_from_str(&self.value, "%Y-%m-%d").map_err(|_| bad())?;
                let days = (overlap + 86_399) / 86_400;
                SqlValue::Date(d - ChronoDuration::days(days))
            }
            CursorKind::Integer => SqlValue::Int(i64::from_str(&self.value).map_err(|_| bad())?.saturating_sub(overlap)),
            CursorKind::Decimal => SqlValue::Decimal(Decimal::from_str(&self.value).map_err(|_| bad())? - Decimal::from(overlap)),
        })
    }

    /// Whether `value` (same kind) is greater than the stored one.
    fn is_before(&self, value: &str) -> bool {
        match self.kind {
            CursorKind::Instant | CursorKind::Local => match (DateTime::parse_from_rfc3339(&self.value), DateTime::parse_from_rfc3339(value)) {
                (Ok(a), Ok(b)) => a < b,
                _ => false,
            },
            CursorKind::Date => self.value.as_str() < value,
            CursorKind::Integer | CursorKind::Decimal => match (Decimal::from_str(&self.value), Decimal::from_str(value)) {
                (Ok(a), Ok(b)) => a < b,
                _ => false,
            },
        }
    }
}

/// The SQL of one read: every column of the source, from the checkpoint when there is one.
pub(crate) fn read_sql(spec: &ReadSpec, dialect: Dialect, from: Option<&Checkpoint>) -> String {
    let mut sql = format!("SELECT * FROM {}", spec.source_sql(dialect));
    if let Some(cursor) = &spec.cursor {
        let c = dialect.quote(cursor);
        if from.is_some() {
            // Rows without a cursor value are read every time: skipping them could lose them for good.
            sql.push_str(&format!(" WHERE ({c} >= {} OR {c} IS NULL)", dialect.placeholder(1)));
        }
        sql.push_str(&format!(" ORDER BY {c}"));
    }
    sql
}

/// How row columns become record fields: one per column, computed from the first row.
struct Layout {
    paths: Vec<Vec<String>>,
    cursor_index: Option<usize>,
}

impl Layout {
    fn new(columns: &[&str], renames: &HashMap<String, String>, cursor: Option<&str>) -> Result<Layout, String> {
        let mut paths: Vec<Vec<String>> = Vec::with_capacity(columns.len());
        let mut seen: Vec<(String, &str)> = Vec::new();
        for column in columns {
            let path_text = renames.get(*column).map(String::as_str).unwrap_or(column);
            let path: Vec<String> = path_text.split('.').map(|s| s.trim().to_owned()).collect();
            if path.iter().any(String::is_empty) {
                return Err(format!("column {column:?} maps to {path_text:?}, which has an empty part"));
            }
            let joined = path.join(".");
            for (other, other_column) in &seen {
                let clash = *other == joined
                    || other.strip_prefix(joined.as_str()).is_some_and(|r| r.starts_with('.'))
                    || joined.strip_prefix(other.as_str()).is_some_and(|r| r.starts_with('.'));
                if clash {
                    return Err(format!("columns {other_column:?} ({other}) and {column:?} ({joined}) cannot both be fields"));
                }
            }
            seen.push((joined, column));
            paths.push(path);
        }
        let cursor_index = match cursor {
            None => None,
            Some(c) => Some(columns.iter().position(|x| *x == c).ok_or_else(|| {
                format!("the source has no cursor column {c:?}; its columns are {}", columns.join(", "))
            })?),
        };
        Ok(Layout { paths, cursor_index })
    }
}

fn insert_path(object: &mut Map<String, Value>, path: &[String], value: Value) {
    let (last, parents) = path.split_last().expect("paths have at least one part");
    let mut current = object;
    for part in parents {
        let slot = current.entry(part.clone()).or_insert_with(|| Value::Object(Map::new()));
        if !slot.is_object() {
            *slot = Value::Object(Map::new());
        }
        current = slot.as_object_mut().expect("made an object above");
    }
    current.insert(last.clone(), value);
}

/// Everything a read needs, owned (the stream outlives the call that starts it).
pub(crate) struct ReadJob {
    pub(crate) db: Db,
    pub(crate) endpoint: String,
    pub(crate) stream: Stream,
    pub(crate) spec: ReadSpec,
    pub(crate) tz: Tz,
    pub(crate) checkpoint: Option<Value>,
    pub(crate) only: Option<HashSet<String>>,
}

type Item = Result<ReadItem, ConnectorError>;

/// State carried from row to row.
struct Reader {
    job: ReadJob,
    label: String,
    layout: Option<Layout>,
    row: u64,
    kind: Option<CursorKind>,
    greatest: Option<Checkpoint>,
    since_checkpoint: usize,
    dialect: Dialect,
}

pub(crate) fn read(job: ReadJob) -> BoxStream<'static, Item> {
    let dialect = job.db.dialect();
    let endpoint = job.endpoint.clone();
    let label = job.spec.label(job.stream);
    let mut pending = std::collections::VecDeque::new();
    let mut from: Option<Checkpoint> = None;
    if let (Some(cursor), Some(stored)) = (&job.spec.cursor, &job.checkpoint) {
        let warning = match serde_json::from_value::<Checkpoint>(stored.clone()) {
            Ok(cp) if &cp.cursor == cursor => {
                from = Some(cp);
                None
            }
            Ok(cp) => Some(format!(
                "{label}: the stored checkpoint is for cursor column {:?}, the connection now names {cursor:?}: reading everything once",
                cp.cursor
            )),
            Err(_) => Some(format!("{label}: the stored checkpoint {stored} is not a cursor position: reading everything once")),
        };
        pending.extend(warning.map(|w| Ok(ReadItem::Warning(w))));
    }
    let args = match &from {
        Some(cp) => match cp.lower_bound(job.spec.overlap, job.tz) {
            Ok(bound) => vec![bound],
            Err(e) => return futures::stream::once(async move { Err(ConnectorError::permanent(endpoint, e)) }).boxed(),
        },
        None => Vec::new(),
    };
    let sql = read_sql(&job.spec, dialect, from.as_ref());
    let rows = job.db.rows(sql, args, job.tz);
    let reader = Reader { kind: from.as_ref().map(|c| c.kind), greatest: from, job, label, layout: None, row: 0, since_checkpoint: 0, dialect };
    let state = ReadState { rows, reader, pending, done: false };
    futures::stream::unfold(state, |mut st| async move {
        loop {
            if let Some(item) = st.pending.pop_front() {
                return Some((item, st));
            }
            if st.done {
                return None;
            }
            match st.rows.next().await {
                Some(Ok(row)) => {
                    let items = st.reader.row(row);
                    // An error ends the read once it is reported; the engine keeps the last checkpoint.
                    st.done = items.iter().any(Result::is_err);
                    st.pending.extend(items);
                }
                Some(Err(e)) => {
                    let message = format!("reading {}: {}", st.reader.label, describe(&e));
                    let endpoint = st.reader.job.endpoint.clone();
                    st.pending.push_back(Err(match is_transient(&e) {
                        true => ConnectorError::transient(endpoint, message),
                        false => ConnectorError::permanent(endpoint, message),
                    }));
                    st.done = true;
                }
                None => {
                    // After the last row: everything up to the greatest cursor value was read (a targeted
                    // read passed over the other rows: it moves no checkpoint).
                    if let Some(cp) = st.reader.greatest.as_ref().filter(|_| st.reader.job.only.is_none()) {
                        st.pending.push_back(Ok(ReadItem::Checkpoint(serde_json::to_value(cp).expect("checkpoints serialise"))));
                    }
                    st.done = true;
                }
            }
        }
    })
    .boxed()
}

struct ReadState {
    rows: BoxStream<'static, Result<DecodedRow, sqlx::Error>>,
    reader: Reader,
    pending: std::collections::VecDeque<Item>,
    done: bool,
}

impl Reader {
    fn row(&mut self, row: DecodedRow) -> Vec<Item> {
        self.row += 1;
        let position = format!("{} row {}", self.label, self.row);
        if self.layout.is_none() {
            let names: Vec<&str> = row.columns.iter().map(|(n, _)| n.as_str()).collect();
            match Layout::new(&names, &self.job.spec.renames, self.job.spec.cursor.as_deref()) {
                Ok(layout) => {
                    if let Some(i) = layout.cursor_index {
                        let type_name = &row.columns[i].1;
                        match CursorKind::of(type_name, self.dialect) {
                            Some(kind) => {
                                if self.kind.is_some_and(|k| k != kind) {
                                    // The column changed type since the checkpoint: start over.
                                    self.greatest = None;
                                }
                                self.kind = Some(kind);
                            }
                            None => {
                                return vec![Err(ConnectorError::config(
                                    self.job.endpoint.clone(),
                                    format!(
                                        "{}: cursor column {:?} has type {type_name}; a cursor is a date-time, a date or a number that grows with every change",
                                        self.label,
                                        row.columns[i].0
                                    ),
                                ))];
                            }
                        }
                    }
                    self.layout = Some(layout);
                }
                Err(e) => return vec![Err(ConnectorError::config(self.job.endpoint.clone(), format!("{}: {e}", self.label)))],
            }
        }
        let layout = self.layout.as_ref().expect("built above");
        let mut object = Map::new();
        let mut bad: Option<(String, String)> = None;
        let mut raw = Map::new();
        let mut cursor_value: Option<String> = None;
        for (i, ((name, _), value)) in row.columns.iter().zip(row.values).enumerate() {
            match value {
                Ok(None) => {}
                Ok(Some(v)) => {
                    let v = match v {
                        Value::String(s) => {
                            let t = s.trim();
                            if t.is_empty() {
                                continue;
                            }
                            Value::String(if t.len() == s.len() { s } else { t.to_owned() })
                        }
                        other => other,
                    };
                    if Some(i) == layout.cursor_index {
                        cursor_value = v.as_str().map(str::to_owned);
                    }
                    raw.insert(name.clone(), v.clone());
                    insert_path(&mut object, &layout.paths[i], v);
                }
                Err(message) => {
                    raw.insert(name.clone(), Value::Null);
                    if bad.is_none() {
                        bad = Some((name.clone(), message));
                    }
                }
            }
        }
        let data = Value::Object(object);
        let key = crate::rawkey::record_key(self.job.stream, &data);
        let mut items = Vec::with_capacity(2);
        if let Some((column, message)) = bad {
            items.push(Ok(ReadItem::Invalid {
                position: position.clone(),
                key,
                raw: Value::Object(raw),
                field: layout.paths[row.columns.iter().position(|(n, _)| *n == column).unwrap_or(0)].join("."),
                message: format!("{position}: column {column:?} {message}"),
            }));
        } else if self.job.only.as_ref().is_none_or(|only| key.as_ref().is_none_or(|k| only.contains(k))) {
            items.push(Ok(ReadItem::Record(SourceRecord { position, data })));
        }
        if let (Some(value), Some(kind), Some(cursor)) = (cursor_value, self.kind, self.job.spec.cursor.as_ref())
            && self.greatest.as_ref().is_none_or(|g| g.is_before(&value))
        {
            self.greatest = Some(Checkpoint { cursor: cursor.clone(), kind, value });
        }
        self.since_checkpoint += 1;
        if self.since_checkpoint >= CHECKPOINT_EVERY
            && self.job.only.is_none()
            && let Some(cp) = &self.greatest
        {
            self.since_checkpoint = 0;
            items.push(Ok(ReadItem::Checkpoint(serde_json::to_value(cp).expect("checkpoints serialise"))));
        }
        items
    }
}

