//! Writing records into staging tables: a header row per record (keyed by a column with a unique index)
//! and child rows (order lines, shipment lines, addresses…) in other tables, all of one record in one
//! transaction, so the business system's import never sees half an order.
//!
//! Exactly once: the keys of a batch are looked up first (in the batch's transaction); a record whose key
//! is there is not inserted again. The insert itself is `ON CONFLICT (key) DO NOTHING` on PostgreSQL; on
//! MySQL/MariaDB a duplicate-key error on the key's unique index means the same (INSERT IGNORE is not used:
//! it would also turn data errors into warnings and store cut or zeroed values). A batch is one
//! transaction with a savepoint per record: a record the server refuses is rolled back to its savepoint
//! and fails alone; a lost connection fails the call, and the engine looks the keys up before trying
//! again.

use super::db::{Db, Session, describe, is_duplicate_key, is_transient};
use super::expr::{Expr, Scope};
use super::ident::{Dialect, TableName};
use super::value::{ColumnInfo, Kind, SqlValue, to_sql};
use chrono_tz::Tz;
use ferry_engine::{ConnectorError, RecordFailure, WriteAction, WriteMode, WriteOutcome, WriteRecord};
use ferry_model::Stream;
use serde_json::Value;
use std::collections::{HashMap, HashSet};

/// Keys per look-up statement (well under both servers' parameter limits).
const LOOKUP_CHUNK: usize = 500;

/// Records per transaction: fewer commits (each waits for the disk) against a shorter redo when a record
/// is refused (see `write`); measured in docs/benchmarks.md.
const RECORDS_PER_TRANSACTION: usize = 250;

#[derive(Clone, Debug)]
pub(crate) struct ChildSpec {
    pub(crate) table: TableName,
    /// The array of the record each row comes from (`lines`).
    pub(crate) rows: String,
    pub(crate) parent_column: String,
    pub(crate) columns: Vec<(String, Expr)>,
}

#[derive(Clone, Debug)]
pub(crate) struct WriteSpec {
    pub(crate) stream: Stream,
    pub(crate) table: TableName,
    pub(crate) key_column: String,
    pub(crate) mode: WriteMode,
    /// Header columns, the key column first.
    pub(crate) columns: Vec<(String, Expr)>,
    pub(crate) children: Vec<ChildSpec>,
}

/// The catalogue's view of the tables of one write spec, checked against the config.
#[derive(Debug)]
pub(crate) struct Schema {
    header: HashMap<String, ColumnInfo>,
    children: Vec<HashMap<String, ColumnInfo>>,
    /// MySQL: the unique index on the key column (a duplicate-key error naming it means "already there").
    key_index: String,
}

/// One record turned into rows, every value typed for its column.
struct Prepared {
    key: String,
    key_value: SqlValue,
    header: Vec<SqlValue>,
    children: Vec<Vec<Vec<SqlValue>>>,
}

fn catalog_columns_sql(dialect: Dialect) -> &'static str {
    match dialect {
        Dialect::Postgres => {
            "SELECT column_name::text, data_type::text, udt_name::text, is_nullable::text, character_maximum_length::text, \
             numeric_precision::text, numeric_scale::text, \
             (column_default IS NOT NULL OR is_identity = 'YES' OR is_generated <> 'NEVER')::text \
             FROM information_schema.columns WHERE table_schema = COALESCE($1, current_schema()) AND table_name = $2 \
             ORDER BY ordinal_position"
        }
        Dialect::MySql => {
            "SELECT CAST(COLUMN_NAME AS CHAR), CAST(DATA_TYPE AS CHAR), CAST(COLUMN_TYPE AS CHAR), CAST(IS_NULLABLE AS CHAR), \
             CAST(CHARACTER_MAXIMUM_LENGTH AS CHAR), CAST(NUMERIC_PRECISION AS CHAR), CAST(NUMERIC_SCALE AS CHAR), \
             CAST((COLUMN_DEFAULT IS NOT NULL OR EXTRA LIKE '%auto_increment%' OR EXTRA LIKE '%GENERATED%') AS CHAR) \
             FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = COALESCE(?, DATABASE()) AND TABLE_NAME = ? \
             ORDER BY ORDINAL_POSITION"
        }
    }
}

