//! `sql`: a business system whose data lives in PostgreSQL or MySQL/MariaDB. Streams are read from
//! configured queries, tables or views (incrementally with a cursor column and an overlap window); orders,
//! shipments, customers (any stream) are written into configured staging tables, a record's header and
//! child rows in one transaction, exactly once by a unique key.
//!
//! Options (docs/connectors/sql.md has the whole story):
//! - `url`: `postgres://user@host:5432/db` or `mysql://user@host:3306/db` (`mariadb://` too); a secret
//!   (`url = { secret = "legacy-db" }`) or `url_env` (an environment variable holding it).
//! - `timezone`: the clock of date-times stored without zone (default `[defaults] timezone`, else UTC).
//! - `max_connections`: pool size, default 4.
//! - `read.<stream>`: `query` (any SELECT) or `table` (a table or view), `cursor`, `overlap`, `columns`.
//! - `write.<stream>`: `table`, `key_column`, `mode`, `columns` (column → value), `children`.
//!
//! Identifiers from the config are validated and quoted; values are only ever bound parameters.

mod db;
mod expr;
mod ident;
mod read;
mod value;
mod write;

use async_trait::async_trait;
use chrono_tz::Tz;
use db::{Db, DbOptions};
use expr::{ColumnSpec, Expr};
use ferry_engine::connector::parse_options;
use ferry_engine::{
    BuildContext, CheckReport, Connector, ConnectorError, ConnectorFactory, Description, ReadItem, ReadMode, ReadRequest, StreamCapability,
    WriteMode, WriteOutcome, WriteRecord,
};
use ferry_model::Stream;
use futures::stream::BoxStream;
use ident::{TableName, check_ident};
use read::{ReadJob, ReadSpec, Source};
use serde::Deserialize;
use std::collections::{BTreeMap, HashMap};
use std::str::FromStr;
use std::sync::Arc;
use tokio::sync::OnceCell;
use write::{ChildSpec, Schema, WriteSpec};

const NAME: &str = "sql";
const SUMMARY: &str = "A PostgreSQL or MySQL/MariaDB database: streams read from queries or views (cursor + overlap), records written into staging tables exactly once";

/// Registers as `type = "sql"`.
pub struct SqlFactory;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Options {
    url: Option<String>,
    url_env: Option<String>,
    timezone: Option<String>,
    #[serde(default = "default_max_connections")]
    max_connections: u32,
    #[serde(default)]
    read: BTreeMap<String, ReadOptions>,
    #[serde(default)]
    write: BTreeMap<String, WriteOptions>,
}

