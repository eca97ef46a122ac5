//! The two servers behind one small surface: a pool, a transaction (`Session`) that runs statements with
//! bound values, and a stream of rows decoded to JSON. Everything above this file is server-neutral.

use super::ident::Dialect;
use super::value::{Kind, SqlValue, local_to_instant};
use async_trait::async_trait;
use chrono::{DateTime, NaiveDate, NaiveDateTime, NaiveTime, Utc};
use chrono_tz::Tz;
use futures::StreamExt;
use futures::stream::BoxStream;
use rust_decimal::Decimal;
use serde_json::Value;
use sqlx::mysql::{MySql, MySqlArguments, MySqlConnectOptions, MySqlPool, MySqlPoolOptions, MySqlRow};
use sqlx::postgres::{PgArguments, PgConnectOptions, PgPool, PgPoolOptions, PgRow, Postgres};
use sqlx::{Arguments, Column, ConnectOptions, Row, Transaction, TypeInfo};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

pub(crate) type BoxError = sqlx::error::BoxDynError;

/// A pool of connections to one database.
#[derive(Clone, Debug)]
pub(crate) enum Db {
    Postgres(PgPool),
    MySql(MySqlPool),
}

/// How long to wait for a connection before calling the server unreachable.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(15);

/// Parsed connection options; the pool is made on first use (it needs the async runtime).
#[derive(Clone, Debug)]
pub(crate) enum DbOptions {
    Postgres(PgConnectOptions),
    MySql(MySqlConnectOptions),
}

impl DbOptions {
    /// `postgres://…` or `mysql://…` / `mariadb://…`.
    pub(crate) fn parse(url: &str) -> Result<DbOptions, String> {
        let scheme = url.split_once("://").map(|(s, _)| s.to_ascii_lowercase()).unwrap_or_default();
        match scheme.as_str() {
            "postgres" | "postgresql" => Ok(DbOptions::Postgres(PgConnectOptions::from_str(url).map_err(|e| e.to_string())?.disable_statement_logging())),
            "mysql" | "mariadb" => {
                let url = if scheme == "mariadb" { format!("mysql{}", &url[7..]) } else { url.to_owned() };
                // UTC sessions: TIMESTAMP columns read and write instants unchanged.
                let options = MySqlConnectOptions::from_str(&url).map_err(|e| e.to_string())?.timezone(Some("+00:00".into())).disable_statement_logging();
                Ok(DbOptions::MySql(options))
            }
            _ => Err("must start with postgres://, mysql:// or mariadb://".into()),
        }
    }

    pub(crate) fn dialect(&self) -> Dialect {
        match self {
            DbOptions::Postgres(_) => Dialect::Postgres,
            DbOptions::MySql(_) => Dialect::MySql,
        }
    }

    /// A lazy pool: nothing is opened until a statement runs.
    pub(crate) fn pool(&self, max_connections: u32) -> Db {
        match self {
            DbOptions::Postgres(o) => Db::Postgres(PgPoolOptions::new().max_connections(max_connections).acquire_timeout(ACQUIRE_TIMEOUT).connect_lazy_with(o.clone())),
            DbOptions::MySql(o) => Db::MySql(MySqlPoolOptions::new().max_connections(max_connections).acquire_timeout(ACQUIRE_TIMEOUT).connect_lazy_with(o.clone())),
        }
    }
}

impl Db {
    pub(crate) fn dialect(&self) -> Dialect {
        match self {
            Db::Postgres(_) => Dialect::Postgres,
            Db::MySql(_) => Dialect::MySql,
        }
    }

    pub(crate) async fn begin(&self) -> Result<Box<dyn Session>, sqlx::Error> {
        Ok(match self {
            Db::Postgres(p) => Box::new(PgSession(p.begin().await?)),
            Db::MySql(p) => Box::new(MySession(p.begin().await?)),
        })
    }