/// Unique single-column indexes (without a predicate) on a column: their names.
fn unique_index_sql(dialect: Dialect) -> &'static str {
    match dialect {
        Dialect::Postgres => {
            "SELECT ci.relname::text FROM pg_index i \
             JOIN pg_class t ON t.oid = i.indrelid JOIN pg_namespace n ON n.oid = t.relnamespace \
             JOIN pg_class ci ON ci.oid = i.indexrelid \
             JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0] \
             WHERE n.nspname = COALESCE($1, current_schema()) AND t.relname = $2 AND a.attname = $3 \
             AND i.indisunique AND i.indnkeyatts = 1 AND i.indpred IS NULL"
        }
        Dialect::MySql => {
            "SELECT CAST(INDEX_NAME AS CHAR) FROM information_schema.STATISTICS \
             WHERE TABLE_SCHEMA = COALESCE(?, DATABASE()) AND TABLE_NAME = ? AND NON_UNIQUE = 0 \
             GROUP BY INDEX_NAME HAVING COUNT(*) = 1 AND MAX(COLUMN_NAME) = ?"
        }
    }
}

fn config_err(endpoint: &str, message: String) -> ConnectorError {
    ConnectorError::config(endpoint.to_owned(), message)
}

fn server_err(endpoint: &str, what: &str, e: &sqlx::Error) -> ConnectorError {
    let message = format!("{what}: {}", describe(e));
    if is_transient(e) { ConnectorError::transient(endpoint.to_owned(), message) } else { ConnectorError::permanent(endpoint.to_owned(), message) }
}

async fn table_columns(db: &Db, endpoint: &str, table: &TableName) -> Result<HashMap<String, ColumnInfo>, ConnectorError> {
    let args = vec![
        table.schema.clone().map(SqlValue::Text).unwrap_or(SqlValue::Null(Kind::Text { max_chars: None })),
        SqlValue::Text(table.name.clone()),
    ];
    let rows = db.fetch_text(catalog_columns_sql(db.dialect()), args).await.map_err(|e| server_err(endpoint, &format!("reading the columns of {table}"), &e))?;
    if rows.is_empty() {
        return Err(config_err(endpoint, format!("table {table} does not exist (or this user cannot see it)")));
    }
    let mut columns = HashMap::new();
    for row in rows {
        let cell = |i: usize| row.get(i).cloned().flatten();
        let name = cell(0).unwrap_or_default();
        let data_type = cell(1).unwrap_or_default();
        let number = |i: usize| cell(i).and_then(|s| s.parse::<u64>().ok());
        let kind = Kind::from_catalog(&data_type, &cell(2).unwrap_or_default(), number(4), number(5).map(|n| n as u32), number(6).map(|n| n as u32));
        let nullable = cell(3).is_some_and(|s| s.eq_ignore_ascii_case("YES"));
        let has_default = cell(7).is_some_and(|s| s == "true" || s == "1");
        // A column of a type Ferry does not write is refused by `check_columns` only when it is configured.
        let unsupported = kind.is_none().then(|| data_type.clone());
        let kind = kind.unwrap_or(Kind::Json);
        columns.insert(name.clone(), ColumnInfo { name, kind, nullable, has_default, unsupported });
    }
    Ok(columns)
}