fn default_max_connections() -> u32 {
    4
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReadOptions {
    query: Option<String>,
    table: Option<String>,
    cursor: Option<String>,
    overlap: Option<i64>,
    #[serde(default)]
    columns: HashMap<String, String>,
}

#[derive(Clone, Copy, Deserialize)]
#[serde(rename_all = "snake_case")]
enum ModeOption {
    InsertOnce,
    Upsert,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WriteOptions {
    table: String,
    key_column: String,
    mode: Option<ModeOption>,
    columns: BTreeMap<String, ColumnSpec>,
    #[serde(default)]
    children: Vec<ChildOptions>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ChildOptions {
    table: String,
    rows: String,
    parent_column: String,
    columns: BTreeMap<String, ColumnSpec>,
}

/// `postgres://***@host:5432/db` without query parameters (which may carry a password).
fn endpoint_of(url: &str) -> String {
    let without_query = url.split(['?', '#']).next().unwrap_or(url);
    format!("{NAME} {}", ferry_engine::secrets::redact_url_credentials(without_query))
}

fn parse_columns(option: &str, columns: BTreeMap<String, ColumnSpec>, child: bool) -> Result<Vec<(String, Expr)>, String> {
    let mut out = Vec::with_capacity(columns.len());
    for (column, spec) in columns {
        check_ident(&column).map_err(|e| format!("{option}: column {e}"))?;
        let expr = Expr::parse(&spec).map_err(|e| format!("{option}.{column}: {e}"))?;
        if expr.needs_index() && !child {
            return Err(format!("{option}.{column}: $index is the position of a child row; a header has none"));
        }
        out.push((column, expr));
    }
    Ok(out)
}

impl ConnectorFactory for SqlFactory {
    fn name(&self) -> &'static str {
        NAME
    }

    fn summary(&self) -> &'static str {
        SUMMARY
    }

    fn env_secrets(&self) -> &'static [(&'static str, &'static str)] {
        &[("url", "url_env")]
    }

    fn build(&self, options: &serde_json::Value, ctx: &BuildContext) -> Result<Arc<dyn Connector>, ConnectorError> {
        let o: Options = parse_options(options, ctx)?;
        let conn = format!("connection {}", ctx.connection);
        let bad = |option: &str, msg: String| ConnectorError::config(conn.clone(), format!("option {option}: {msg}"));
        let url = match (o.url, o.url_env) {
            (Some(url), _) => url,
            (None, Some(var)) => std::env::var(&var).ok().filter(|v| !v.is_empty()).ok_or_else(|| bad("url_env", format!("environment variable {var} is not set")))?,
            (None, None) => return Err(bad("url", "is required (postgres://… or mysql://…), or url_env naming a variable that holds it".into())),
        };
        if o.max_connections == 0 {
            return Err(bad("max_connections", "must be at least 1".into()));
        }
        let db_options = DbOptions::parse(&url).map_err(|e| bad("url", e))?;
        let tz_name = o.timezone.or_else(|| ctx.timezone.clone());
        let tz = match tz_name.as_deref() {
            None => Tz::UTC,
            Some(name) => Tz::from_str(name).map_err(|_| bad("timezone", format!("{name:?} is not an IANA time zone (e.g. Australia/Sydney)")))?,
        };
        let stream = |option: &str, name: &str| Stream::from_str(name).map_err(|e| bad(&format!("{option}.{name}"), e));

        let mut reads = HashMap::new();
        for (name, r) in o.read {
            let s = stream("read", &name)?;
            let option = format!("read.{name}");
            let source = match (r.query, r.table) {
                (Some(q), None) => {
                    let q = q.trim().trim_end_matches(';').trim().to_owned();
                    if q.is_empty() {
                        return Err(bad(&format!("{option}.query"), "is empty".into()));
                    }
                    Source::Query(q)
                }
                (None, Some(t)) => Source::Table(TableName::parse(&t).map_err(|e| bad(&format!("{option}.table"), e))?),
                _ => return Err(bad(&option, "needs exactly one of query (a SELECT) or table (a table or view)".into())),
            };
            if let Some(c) = &r.cursor {
                check_ident(c).map_err(|e| bad(&format!("{option}.cursor"), e))?;
            }
            if r.overlap.is_some_and(|o| o < 0) {
                return Err(bad(&format!("{option}.overlap"), "must not be negative".into()));
            }
            if r.overlap.is_some() && r.cursor.is_none() {
                return Err(bad(&format!("{option}.overlap"), "applies to a cursor: set cursor too".into()));
            }
            reads.insert(s, ReadSpec { source, cursor: r.cursor, overlap: r.overlap, renames: r.columns });
        }

        let mut writes = HashMap::new();
        for (name, w) in o.write {
            let s = stream("write", &name)?;
            let option = format!("write.{name}");
            let table = TableName::parse(&w.table).map_err(|e| bad(&format!("{option}.table"), e))?;
            check_ident(&w.key_column).map_err(|e| bad(&format!("{option}.key_column"), e))?;
            let mut columns = parse_columns(&format!("{option}.columns"), w.columns, false).map_err(|e| bad(&option, e))?;
            // The key column always holds the record's key: the look-ups compare against it.
            match columns.iter().position(|(c, _)| *c == w.key_column) {
                None => columns.insert(0, (w.key_column.clone(), Expr::parse(&ColumnSpec::Expr("$key".into())).expect("$key parses"))),
                Some(i) => {
                    let expr = columns.remove(i).1;
                    let key_field = s.key_fields();
                    let ok = matches!(expr.describe().as_str(), "$key") || (key_field.len() == 1 && expr.describe() == key_field[0]);
                    if !ok {
                        return Err(bad(
                            &format!("{option}.columns.{}", w.key_column),
                            format!("the key column holds the record's key ($key, the {}): leave it out of columns or write \"$key\"", key_field.join("/")),
                        ));
                    }
                    columns.insert(0, (w.key_column.clone(), expr));
                }
            }
            let mut children = Vec::new();
            for (i, c) in w.children.into_iter().enumerate() {
                let child_option = format!("{option}.children[{i}]");
                let child_table = TableName::parse(&c.table).map_err(|e| bad(&format!("{child_option}.table"), e))?;
                check_ident(&c.parent_column).map_err(|e| bad(&format!("{child_option}.parent_column"), e))?;
                if c.rows.trim().is_empty() || !c.rows.chars().all(|ch| ch.is_alphanumeric() || ch == '_') {
                    return Err(bad(&format!("{child_option}.rows"), format!("{:?} must name an array field of the record (lines, shipping, addresses…)", c.rows)));
                }
                let mut child_columns = parse_columns(&format!("{child_option}.columns"), c.columns, true).map_err(|e| bad(&child_option, e))?;
                if !child_columns.iter().any(|(col, _)| *col == c.parent_column) {
                    child_columns.insert(0, (c.parent_column.clone(), Expr::parse(&ColumnSpec::Expr("$key".into())).expect("$key parses")));
                }
                children.push(ChildSpec { table: child_table, rows: c.rows, parent_column: c.parent_column, columns: child_columns });
            }
            let mode = match w.mode {
                Some(ModeOption::InsertOnce) => WriteMode::CreateOnce,
                Some(ModeOption::Upsert) => WriteMode::Upsert,
                None if matches!(s, Stream::Orders | Stream::Shipments) => WriteMode::CreateOnce,
                None => WriteMode::Upsert,
            };
            let spec = WriteSpec { stream: s, table, key_column: w.key_column, mode, columns, children };
            writes.insert(s, (Arc::new(spec), Arc::new(OnceCell::new())));
        }
        if reads.is_empty() && writes.is_empty() {
            return Err(ConnectorError::config(conn, "configure at least one read.<stream> or write.<stream>"));
        }
        let dialect = db_options.dialect();
        Ok(Arc::new(SqlConnector {
            db_options,
            max_connections: o.max_connections,
            pool: std::sync::OnceLock::new(),
            dialect,
            endpoint: endpoint_of(&url),
            tz,
            reads,
            writes,
        }))
    }
}