    /// Runs a query outside a transaction; every column read as text (cast it in the SQL).
    pub(crate) async fn fetch_text(&self, sql: &str, args: Vec<SqlValue>) -> Result<Vec<Vec<Option<String>>>, sqlx::Error> {
        match self {
            Db::Postgres(p) => text_rows(sqlx::query_with(sql, pg_args(args)?).fetch_all(p).await?),
            Db::MySql(p) => text_rows(sqlx::query_with(sql, my_args(args)?).fetch_all(p).await?),
        }
    }

    /// Streams the rows of `sql`: per row, each column's name and value (`None` for NULL), or the column
    /// that could not be decoded and why. The query runs on a task of its own; dropping the stream stops it.
    pub(crate) fn rows(&self, sql: String, args: Vec<SqlValue>, tz: Tz) -> BoxStream<'static, Result<DecodedRow, sqlx::Error>> {
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<Vec<DecodedRow>, sqlx::Error>>(8);
        let db = self.clone();
        tokio::spawn(async move {
            let mut chunk = Vec::with_capacity(ROW_CHUNK);
            let mut columns = None;
            macro_rules! pump {
                ($pool:expr, $args:expr, $decode:expr) => {{
                    let args = match $args {
                        Ok(a) => a,
                        Err(e) => {
                            let _ = tx.send(Err(e)).await;
                            return;
                        }
                    };
                    let mut rows = sqlx::query_with(&sql, args).fetch($pool);
                    while let Some(row) = rows.next().await {
                        match row {
                            Ok(row) => chunk.push(decode_row(&row, &mut columns, |r, i| $decode(r, i, tz))),
                            Err(e) => {
                                let _ = tx.send(Err(e)).await;
                                return;
                            }
                        }
                        if chunk.len() >= ROW_CHUNK && tx.send(Ok(std::mem::take(&mut chunk))).await.is_err() {
                            return;
                        }
                    }
                }};
            }
            match &db {
                Db::Postgres(p) => pump!(p, pg_args(args), pg_decode),
                Db::MySql(p) => pump!(p, my_args(args), my_decode),
            }
            if !chunk.is_empty() {
                let _ = tx.send(Ok(chunk)).await;
            }
        });
        futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|item| (item, rx)) })
            .flat_map(|chunk| match chunk {
                Ok(rows) => futures::stream::iter(rows.into_iter().map(Ok).collect::<Vec<_>>()),
                Err(e) => futures::stream::iter(vec![Err(e)]),
            })
            .boxed()
    }
}

/// Rows handed from the query task to the reader at a time.
const ROW_CHUNK: usize = 256;

/// One row: each column's value (`None` for NULL) or why it could not be decoded, in the order of
/// `columns` (name, server type name), which all rows of a query share.
pub(crate) struct DecodedRow {
    pub(crate) columns: Arc<Vec<(String, String)>>,
    pub(crate) values: Vec<Result<Option<Value>, String>>,
}

fn decode_row<R: Row>(row: &R, columns: &mut Option<Arc<Vec<(String, String)>>>, decode: impl Fn(&R, usize) -> Result<Option<Value>, String>) -> DecodedRow {
    let columns = columns
        .get_or_insert_with(|| Arc::new(row.columns().iter().map(|c| (c.name().to_owned(), c.type_info().name().to_owned())).collect()))
        .clone();
    DecodedRow { values: (0..columns.len()).map(|i| decode(row, i)).collect(), columns }
}

fn text_rows<R: Row>(rows: Vec<R>) -> Result<Vec<Vec<Option<String>>>, sqlx::Error>
where
    for<'r> Option<String>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    usize: sqlx::ColumnIndex<R>,
{
    rows.iter().map(|r| (0..r.len()).map(|i| r.try_get::<Option<String>, _>(i)).collect()).collect()
}

/// A transaction on one connection. Dropped without `commit`, it is rolled back.
#[async_trait]
pub(crate) trait Session: Send {
    /// Runs one statement; the number of rows it affected.
    async fn execute(&mut self, sql: &str, args: Vec<SqlValue>) -> Result<u64, sqlx::Error>;
    /// Runs a query; every column read as text (cast it in the SQL).
    async fn fetch_text(&mut self, sql: &str, args: Vec<SqlValue>) -> Result<Vec<Vec<Option<String>>>, sqlx::Error>;
    /// A statement without parameters (SAVEPOINT, ROLLBACK TO SAVEPOINT, RELEASE SAVEPOINT).
    async fn plain(&mut self, sql: &str) -> Result<(), sqlx::Error>;
    async fn commit(self: Box<Self>) -> Result<(), sqlx::Error>;
}

