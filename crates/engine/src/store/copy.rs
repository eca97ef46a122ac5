//! `ferry state migrate --to postgres://…`: copies a SQLite state store into an empty PostgreSQL schema,
//! row for row (ids, hashes, payloads and times verbatim, since both backends keep the same text
//! formats), in one PostgreSQL transaction. The next run on PostgreSQL then finds every record it synced
//! before unchanged and writes nothing.
//!
//! Flow leases are not copied: they belong to processes of the old deployment, which must be stopped.

use super::postgres::PgStore;
use super::sqlite::SqliteStore;
use super::{StoreError, StoreResult};
use serde::Serialize;
use sqlx::Row;

#[derive(Clone, Copy)]
enum Kind {
    Int,
    Text,
    /// SQLite 0/1 → PostgreSQL boolean.
    Bool,
    Blob,
}

use Kind::*;

/// Every table that is state, with its columns as both backends have them; `order` keeps rows in the
/// order SQLite returns them (run outcomes have no id of their own).
/// A table: its name, the column to copy rows in the order of, and its columns.
type Table = (&'static str, &'static str, &'static [(&'static str, Kind)]);

const TABLES: &[Table] = &[
    (
        "runs",
        "id",
        &[
            ("id", Int),
            ("flow", Text),
            ("mode", Text),
            ("started_at", Text),
            ("finished_at", Text),
            ("status", Text),
            ("read", Int),
            ("created", Int),
            ("updated", Int),
            ("unchanged", Int),
            ("failed", Int),
            ("retired", Int),
            ("skipped", Int),
            ("error", Text),
            ("resumed", Int),
            ("warned", Int),
            ("holder", Text),
            ("warnings", Text),
        ],
    ),
    ("run_records", "rowid", &[("run_id", Int), ("key", Text), ("outcome", Text), ("target_id", Text), ("field", Text), ("message", Text)]),
    ("checkpoints", "flow", &[("flow", Text), ("value", Text), ("updated_at", Text)]),
    (
        "xref",
        "id",
        &[("id", Int), ("flow", Text), ("key", Text), ("target_id", Text), ("hash", Text), ("payload", Text), ("synced_at", Text), ("source_hash", Text)],
    ),
    (
        "failures",
        "id",
        &[
            ("id", Int),
            ("flow", Text),
            ("key", Text),
            ("position", Text),
            ("stage", Text),
            ("field", Text),
            ("message", Text),
            ("retryable", Bool),
            ("attempts", Int),
            ("first_failed_at", Text),
            ("last_failed_at", Text),
            ("next_retry_at", Text),
            ("source", Text),
        ],
    ),
    (
        "jobs",
        "id",
        &[
            ("id", Int),
            ("flow", Text),
            ("kind", Text),
            ("keys", Text),
            ("options", Text),
            ("status", Text),
            ("attempts", Int),
            ("max_attempts", Int),
            ("run_after", Text),
            ("lease_holder", Text),
            ("lease_until", Text),
            ("dedupe_key", Text),
            ("run_id", Int),
            ("error", Text),
            ("created_at", Text),
            ("updated_at", Text),
            ("started_at", Text),
            ("finished_at", Text),
        ],
    ),
    (
        "api_records",
        "seq",
        &[("collection", Text), ("stream", Text), ("key", Text), ("seq", Int), ("hash", Text), ("payload", Text), ("updated_at", Text)],
    ),
    (
        "api_keys",
        "id",
        &[("id", Text), ("hash", Text), ("name", Text), ("scopes", Text), ("created_at", Text), ("last_used_at", Text), ("revoked_at", Text)],
    ),
    ("prunes", "id", &[("id", Int), ("started_at", Text), ("finished_at", Text), ("report", Text)]),
    ("secrets", "name", &[("name", Text), ("key_id", Text), ("nonce", Blob), ("ciphertext", Blob), ("created_at", Text), ("updated_at", Text)]),
    ("webhook_deliveries", "received_at", &[("connection", Text), ("delivery_id", Text), ("received_at", Text), ("jobs", Text)]),
];

/// Tables whose `id` the target's identity must continue after.
const IDENTITIES: &[&str] = &["runs", "xref", "failures", "jobs", "prunes"];

/// Rows per INSERT: the columns travel as arrays, so this only bounds memory.
const CHUNK: i64 = 5_000;

/// Rows copied per table.
#[derive(Clone, Debug, Default, Serialize)]
pub struct CopyReport {
    pub tables: Vec<(String, u64)>,
}