/// A connection to one database.
pub struct SqlConnector {
    db_options: DbOptions,
    max_connections: u32,
    /// Made on first use, inside the runtime.
    pool: std::sync::OnceLock<Db>,
    dialect: ident::Dialect,
    endpoint: String,
    tz: Tz,
    reads: HashMap<Stream, ReadSpec>,
    /// Each written stream's spec and its tables' catalogue entries, read once.
    writes: HashMap<Stream, (Arc<WriteSpec>, Arc<OnceCell<Schema>>)>,
}

impl SqlConnector {
    fn db(&self) -> &Db {
        self.pool.get_or_init(|| self.db_options.pool(self.max_connections))
    }

    fn not_configured(&self, stream: Stream, what: &str) -> ConnectorError {
        ConnectorError::config(self.endpoint.clone(), format!("cannot {what} stream {stream}: the connection has no {what}.{stream} table"))
    }

    async fn writer(&self, stream: Stream, what: &str) -> Result<(&WriteSpec, &Schema), ConnectorError> {
        let (spec, schema) = self.writes.get(&stream).ok_or_else(|| self.not_configured(stream, what))?;
        let schema = schema.get_or_try_init(|| spec.load_schema(self.db(), &self.endpoint)).await?;
        Ok((spec, schema))
    }
}

#[async_trait]
impl Connector for SqlConnector {
    fn describe(&self) -> Description {
        let mut streams: Vec<StreamCapability> = Vec::new();
        for stream in Stream::ALL {
            let read = self.reads.get(&stream).map(|r| if r.cursor.is_some() { ReadMode::Incremental } else { ReadMode::Snapshot });
            let write = self.writes.get(&stream).map(|(w, _)| w.mode);
            if read.is_some() || write.is_some() {
                streams.push(StreamCapability { stream, read, write, find_by_key: write.is_some(), retire: vec![] });
            }
        }
        Description {
            name: NAME,
            summary: SUMMARY,
            config_schema: serde_json::json!({
                "type": "object",
                "additionalProperties": false,
                "properties": {
                    "url": {"description": "postgres://user@host:5432/db or mysql://user@host:3306/db; { secret = \"NAME\" } keeps it encrypted"},
                    "url_env": {"type": "string", "description": "Environment variable holding the URL"},
                    "timezone": {"type": "string", "description": "IANA zone of date-times stored without zone; default [defaults] timezone, else UTC"},
                    "max_connections": {"type": "integer", "minimum": 1, "default": 4},
                    "read": {"type": "object", "description": "stream → {query | table, cursor, overlap, columns}",
                             "additionalProperties": {"type": "object", "additionalProperties": false, "properties": {
                                "query": {"type": "string"}, "table": {"type": "string"}, "cursor": {"type": "string"},
                                "overlap": {"type": "integer", "minimum": 0, "description": "seconds (time cursor), versions (number cursor)"},
                                "columns": {"type": "object", "additionalProperties": {"type": "string"}}}}},
                    "write": {"type": "object", "description": "stream → {table, key_column, mode, columns, children}",
                              "additionalProperties": {"type": "object", "additionalProperties": false, "required": ["table", "key_column", "columns"], "properties": {
                                "table": {"type": "string"}, "key_column": {"type": "string"},
                                "mode": {"enum": ["insert_once", "upsert"]},
                                "columns": {"type": "object", "description": "column → field path, $key, $parent.PATH, sum(PATH[].x) or {value = constant}"},
                                "children": {"type": "array", "items": {"type": "object", "required": ["table", "rows", "parent_column", "columns"]}}}}}
                }
            }),
            streams,
            batch_size: 500,
            webhooks: false,
        }
    }