struct PgSession(Transaction<'static, Postgres>);
struct MySession(Transaction<'static, MySql>);

#[async_trait]
impl Session for PgSession {
    async fn execute(&mut self, sql: &str, args: Vec<SqlValue>) -> Result<u64, sqlx::Error> {
        Ok(sqlx::query_with(sql, pg_args(args)?).execute(&mut *self.0).await?.rows_affected())
    }
    async fn fetch_text(&mut self, sql: &str, args: Vec<SqlValue>) -> Result<Vec<Vec<Option<String>>>, sqlx::Error> {
        text_rows(sqlx::query_with(sql, pg_args(args)?).fetch_all(&mut *self.0).await?)
    }
    async fn plain(&mut self, sql: &str) -> Result<(), sqlx::Error> {
        // A statement without arguments goes as plain text (no prepared statement for SAVEPOINT).
        let conn: &mut _ = &mut *self.0;
        sqlx::Executor::execute(conn, sql).await.map(|_| ())
    }
    async fn commit(self: Box<Self>) -> Result<(), sqlx::Error> {
        self.0.commit().await
    }
}

#[async_trait]
impl Session for MySession {
    async fn execute(&mut self, sql: &str, args: Vec<SqlValue>) -> Result<u64, sqlx::Error> {
        Ok(sqlx::query_with(sql, my_args(args)?).execute(&mut *self.0).await?.rows_affected())
    }
    async fn fetch_text(&mut self, sql: &str, args: Vec<SqlValue>) -> Result<Vec<Vec<Option<String>>>, sqlx::Error> {
        text_rows(sqlx::query_with(sql, my_args(args)?).fetch_all(&mut *self.0).await?)
    }
    async fn plain(&mut self, sql: &str) -> Result<(), sqlx::Error> {
        // A statement without arguments goes as plain text (no prepared statement for SAVEPOINT).
        let conn: &mut _ = &mut *self.0;
        sqlx::Executor::execute(conn, sql).await.map(|_| ())
    }
    async fn commit(self: Box<Self>) -> Result<(), sqlx::Error> {
        self.0.commit().await
    }
}

fn encode_err(e: BoxError) -> sqlx::Error {
    sqlx::Error::Encode(e)
}

fn pg_args(values: Vec<SqlValue>) -> Result<PgArguments, sqlx::Error> {
    let mut a = PgArguments::default();
    for v in values {
        match v {
            SqlValue::Text(s) => a.add(s),
            SqlValue::Int(n) => a.add(n),
            SqlValue::Decimal(d) => a.add(d),
            SqlValue::Float(f) => a.add(f),
            SqlValue::Bool(b) => a.add(b),
            SqlValue::Instant(t) => a.add(t),
            SqlValue::LocalDateTime(t) => a.add(t),
            SqlValue::Date(d) => a.add(d),
            SqlValue::Json(j) => a.add(sqlx::types::Json(j)),
            SqlValue::Null(kind) => match kind {
                Kind::Text { .. } => a.add(None::<String>),
                Kind::Int { .. } => a.add(None::<i64>),
                Kind::Decimal { .. } => a.add(None::<Decimal>),
                Kind::Float => a.add(None::<f64>),
                Kind::Bool => a.add(None::<bool>),
                Kind::Instant => a.add(None::<DateTime<Utc>>),
                Kind::LocalDateTime => a.add(None::<NaiveDateTime>),
                Kind::Date => a.add(None::<NaiveDate>),
                Kind::Json => a.add(None::<sqlx::types::Json<Value>>),
            },
        }
        .map_err(encode_err)?;
    }
    Ok(a)
}

fn my_args(values: Vec<SqlValue>) -> Result<MySqlArguments, sqlx::Error> {
    let mut a = MySqlArguments::default();
    for v in values {
        match v {
            SqlValue::Text(s) => a.add(s),
            SqlValue::Int(n) => a.add(n),
            SqlValue::Decimal(d) => a.add(d),
            SqlValue::Float(f) => a.add(f),
            SqlValue::Bool(b) => a.add(b),
            SqlValue::Instant(t) => a.add(t),
            SqlValue::LocalDateTime(t) => a.add(t),
            SqlValue::Date(d) => a.add(d),
            SqlValue::Json(j) => a.add(sqlx::types::Json(j)),
            // MySQL parameters carry no column type: any typed NULL will do.
            SqlValue::Null(_) => a.add(None::<String>),
        }
        .map_err(encode_err)?;
    }
    Ok(a)
}

/// Values read from a source are text, as in a CSV export (so item codes stored as numbers stay codes and
/// the flow's mapping types them), except booleans and JSON columns.
fn text(s: impl ToString) -> Option<Value> {
    Some(Value::String(s.to_string()))
}

fn cannot(type_name: &str) -> String {
    format!("has type {type_name}, which Ferry does not read: cast it in the query (e.g. CAST(x AS TEXT))")
}

fn get<'r, T, R>(row: &'r R, i: usize) -> Result<Option<T>, String>
where
    R: Row,
    T: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    usize: sqlx::ColumnIndex<R>,
{
    row.try_get::<Option<T>, _>(i).map_err(|e| match e {
        sqlx::Error::ColumnDecode { source, .. } => format!("cannot be read: {source}"),
        other => other.to_string(),
    })
}

fn pg_decode(row: &PgRow, i: usize, tz: Tz) -> Result<Option<Value>, String> {
    let type_name = row.column(i).type_info().name().to_owned();
    Ok(match type_name.as_str() {
        "BOOL" => get::<bool, _>(row, i)?.map(Value::Bool),
        "INT2" => get::<i16, _>(row, i)?.and_then(text),
        "INT4" => get::<i32, _>(row, i)?.and_then(text),
        "INT8" => get::<i64, _>(row, i)?.and_then(text),
        "FLOAT4" => get::<f32, _>(row, i)?.and_then(text),
        "FLOAT8" => get::<f64, _>(row, i)?.and_then(text),
        "NUMERIC" => get::<Decimal, _>(row, i)?.and_then(text),
        "TEXT" | "VARCHAR" | "CHAR" | "NAME" | "CITEXT" => get::<String, _>(row, i)?.map(Value::String),
        "TIMESTAMPTZ" => get::<DateTime<Utc>, _>(row, i)?.and_then(|t| text(t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true))),
        "TIMESTAMP" => get::<NaiveDateTime, _>(row, i)?.and_then(|t| text(local_to_instant(t, tz).to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true))),
        "DATE" => get::<NaiveDate, _>(row, i)?.and_then(text),
        "TIME" => get::<NaiveTime, _>(row, i)?.and_then(text),
        "JSON" | "JSONB" => get::<sqlx::types::Json<Value>, _>(row, i)?.map(|j| j.0),
        other => {
            // Enums arrive as their label.
            if matches!(row.column(i).type_info().kind(), sqlx::postgres::PgTypeKind::Enum(_)) {
                return row.try_get_unchecked::<Option<String>, _>(i).map(|v| v.map(Value::String)).map_err(|e| e.to_string());
            }
            return Err(cannot(other));
        }
    })
}