enum Column {
    Int(Vec<Option<i64>>),
    Text(Vec<Option<String>>),
    Bool(Vec<Option<bool>>),
    Blob(Vec<Option<Vec<u8>>>),
}

/// Copies everything from `from` into `to`, which must hold no state yet (a fresh schema); all or nothing.
pub async fn copy_sqlite_to_postgres(from: &SqliteStore, to: &PgStore) -> StoreResult<CopyReport> {
    let err = |table: &str, e: &dyn std::fmt::Display| StoreError { location: to.location.clone(), message: format!("copy {table}: {e}") };
    let mut tx = to.pool().begin().await.map_err(|e| err("begin", &e))?;
    for (table, _, _) in TABLES {
        let present: bool = sqlx::query_scalar(&format!("SELECT EXISTS (SELECT 1 FROM {table})")).fetch_one(&mut *tx).await.map_err(|e| err(table, &e))?;
        if present {
            return Err(err(
                table,
                &format!("the target schema {} already holds state ({table} has rows): migrate into a new schema, or drop this one first", to.schema()),
            ));
        }
    }
    let mut report = CopyReport::default();
    for (table, order, columns) in TABLES {
        let names: Vec<&str> = columns.iter().map(|(n, _)| *n).collect();
        let list = names.join(", ");
        let mut copied = 0u64;
        let mut offset = 0i64;
        loop {
            let rows = sqlx::query(&format!("SELECT {list} FROM {table} ORDER BY {order} LIMIT ?1 OFFSET ?2"))
                .bind(CHUNK)
                .bind(offset)
                .fetch_all(from.pool())
                .await
                .map_err(|e| err(table, &e))?;
            if rows.is_empty() {
                break;
            }
            offset += rows.len() as i64;
            let mut data: Vec<Column> = columns
                .iter()
                .map(|(_, kind)| match kind {
                    Int => Column::Int(Vec::with_capacity(rows.len())),
                    Text => Column::Text(Vec::with_capacity(rows.len())),
                    Bool => Column::Bool(Vec::with_capacity(rows.len())),
                    Blob => Column::Blob(Vec::with_capacity(rows.len())),
                })
                .collect();
            for row in &rows {
                for (i, column) in data.iter_mut().enumerate() {
                    let bad = |e: sqlx::Error| err(table, &format!("column {}: {e}", names[i]));
                    match column {
                        Column::Int(v) => v.push(row.try_get(i).map_err(bad)?),
                        Column::Text(v) => v.push(row.try_get(i).map_err(bad)?),
                        Column::Bool(v) => v.push(row.try_get::<Option<i64>, _>(i).map_err(bad)?.map(|n| n != 0)),
                        Column::Blob(v) => v.push(row.try_get(i).map_err(bad)?),
                    }
                }
            }
            let casts: Vec<String> = columns
                .iter()
                .enumerate()
                .map(|(i, (_, kind))| {
                    let t = match kind {
                        Int => "bigint",
                        Text => "text",
                        Bool => "boolean",
                        Blob => "bytea",
                    };
                    format!("${}::{t}[]", i + 1)
                })
                .collect();
            let sql = format!("INSERT INTO {table} ({list}) SELECT * FROM UNNEST({})", casts.join(", "));
            let mut insert = sqlx::query(&sql);
            for column in data {
                insert = match column {
                    Column::Int(v) => insert.bind(v),
                    Column::Text(v) => insert.bind(v),
                    Column::Bool(v) => insert.bind(v),
                    Column::Blob(v) => insert.bind(v),
                };
            }
            insert.execute(&mut *tx).await.map_err(|e| err(table, &e))?;
            copied += rows.len() as u64;
        }
        report.tables.push((table.to_string(), copied));
    }
    // Change numbers and ids go on after the copied ones.
    let seq: i64 = sqlx::query_scalar("SELECT value FROM api_record_seq WHERE id = 1").fetch_one(from.pool()).await.map_err(|e| err("api_record_seq", &e))?;
    sqlx::query("UPDATE api_record_seq SET value = $1 WHERE id = 1").bind(seq).execute(&mut *tx).await.map_err(|e| err("api_record_seq", &e))?;
    for table in IDENTITIES {
        sqlx::query(&format!(
            "SELECT setval(pg_get_serial_sequence('{table}', 'id'), COALESCE((SELECT MAX(id) FROM {table}), 0) + 1, false)"
        ))
        .execute(&mut *tx)
        .await
        .map_err(|e| err(table, &e))?;
    }
    tx.commit().await.map_err(|e| err("commit", &e))?;
    Ok(report)
}