    async fn check(&self) -> Result<CheckReport, ConnectorError> {
        let dialect = self.dialect;
        let mut details = Vec::new();
        let version = self
            .db()
            .fetch_text(if dialect == ident::Dialect::Postgres { "SELECT version()" } else { "SELECT CAST(VERSION() AS CHAR)" }, vec![])
            .await
            .map_err(|e| ConnectorError::transient(self.endpoint.clone(), format!("cannot connect: {}", db::describe(&e))))?;
        let version = version.into_iter().next().and_then(|r| r.into_iter().next().flatten()).unwrap_or_default();
        details.push(format!("{}: connected to {}: {}", self.endpoint, dialect.name(), version.split(" on ").next().unwrap_or(&version)));
        let mut ok = true;
        let mut streams: Vec<_> = self.reads.iter().collect();
        streams.sort_by_key(|(s, _)| **s);
        for (stream, spec) in streams {
            // The source compiles and has the cursor column, without reading a row.
            let sql = format!("SELECT * FROM {} WHERE 1 = 0", spec.source_sql(dialect));
            match self.db().fetch_text(&sql, vec![]).await {
                Ok(_) => details.push(format!("read {stream}: {} readable", spec.label(*stream))),
                Err(e) => {
                    ok = false;
                    details.push(format!("read {stream}: {}: {}", spec.label(*stream), db::describe(&e)));
                }
            }
        }
        let mut writes: Vec<_> = self.writes.keys().copied().collect();
        writes.sort();
        for stream in writes {
            match self.writer(stream, "write").await {
                Ok((spec, _)) => details.push(format!("write {stream}: {} and {} child table(s) match the columns", spec.table, spec.children.len())),
                Err(e) => {
                    ok = false;
                    details.push(format!("write {stream}: {}", e.message));
                }
            }
        }
        Ok(CheckReport { ok, details })
    }

    async fn check_write(&self, stream: Stream) -> Result<Vec<String>, ConnectorError> {
        let (spec, _) = self.writer(stream, "write").await?;
        let mut lines = vec![format!("{} matches the configured columns, with a unique index on {}", spec.table, spec.key_column)];
        if self.dialect == ident::Dialect::Postgres {
            let mut tables = vec![&spec.table];
            tables.extend(spec.children.iter().map(|c| &c.table));
            for table in tables {
                let rows = self
                    .db()
                    .fetch_text("SELECT has_table_privilege($1, 'INSERT')::text", vec![value::SqlValue::Text(table.quoted(ident::Dialect::Postgres))])
                    .await
                    .map_err(|e| ConnectorError::permanent(self.endpoint.clone(), db::describe(&e)))?;
                if rows.first().and_then(|r| r.first().cloned().flatten()).as_deref() != Some("true") {
                    return Err(ConnectorError::new(ferry_engine::ErrorKind::Auth, self.endpoint.clone(), format!("this user may not insert into {table}")));
                }
                lines.push(format!("INSERT into {table} allowed"));
            }
        }
        Ok(lines)
    }

    fn location(&self, stream: Stream) -> Option<String> {
        self.reads.get(&stream).map(|r| format!("{} {}", self.endpoint, r.label(stream)))
    }

    fn read(&self, request: ReadRequest) -> BoxStream<'_, Result<ReadItem, ConnectorError>> {
        let stream = request.stream();
        let Some(spec) = self.reads.get(&stream) else {
            let err = self.not_configured(stream, "read");
            return Box::pin(futures::stream::once(async move { Err(err) }));
        };
        read::read(ReadJob {
            db: self.db().clone(),
            endpoint: self.endpoint.clone(),
            stream,
            spec: spec.clone(),
            tz: self.tz,
            checkpoint: request.checkpoint,
            only: request.keys.map(|k| k.into_iter().collect()),
        })
    }

    async fn write(&self, stream: Stream, batch: Vec<WriteRecord>) -> Result<Vec<WriteOutcome>, ConnectorError> {
        let (spec, schema) = self.writer(stream, "write").await?;
        spec.write(self.db(), &self.endpoint, schema, batch, self.tz).await
    }

    async fn find_by_key(&self, stream: Stream, keys: &[String]) -> Result<HashMap<String, String>, ConnectorError> {
        let (spec, schema) = self.writer(stream, "write").await?;
        spec.find(self.db(), &self.endpoint, schema, keys, self.tz).await
    }
}

#[cfg(test)]
mod tests;