fn my_decode(row: &MySqlRow, i: usize, tz: Tz) -> Result<Option<Value>, String> {
    let type_name = row.column(i).type_info().name().to_owned();
    Ok(match type_name.as_str() {
        "BOOLEAN" => get::<bool, _>(row, i)?.map(Value::Bool),
        "TINYINT" | "SMALLINT" | "INT" | "MEDIUMINT" | "BIGINT" | "YEAR" => get::<i64, _>(row, i)?.and_then(text),
        "TINYINT UNSIGNED" | "SMALLINT UNSIGNED" | "INT UNSIGNED" | "MEDIUMINT UNSIGNED" | "BIGINT UNSIGNED" => get::<u64, _>(row, i)?.and_then(text),
        "FLOAT" => get::<f32, _>(row, i)?.and_then(text),
        "DOUBLE" => get::<f64, _>(row, i)?.and_then(text),
        "DECIMAL" => get::<Decimal, _>(row, i)?.and_then(text),
        "VARCHAR" | "CHAR" | "TEXT" | "TINYTEXT" | "MEDIUMTEXT" | "LONGTEXT" | "ENUM" | "SET" => get::<String, _>(row, i)?.map(Value::String),
        // Text columns with a binary collation arrive flagged binary: text when they hold UTF-8.
        "VARBINARY" | "BINARY" | "BLOB" | "TINYBLOB" | "MEDIUMBLOB" | "LONGBLOB" => match get::<Vec<u8>, _>(row, i)? {
            None => None,
            Some(bytes) => Some(Value::String(String::from_utf8(bytes).map_err(|e| format!("holds bytes that are not UTF-8 text (at byte {})", e.utf8_error().valid_up_to()))?)),
        },
        "TIMESTAMP" => get::<DateTime<Utc>, _>(row, i)?.and_then(|t| text(t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true))),
        "DATETIME" => get::<NaiveDateTime, _>(row, i)?.and_then(|t| text(local_to_instant(t, tz).to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true))),
        "DATE" => get::<NaiveDate, _>(row, i)?.and_then(text),
        "TIME" => get::<NaiveTime, _>(row, i)?.and_then(text),
        "JSON" => get::<sqlx::types::Json<Value>, _>(row, i)?.map(|j| j.0),
        "NULL" => None,
        other => return Err(cannot(other)),
    })
}

