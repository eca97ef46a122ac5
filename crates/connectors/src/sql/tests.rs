//! Config validation and the SQL the connector generates (live behaviour: tests/sql_live.rs).

use super::ident::Dialect;
use super::read::{Checkpoint, CursorKind, ReadSpec, Source, read_sql};
use super::*;
use serde_json::json;

fn build(options: serde_json::Value) -> Result<Arc<dyn Connector>, ConnectorError> {
    SqlFactory.build(&options, &BuildContext::new("legacy", "/tmp"))
}

fn build_err(options: serde_json::Value) -> String {
    match build(options) {
        Ok(_) => panic!("expected a config error"),
        Err(e) => e.to_string(),
    }
}

fn orders_write() -> serde_json::Value {
    json!({"table": "web_orders", "key_column": "order_ref", "columns": {"placed": "placed_at", "total": "totals.total"},
        "children": [{"table": "web_order_lines", "rows": "lines", "parent_column": "order_ref",
                      "columns": {"line_no": "$index", "item": "sku", "tax": "sum(taxes[].amount)"}}]})
}

#[tokio::test]
async fn a_valid_config_describes_its_streams_with_their_modes() {
    let c = build(json!({"url": "postgres://ferry@127.0.0.1:5432/legacy",
        "read": {"products": {"table": "v_products", "cursor": "changed_at"}, "customers": {"query": "SELECT * FROM debtors;"}},
        "write": {"orders": orders_write(), "customers": {"table": "stg_customers", "key_column": "code", "columns": {"email": "email"}}}}))
    .unwrap();
    let d = c.describe();
    let cap = |s: Stream| d.stream(s).cloned().unwrap();
    assert_eq!(cap(Stream::Products).read, Some(ReadMode::Incremental));
    assert_eq!(cap(Stream::Customers).read, Some(ReadMode::Snapshot));
    assert_eq!(cap(Stream::Customers).write, Some(WriteMode::Upsert));
    assert_eq!(cap(Stream::Orders).write, Some(WriteMode::CreateOnce));
    assert!(cap(Stream::Orders).find_by_key);
    assert!(d.stream(Stream::Stock).is_none());
    assert_eq!(c.location(Stream::Products).unwrap(), "sql postgres://***@127.0.0.1:5432/legacy v_products");
}

#[test]
fn bad_configs_are_refused_naming_the_option() {
    let url = "mysql://root@127.0.0.1:3306/legacy";
    assert!(build_err(json!({"read": {"products": {"table": "t"}}})).contains("option url: is required"));
    assert!(build_err(json!({"url": "sqlite://x.db", "read": {"products": {"table": "t"}}})).contains("postgres://, mysql://"));
    assert!(build_err(json!({"url": url})).contains("at least one read"));
    assert!(build_err(json!({"url": url, "read": {"widgets": {"table": "t"}}})).contains("read.widgets"));
    assert!(build_err(json!({"url": url, "read": {"products": {"table": "t", "query": "SELECT 1"}}})).contains("exactly one of query"));
    assert!(build_err(json!({"url": url, "read": {"products": {"table": "t", "overlap": 60}}})).contains("set cursor too"));
    assert!(build_err(json!({"url": url, "read": {"products": {"table": "a.b.c"}}})).contains("schema.table"));
    assert!(build_err(json!({"url": url, "timezone": "Mars/Base", "read": {"products": {"table": "t"}}})).contains("IANA"));
    let mut w = orders_write();
    w["columns"]["order_ref"] = json!("customer.email");
    assert!(build_err(json!({"url": url, "write": {"orders": w}})).contains("holds the record's key"));
    let mut w = orders_write();
    w["columns"]["line"] = json!("$index");
    assert!(build_err(json!({"url": url, "write": {"orders": w}})).contains("a header has none"));
    let mut w = orders_write();
    w["children"][0]["columns"]["item"] = json!("sku; DROP TABLE web_orders");
    assert!(build_err(json!({"url": url, "write": {"orders": w}})).contains("not a field name"));
    let mut w = orders_write();
    w["columns"]["bad\u{1}col"] = json!("number");
    assert!(build_err(json!({"url": url, "write": {"orders": w}})).contains("control character"));
}

#[test]
fn the_url_never_reaches_messages_with_its_password() {
    let c = build(json!({"url": "postgres://ferry:hunter2@db.example:5432/legacy?password=hunter2", "read": {"products": {"table": "t"}}})).unwrap();
    let location = c.location(Stream::Products).unwrap();
    assert!(!location.contains("hunter2"), "{location}");
    assert!(location.contains("db.example:5432/legacy"));
}

#[test]
fn incremental_reads_start_at_the_checkpoint_and_keep_rows_without_a_cursor_value() {
    let spec = ReadSpec { source: Source::Query("SELECT code AS sku FROM items".into()), cursor: Some("changed at".into()), overlap: None, renames: HashMap::new() };
    let cp = Checkpoint { cursor: "changed at".into(), kind: CursorKind::Instant, value: "2026-01-01T00:00:00Z".into() };
    assert_eq!(read_sql(&spec, Dialect::Postgres, None), "SELECT * FROM (SELECT code AS sku FROM items) AS ferry_source ORDER BY \"changed at\"");
    assert_eq!(
        read_sql(&spec, Dialect::MySql, Some(&cp)),
        "SELECT * FROM (SELECT code AS sku FROM items) AS ferry_source WHERE (`changed at` >= ? OR `changed at` IS NULL) ORDER BY `changed at`"
    );
    let table = ReadSpec { source: Source::Table(TableName::parse("erp.items").unwrap()), cursor: None, overlap: None, renames: HashMap::new() };
    assert_eq!(read_sql(&table, Dialect::Postgres, Some(&cp)), "SELECT * FROM \"erp\".\"items\"");
}