/// Every configured column exists with a type Ferry can write, and every NOT NULL column without a default
/// gets a value (otherwise every record would fail the same way).
fn check_columns(endpoint: &str, table: &TableName, columns: &HashMap<String, ColumnInfo>, configured: &[(String, Expr)]) -> Result<(), ConnectorError> {
    let mut known: Vec<&str> = columns.keys().map(String::as_str).collect();
    known.sort_unstable();
    for (column, _) in configured {
        match columns.get(column) {
            None => {
                return Err(config_err(endpoint, format!("table {table} has no column {column:?}; its columns are {}", known.join(", "))));
            }
            Some(ColumnInfo { unsupported: Some(type_name), .. }) => {
                return Err(config_err(endpoint, format!("column {table}.{column} has type {type_name}, which Ferry does not write")));
            }
            Some(_) => {}
        }
    }
    let mut missing: Vec<&str> = columns
        .values()
        .filter(|c| !c.nullable && !c.has_default && !configured.iter().any(|(n, _)| *n == c.name))
        .map(|c| c.name.as_str())
        .collect();
    missing.sort_unstable();
    if !missing.is_empty() {
        return Err(config_err(
            endpoint,
            format!("table {table}: column(s) {} are NOT NULL without a default but get no value: add them to the columns", missing.join(", ")),
        ));
    }
    Ok(())
}

impl WriteSpec {
    /// Reads the tables' columns from the catalogue and checks the config against them.
    pub(crate) async fn load_schema(&self, db: &Db, endpoint: &str) -> Result<Schema, ConnectorError> {
        let header = table_columns(db, endpoint, &self.table).await?;
        check_columns(endpoint, &self.table, &header, &self.columns)?;
        let args = vec![
            self.table.schema.clone().map(SqlValue::Text).unwrap_or(SqlValue::Null(Kind::Text { max_chars: None })),
            SqlValue::Text(self.table.name.clone()),
            SqlValue::Text(self.key_column.clone()),
        ];
        let indexes = db.fetch_text(unique_index_sql(db.dialect()), args).await.map_err(|e| server_err(endpoint, "reading indexes", &e))?;
        let key_index = indexes.into_iter().find_map(|r| r.into_iter().next().flatten()).ok_or_else(|| {
            config_err(
                endpoint,
                format!(
                    "table {}: exactly-once writes need a unique index on the key column {0}.{1} alone (e.g. CREATE UNIQUE INDEX ON {0} ({1}))",
                    self.table, self.key_column
                ),
            )
        })?;
        let mut children = Vec::new();
        for child in &self.children {
            let columns = table_columns(db, endpoint, &child.table).await?;
            check_columns(endpoint, &child.table, &columns, &child.columns)?;
            children.push(columns);
        }
        Ok(Schema { header, children, key_index })
    }

    fn insert_sql(dialect: Dialect, table: &TableName, columns: &[(String, Expr)], rows: usize) -> String {
        let names: Vec<String> = columns.iter().map(|(c, _)| dialect.quote(c)).collect();
        let values: Vec<String> = (0..rows).map(|r| format!("({})", dialect.placeholders(1 + r * columns.len(), columns.len()))).collect();
        format!("INSERT INTO {} ({}) VALUES {}", table.quoted(dialect), names.join(", "), values.join(", "))
    }

    fn header_insert_sql(&self, dialect: Dialect) -> String {
        let sql = Self::insert_sql(dialect, &self.table, &self.columns, 1);
        match dialect {
            Dialect::Postgres => format!("{sql} ON CONFLICT ({}) DO NOTHING", dialect.quote(&self.key_column)),
            Dialect::MySql => sql,
        }
    }

    fn header_update_sql(&self, dialect: Dialect) -> String {
        let sets: Vec<String> = self.columns.iter().skip(1).enumerate().map(|(i, (c, _))| format!("{} = {}", dialect.quote(c), dialect.placeholder(i + 1))).collect();
        format!(
            "UPDATE {} SET {} WHERE {} = {}",
            self.table.quoted(dialect),
            sets.join(", "),
            dialect.quote(&self.key_column),
            dialect.placeholder(self.columns.len())
        )
    }

    fn lookup_sql(&self, dialect: Dialect, keys: usize) -> String {
        let key = dialect.quote(&self.key_column);
        format!("SELECT {} FROM {} WHERE {key} IN ({})", dialect.as_text(&key), self.table.quoted(dialect), dialect.placeholders(1, keys))
    }