/// Whether a failed statement may succeed when tried again (connection lost, server shutting down,
/// deadlock, serialization failure, lock wait timeout, too many connections) — as opposed to a refusal of
/// the data (constraint, type, trigger) that fails only its record.
pub(crate) fn is_transient(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::WorkerCrashed | sqlx::Error::Protocol(_) => true,
        sqlx::Error::Tls(_) => true,
        sqlx::Error::Database(db) => {
            let state = db.code().map(|c| c.into_owned()).unwrap_or_default();
            // SQLSTATE classes 08 (connection), 57P (PostgreSQL operator intervention: shutdown,
            // terminate), 70100 (MySQL query or connection killed), 40001/40P01 (serialization failure,
            // deadlock), 53300 (too many connections), 55P03 (lock not available).
            let by_state = state.starts_with("08") || state.starts_with("57P") || matches!(state.as_str(), "70100" | "40001" | "40P01" | "53300" | "55P03");
            // MySQL numbers: 1205 lock wait timeout, 1213 deadlock, 1040 too many connections, 1927 connection killed.
            let by_number = db
                .try_downcast_ref::<sqlx::mysql::MySqlDatabaseError>()
                .is_some_and(|m| matches!(m.number(), 1205 | 1213 | 1040 | 1927));
            by_state || by_number
        }
        _ => false,
    }
}

/// The SQLSTATE / error number of a duplicate key: PostgreSQL 23505, MySQL 1062 (SQLSTATE 23000).
pub(crate) fn is_duplicate_key(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(db) if db.is_unique_violation())
}

/// A server error as a person reads it: the server's message (and its detail, constraint and column, where
/// PostgreSQL gives them).
pub(crate) fn describe(e: &sqlx::Error) -> String {
    match e {
        sqlx::Error::Database(db) => {
            let mut text = db.message().to_owned();
            if let Some(pg) = db.try_downcast_ref::<sqlx::postgres::PgDatabaseError>() {
                if let Some(detail) = pg.detail() {
                    text.push_str(&format!(" ({detail})"));
                }
                if let Some(column) = pg.column() {
                    text.push_str(&format!(" [column {column}]"));
                }
            }
            if let Some(code) = db.code() {
                text.push_str(&format!(" [{code}]"));
            }
            text
        }
        other => other.to_string(),
    }
}