    /// Turns one record into typed rows; a value its column cannot hold fails the record naming both.
    fn prepare(&self, schema: &Schema, key: &str, record: &Value, tz: Tz) -> Result<Prepared, RecordFailure> {
        let what = self.stream.as_str().trim_end_matches('s');
        let fail = |field: String, table: &TableName, column: &str, why: String| {
            RecordFailure::permanent(Some(field.clone()), format!("{what} {key}: {field} → {table}.{column}: {why}"))
        };
        let value_of = |expr: &Expr, scope: &Scope<'_>, table: &TableName, column: &str, field: String, info: &ColumnInfo| {
            let v = expr.eval(scope).map_err(|why| fail(field.clone(), table, column, why))?;
            to_sql(&v, info, tz).map_err(|why| fail(field, table, column, why))
        };
        let scope = Scope { row: record, record, key, index: None };
        let key_info = &schema.header[&self.key_column];
        let key_value = to_sql(&Value::String(key.to_owned()), key_info, tz).map_err(|why| fail("$key".into(), &self.table, &self.key_column, why))?;
        let mut header = Vec::with_capacity(self.columns.len());
        for (column, expr) in &self.columns {
            header.push(value_of(expr, &scope, &self.table, column, field_name(expr, None), &schema.header[column])?);
        }
        let mut children = Vec::with_capacity(self.children.len());
        for (child, columns) in self.children.iter().zip(&schema.children) {
            let items = match record.get(&child.rows) {
                Some(Value::Array(items)) => items.as_slice(),
                _ => &[],
            };
            let mut rows = Vec::with_capacity(items.len());
            for (i, item) in items.iter().enumerate() {
                let scope = Scope { row: item, record, key, index: Some(i + 1) };
                let mut row = Vec::with_capacity(child.columns.len());
                for (column, expr) in &child.columns {
                    let field = field_name(expr, Some((&child.rows, i)));
                    row.push(value_of(expr, &scope, &child.table, column, field, &columns[column])?);
                }
                rows.push(row);
            }
            children.push(rows);
        }
        Ok(Prepared { key: key.to_owned(), key_value, header, children })
    }

    /// Keys of `keys` present in the header table (key → key).
    pub(crate) async fn find(&self, db: &Db, endpoint: &str, schema: &Schema, keys: &[String], tz: Tz) -> Result<HashMap<String, String>, ConnectorError> {
        let key_info = &schema.header[&self.key_column];
        let mut found = HashMap::new();
        // A key the column cannot hold (text in an integer column) cannot be there.
        let typed: Vec<(String, SqlValue)> = keys.iter().filter_map(|k| to_sql(&Value::String(k.clone()), key_info, tz).ok().map(|v| (k.clone(), v))).collect();
        for chunk in typed.chunks(LOOKUP_CHUNK) {
            let sql = self.lookup_sql(db.dialect(), chunk.len());
            let rows = db.fetch_text(&sql, chunk.iter().map(|(_, v)| v.clone()).collect()).await.map_err(|e| server_err(endpoint, &format!("looking up keys in {}", self.table), &e))?;
            let present: HashSet<String> = rows.into_iter().filter_map(|r| r.into_iter().next().flatten()).collect();
            for (k, _) in chunk {
                if present.contains(k) {
                    found.insert(k.clone(), k.clone());
                }
            }
        }
        Ok(found)
    }

    /// Writes a batch in one transaction, a savepoint per record.
    pub(crate) async fn write(&self, db: &Db, endpoint: &str, schema: &Schema, batch: Vec<WriteRecord>, tz: Tz) -> Result<Vec<WriteOutcome>, ConnectorError> {
        let dialect = db.dialect();
        let mut outcomes = Vec::with_capacity(batch.len());
        let mut work = Vec::with_capacity(batch.len());
        for wr in batch {
            if wr.record.stream() != self.stream {
                let msg = format!("is a {} record; this table takes {}", wr.record.stream(), self.stream);
                outcomes.push(WriteOutcome::failed(wr.key, RecordFailure::permanent(None, msg)));
                continue;
            }
            let value = wr.record.to_value();
            match self.prepare(schema, &wr.key, &value, tz) {
                Ok(p) => work.push((wr, p)),
                Err(failure) => outcomes.push(WriteOutcome::failed(wr.key, failure)),
            }
        }
        if work.is_empty() {
            return Ok(outcomes);
        }
        let insert_header = self.header_insert_sql(dialect);
        for part in work.chunks(RECORDS_PER_TRANSACTION) {
            // Savepoints cost (PostgreSQL slows down with many subtransactions): a part is first written
            // without them, and only when a record is refused is it written again, each record under a
            // savepoint of its own, so that record fails alone.
            let written = match self.write_part(db, endpoint, schema, &insert_header, part, false).await? {
                Some(written) => written,
                None => self.write_part(db, endpoint, schema, &insert_header, part, true).await?.expect("isolated writes always finish"),
            };
            outcomes.extend(written);
        }
        Ok(outcomes)
    }

    /// One transaction: look-up, then each record. `None` when a record was refused without `isolate` (the
    /// transaction is then rolled back).
    async fn write_part(
        &self,
        db: &Db,
        endpoint: &str,
        schema: &Schema,
        insert_header: &str,
        part: &[(WriteRecord, Prepared)],
        isolate: bool,
    ) -> Result<Option<Vec<WriteOutcome>>, ConnectorError> {
        let dialect = db.dialect();
        let session_err = |what: &str, e: &sqlx::Error| server_err(endpoint, what, e);
        let mut tx = db.begin().await.map_err(|e| session_err("opening a transaction", &e))?;
        // Look-up before insert, inside the transaction.
        let sql = self.lookup_sql(dialect, part.len());
        let rows = tx
            .fetch_text(&sql, part.iter().map(|(_, p)| p.key_value.clone()).collect())
            .await
            .map_err(|e| session_err(&format!("looking up keys in {}", self.table), &e))?;
        let present: HashSet<String> = rows.into_iter().filter_map(|r| r.into_iter().next().flatten()).collect();
        let mut outcomes = Vec::with_capacity(part.len());
        for (wr, prepared) in part {
            let exists = present.contains(&prepared.key);
            match self.write_one(&mut *tx, endpoint, dialect, schema, insert_header, wr, prepared, exists, isolate).await? {
                Some(outcome) => outcomes.push(outcome),
                None => return Ok(None),
            }
        }
        // A failure here (or in a later part) fails the call: the engine looks the keys up before it sends
        // them again, so the parts committed already are found, not written twice.
        tx.commit().await.map_err(|e| session_err("committing the batch", &e))?;
        Ok(Some(outcomes))
    }

    /// Writes one record (under a savepoint with `isolate`). `Err` only for failures of the whole call
    /// (connection lost); `None` when the record was refused without `isolate`.
    #[allow(clippy::too_many_arguments)]
    async fn write_one(
        &self,
        tx: &mut dyn Session,
        endpoint: &str,
        dialect: Dialect,
        schema: &Schema,
        insert_header: &str,
        wr: &WriteRecord,
        prepared: &Prepared,
        exists: bool,
        isolate: bool,
    ) -> Result<Option<WriteOutcome>, ConnectorError> {
        let key = prepared.key.clone();
        let done = |action| Ok(Some(WriteOutcome::ok(key.clone(), key.clone(), action)));
        if self.mode == WriteMode::CreateOnce {
            if wr.previous.is_some() {
                // Changed at the source after it was written: staging rows may have been imported already.
                let what = self.stream.as_str().trim_end_matches('s');
                let warning = format!(
                    "{what} {key} changed after it was written to {} (now {}): staging rows are written once; apply the change in the business system",
                    self.table,
                    change_hint(&wr.record)
                );
                return Ok(Some(WriteOutcome::warned(key.clone(), key.clone(), WriteAction::Unchanged, warning)));
            }
            // Already there, or written before and since taken away by the business system's import.
            if exists || wr.target_id.is_some() {
                return done(WriteAction::Unchanged);
            }
        }
        if isolate {
            tx.plain("SAVEPOINT ferry_record").await.map_err(|e| self.call_err(endpoint, &key, &e))?;
        }
        match self.apply(tx, dialect, insert_header, prepared, exists).await {
            Ok(action) => {
                if isolate {
                    tx.plain("RELEASE SAVEPOINT ferry_record").await.map_err(|e| self.call_err(endpoint, &key, &e))?;
                }
                done(action)
            }
            Err((_, e)) if is_transient(&e) => Err(self.call_err(endpoint, &key, &e)),
            Err(_) if !isolate => Ok(None),
            Err((table, e)) => {
                tx.plain("ROLLBACK TO SAVEPOINT ferry_record").await.map_err(|e| self.call_err(endpoint, &key, &e))?;
                let message = describe(&e);
                let on_key_index = [format!("'{}'", schema.key_index), format!(".{}'", schema.key_index), format!("\"{}\"", schema.key_index)]
                    .iter()
                    .any(|name| message.contains(name.as_str()));
                if is_duplicate_key(&e) && on_key_index {
                    // Written by someone else between the look-up and the insert.
                    return done(WriteAction::Unchanged);
                }
                let what = self.stream.as_str().trim_end_matches('s');
                Ok(Some(WriteOutcome::failed(key.clone(), RecordFailure::permanent(None, format!("{what} {key}: {table} refused it: {message}")))))
            }
        }
    }

    fn call_err(&self, endpoint: &str, key: &str, e: &sqlx::Error) -> ConnectorError {
        server_err(endpoint, &format!("writing {} {key} into {}", self.stream, self.table), e)
    }

    /// The statements of one record: header (insert, or update for upsert), then its child rows. An error
    /// comes with the table that refused.
    async fn apply(&self, tx: &mut dyn Session, dialect: Dialect, insert_header: &str, prepared: &Prepared, exists: bool) -> Result<WriteAction, (String, sqlx::Error)> {
        let header_err = |e| (self.table.to_string(), e);
        let action = if exists {
            // Upsert of a record that is there: header updated, child rows replaced.
            let mut args: Vec<SqlValue> = prepared.header.iter().skip(1).cloned().collect();
            args.push(prepared.key_value.clone());
            tx.execute(&self.header_update_sql(dialect), args).await.map_err(header_err)?;
            for child in &self.children {
                let sql = format!("DELETE FROM {} WHERE {} = {}", child.table.quoted(dialect), dialect.quote(&child.parent_column), dialect.placeholder(1));
                tx.execute(&sql, vec![prepared.key_value.clone()]).await.map_err(|e| (child.table.to_string(), e))?;
            }
            WriteAction::Updated
        } else {
            let inserted = tx.execute(insert_header, prepared.header.clone()).await.map_err(header_err)?;
            if inserted == 0 {
                // ON CONFLICT DO NOTHING: another writer put it there since the look-up.
                return Ok(WriteAction::Unchanged);
            }
            WriteAction::Created
        };
        for (child, rows) in self.children.iter().zip(&prepared.children) {
            // One statement for all rows of a record, in slices the servers' parameter limits allow.
            let per_statement = (60_000 / child.columns.len().max(1)).max(1);
            for slice in rows.chunks(per_statement) {
                let sql = Self::insert_sql(dialect, &child.table, &child.columns, slice.len());
                tx.execute(&sql, slice.iter().flatten().cloned().collect()).await.map_err(|e| (format!("{} (rows of {})", child.table, child.rows), e))?;
            }
        }
        Ok(action)
    }
}

/// What a changed create-once record now is, for the warning (an order's status).
fn change_hint(record: &ferry_model::Record) -> String {
    match record {
        ferry_model::Record::Order(o) => o.status.as_str().to_owned(),
        _ => "different".to_owned(),
    }
}

/// The canonical field a column's value comes from, for messages: `customer.email`, `lines[2].sku`.
fn field_name(expr: &Expr, child: Option<(&str, usize)>) -> String {
    let inner = expr.describe();
    match child {
        Some((rows, i)) if inner.starts_with('$') && !inner.starts_with("$parent.") => format!("{rows}[{i}].{inner}"),
        Some((_, _)) if inner.starts_with("$parent.") => inner["$parent.".len()..].to_owned(),
        Some((rows, i)) => format!("{rows}[{i}].{inner}"),
        None => inner,
    }
}
