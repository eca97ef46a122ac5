//! The `sql` connector against the machine's PostgreSQL and MariaDB, each test on a database of its own:
//! incremental reads with a cursor and an overlap, staging-table writes exactly once (a retried batch, a
//! connection dropped mid-batch, a second run that lost Ferry's own state), and bad rows failing alone.

mod sqldb;

use ferry_connectors::registry;
use ferry_engine::run::NoProgress;
use ferry_engine::{BuildContext, Config, Connector, ReadItem, ReadRequest, RunOptions, WriteAction, WriteRecord, Workspace, holder_id};
use ferry_model::{Record, Stream};
use futures::StreamExt;
use serde_json::{Value, json};
use sqldb::{Server, TestDb};
use std::sync::Arc;
use std::time::Duration;

fn connector(db: &TestDb, options: Value) -> Arc<dyn Connector> {
    let mut options = options;
    options["url"] = json!(db.url);
    registry().build("sql", &options, &BuildContext::new("legacy", "/tmp")).unwrap_or_else(|e| panic!("{e}"))
}

/// Everything a read returns, in order.
async fn read_all(c: &dyn Connector, stream: Stream, checkpoint: Option<Value>, keys: Option<Vec<String>>) -> Vec<ReadItem> {
    let mut items = c.read(ReadRequest { stream: Some(stream), checkpoint, keys });
    let mut out = Vec::new();
    while let Some(item) = items.next().await {
        out.push(item.unwrap_or_else(|e| panic!("read: {e}")));
    }
    out
}

fn records(items: &[ReadItem]) -> Vec<&Value> {
    items.iter().filter_map(|i| if let ReadItem::Record(r) = i { Some(&r.data) } else { None }).collect()
}

fn last_checkpoint(items: &[ReadItem]) -> Option<Value> {
    items.iter().rev().find_map(|i| if let ReadItem::Checkpoint(c) = i { Some(c.clone()) } else { None })
}

async fn items_table(db: &TestDb) {
    let ts = db.ty("TIMESTAMP(6)", "DATETIME(6)");
    db.exec(&format!(
        "CREATE TABLE items (item_code VARCHAR(20) PRIMARY KEY, descr VARCHAR(100), sell_price NUMERIC(12,2), web {bool}, changed_at {ts});
         INSERT INTO items VALUES ('A-1', 'Spade', 19.90, {t}, '2026-03-01 10:00:00'),
                                  ('A-2', '  Rake  ', 7.50, {f}, '2026-03-01 10:05:00'),
                                  ('A-3', 'Hoe', 12.00, {t}, '2026-03-01 10:10:00'),
                                  ('A-4', 'Trowel', 4.25, {t}, NULL);",
        bool = db.ty("BOOLEAN", "BOOLEAN"),
        t = "TRUE",
        f = "FALSE",
    ))
    .await;
}

async fn incremental_reads(server: Server) {
    let db = TestDb::create(server, "read").await;
    items_table(&db).await;
    let c = connector(
        &db,
        json!({"timezone": "Australia/Sydney", "read": {"products": {
            "query": "SELECT item_code, descr, sell_price, web, changed_at FROM items WHERE item_code <> 'ZZZ';",
            "cursor": "changed_at", "overlap": 120,
            "columns": {"item_code": "sku", "descr": "name", "sell_price": "price.amount", "web": "custom.web"}}}}),
    );

    // First read: every row, as text (a boolean stays one), cut like CSV cells; the checkpoint is the
    // greatest cursor value, the row without one comes last on PostgreSQL and first on MariaDB.
    let items = read_all(c.as_ref(), Stream::Products, None, None).await;
    let rows = records(&items);
    assert_eq!(rows.len(), 4);
    let spade = rows.iter().find(|r| r["sku"] == "A-1").unwrap();
    assert_eq!(spade["price"]["amount"], json!("19.90"));
    assert_eq!(spade["custom"]["web"], json!(true));
    // 10:00 on the Sydney wall clock (daylight saving time, +11:00) is 23:00 UTC the day before.
    assert_eq!(spade["changed_at"], json!("2026-02-28T23:00:00Z"));
    assert_eq!(rows.iter().find(|r| r["sku"] == "A-2").unwrap()["name"], json!("Rake"));
    assert!(rows.iter().find(|r| r["sku"] == "A-4").unwrap().get("changed_at").is_none());
    let positions: Vec<&str> = items.iter().filter_map(|i| if let ReadItem::Record(r) = i { Some(r.position.as_str()) } else { None }).collect();
    assert!(positions.contains(&"products query row 1"), "{positions:?}");
    let checkpoint = last_checkpoint(&items).expect("a checkpoint after the rows");
    assert_eq!(checkpoint, json!({"cursor": "changed_at", "kind": "local", "value": "2026-02-28T23:10:00Z"}));
    assert!(matches!(items.last(), Some(ReadItem::Checkpoint(_))), "the checkpoint comes after every row");

    // Nothing changed: the overlap (120 s) re-reads A-3 (changed at the checkpoint) and the row without
    // a cursor value; A-1 and A-2 are outside it.
    let again = read_all(c.as_ref(), Stream::Products, Some(checkpoint.clone()), None).await;
    let mut skus: Vec<&str> = records(&again).iter().map(|r| r["sku"].as_str().unwrap()).collect();
    skus.sort();
    assert_eq!(skus, ["A-3", "A-4"]);

    // A late commit stamped 10:09 (inside the overlap) and a new change at 10:30 are both read.
    db.exec("UPDATE items SET sell_price = 8.00, changed_at = '2026-03-01 10:09:00' WHERE item_code = 'A-2';
             UPDATE items SET descr = 'Garden spade', changed_at = '2026-03-01 10:30:00' WHERE item_code = 'A-1';")
        .await;
    let changed = read_all(c.as_ref(), Stream::Products, Some(checkpoint), None).await;
    let mut skus: Vec<&str> = records(&changed).iter().map(|r| r["sku"].as_str().unwrap()).collect();
    skus.sort();
    assert_eq!(skus, ["A-1", "A-2", "A-3", "A-4"]);
    assert_eq!(last_checkpoint(&changed).unwrap()["value"], json!("2026-02-28T23:30:00Z"));

    // A targeted read (a webhook naming a SKU) returns that record only.
    let one = read_all(c.as_ref(), Stream::Products, None, Some(vec!["A-3".into()])).await;
    assert_eq!(records(&one).len(), 1);
    assert_eq!(last_checkpoint(&one), None, "a targeted read passes over rows: it must not move the checkpoint");
}

/// The other cursor kinds: an instant (timestamptz / MySQL TIMESTAMP, stored in UTC) and a row version
/// (a number bumped on every change, overlap 0); and a checkpoint stored for another cursor column.
async fn instant_and_version_cursors(server: Server) {
    let db = TestDb::create(server, "cursors").await;
    db.exec(&format!(
        "CREATE TABLE items (sku VARCHAR(20) PRIMARY KEY, name VARCHAR(40), ver BIGINT NOT NULL, stamped {ts} NULL);
         INSERT INTO items VALUES ('V-1', 'One', 1, '2026-03-01 10:00:00{z}'), ('V-2', 'Two', 2, '2026-03-01 11:00:00{z}'), ('V-3', 'Three', 3, '2026-03-01 12:00:00{z}');",
        ts = db.ty("TIMESTAMPTZ", "TIMESTAMP"),
        // In UTC whatever the server's zone (MySQL sessions of the tests run in UTC already).
        z = db.ty("+00", ""),
    ))
    .await;
    let by_version = connector(&db, json!({"read": {"products": {"table": "items", "cursor": "ver", "overlap": 0}}}));
    let by_time = connector(&db, json!({"read": {"products": {"table": "items", "cursor": "stamped", "overlap": 60}}}));
    let first = read_all(by_version.as_ref(), Stream::Products, None, None).await;
    let version_cp = last_checkpoint(&first).unwrap();
    assert_eq!(version_cp, json!({"cursor": "ver", "kind": "integer", "value": "3"}));
    let first = read_all(by_time.as_ref(), Stream::Products, None, None).await;
    let time_cp = last_checkpoint(&first).unwrap();
    assert_eq!(time_cp, json!({"cursor": "stamped", "kind": "instant", "value": "2026-03-01T12:00:00Z"}));

    db.exec(&format!("UPDATE items SET name = 'Uno', ver = 4, stamped = '2026-03-01 13:00:00{}' WHERE sku = 'V-1'", db.ty("+00", ""))).await;
    let skus = |items: &[ReadItem]| {
        let mut v: Vec<String> = records(items).iter().map(|r| r["sku"].as_str().unwrap().to_owned()).collect();
        v.sort();
        v
    };
    // `>=`: the row at the checkpoint is read again, with the changed one.
    let changed = read_all(by_version.as_ref(), Stream::Products, Some(version_cp.clone()), None).await;
    assert_eq!(skus(&changed), ["V-1", "V-3"]);
    assert_eq!(last_checkpoint(&changed).unwrap()["value"], json!("4"));
    let changed = read_all(by_time.as_ref(), Stream::Products, Some(time_cp), None).await;
    assert_eq!(skus(&changed), ["V-1", "V-3"]);
    assert_eq!(last_checkpoint(&changed).unwrap()["value"], json!("2026-03-01T13:00:00Z"));
    // A checkpoint of another column is not applied to this one: everything is read once, with a warning.
    let everything = read_all(by_time.as_ref(), Stream::Products, Some(version_cp), None).await;
    assert_eq!(skus(&everything), ["V-1", "V-2", "V-3"]);
    assert!(everything.iter().any(|i| matches!(i, ReadItem::Warning(w) if w.contains("cursor column \"ver\""))), "{everything:?}");
}

#[tokio::test]
async fn postgres_reads_from_instant_and_row_version_cursors() {
    instant_and_version_cursors(Server::Postgres).await;
}

#[tokio::test]
async fn mariadb_reads_from_instant_and_row_version_cursors() {
    instant_and_version_cursors(Server::MariaDb).await;
}

#[tokio::test]
async fn postgres_reads_incrementally_from_a_cursor_with_an_overlap() {
    incremental_reads(Server::Postgres).await;
}

#[tokio::test]
async fn mariadb_reads_incrementally_from_a_cursor_with_an_overlap() {
    incremental_reads(Server::MariaDb).await;
}

#[tokio::test]
async fn postgres_a_row_the_connector_cannot_read_fails_alone_naming_row_and_column() {
    let db = TestDb::create(Server::Postgres, "badrow").await;
    db.exec("CREATE TYPE grade AS ENUM ('new', 'used');
             CREATE TABLE items (sku TEXT, price NUMERIC, state grade, n SERIAL);
             INSERT INTO items (sku, price, state) VALUES ('A-1', 1.50, 'used'), ('A-2', 'NaN', 'new'), ('A-3', 3, NULL);")
        .await;
    let c = connector(&db, json!({"read": {"products": {"query": "SELECT sku, price AS \"price.amount\", state AS \"custom.state\" FROM items ORDER BY n"}}}));
    let items = read_all(c.as_ref(), Stream::Products, None, None).await;
    assert_eq!(records(&items).len(), 2);
    assert_eq!(records(&items)[0]["custom"]["state"], json!("used"), "an enum reads as its label");
    let (position, key, field, message) = items
        .iter()
        .find_map(|i| match i {
            ReadItem::Invalid { position, key, field, message, .. } => Some((position, key, field, message)),
            _ => None,
        })
        .expect("the NaN row is reported");
    assert_eq!(position, "products query row 2");
    assert_eq!(key.as_deref(), Some("A-2"));
    assert_eq!(field, "price.amount");
    assert!(message.contains("column \"price.amount\" cannot be read"), "{message}");
}

fn order(number: &str, skus: &[&str]) -> Value {
    let lines: Vec<Value> = skus
        .iter()
        .map(|sku| json!({"sku": sku, "name": format!("Item {sku}"), "quantity": "2", "unit_price": "11.00", "total": "22.00",
                          "taxes": [{"name": "GST", "rate": "0.1", "amount": "1.50"}, {"name": "GST", "amount": "0.50"}]}))
        .collect();
    let subtotal = 22 * skus.len();
    json!({"number": number, "placed_at": "2026-03-02T13:30:00Z", "status": "confirmed",
           "customer": {"email": "jo@example.com", "first_name": "Jo"}, "currency": "AUD", "prices_include_tax": true,
           "lines": lines, "shipping": [{"method": "Courier", "amount": "9.95"}],
           "totals": {"subtotal": format!("{subtotal}.00"), "shipping": "9.95", "discount": "0", "tax": format!("{}.00", 2 * skus.len()),
                      "total": format!("{}.95", subtotal + 9)}})
}

fn write_record(order: &Value) -> WriteRecord {
    let record = Record::parse(Stream::Orders, order.clone(), "test").unwrap_or_else(|e| panic!("{e}"));
    WriteRecord { key: record.key(), target_id: None, record, previous: None }
}

async fn staging_tables(db: &TestDb) {
    db.exec(&format!(
        "CREATE TABLE web_orders (id {serial}, order_ref VARCHAR(20) NOT NULL UNIQUE, placed {ts} NOT NULL, order_day DATE,
             email VARCHAR(80), currency CHAR(3) NOT NULL, total NUMERIC(12,2) NOT NULL CHECK (total < 10000), source VARCHAR(10),
             imported {bool} NOT NULL DEFAULT FALSE);
         CREATE TABLE web_order_lines (order_ref VARCHAR(20) NOT NULL, line_no INT NOT NULL, item VARCHAR(8) NOT NULL,
             qty NUMERIC(10,3) NOT NULL CHECK (qty < 1000), unit_price NUMERIC(12,4), tax NUMERIC(12,2), currency CHAR(3),
             PRIMARY KEY (order_ref, line_no));",
        serial = db.ty("SERIAL PRIMARY KEY", "INT AUTO_INCREMENT PRIMARY KEY"),
        ts = db.ty("TIMESTAMP", "DATETIME"),
        bool = db.ty("BOOLEAN", "BOOLEAN"),
    ))
    .await;
}

fn orders_options() -> Value {
    json!({"timezone": "Australia/Sydney", "write": {"orders": {
        "table": "web_orders", "key_column": "order_ref",
        "columns": {"placed": "placed_at", "order_day": "placed_at", "email": "customer.email", "currency": "currency",
                    "total": "totals.total", "source": {"value": "WEB"}},
        "children": [{"table": "web_order_lines", "rows": "lines", "parent_column": "order_ref",
                      "columns": {"line_no": "$index", "item": "sku", "qty": "quantity", "unit_price": "unit_price",
                                  "tax": "sum(taxes[].amount)", "currency": "$parent.currency"}}]}}})
}

async fn exactly_once_writes(server: Server) {
    let db = TestDb::create(server, "write").await;
    staging_tables(&db).await;
    let c = connector(&db, orders_options());
    assert!(c.check().await.unwrap().ok);
    assert!(!c.check_write(Stream::Orders).await.unwrap().is_empty());

    let mut too_long = order("WEB-4", &["TOO-LONG-SKU"]);
    too_long["lines"][0]["sku"] = json!("TOO-LONG-SKU");
    let mut refused_line = order("WEB-5", &["B-1", "B-2"]);
    refused_line["lines"][1]["quantity"] = json!("5000");
    refused_line["lines"][1]["unit_price"] = json!("0.01");
    refused_line["lines"][1]["total"] = json!("50.00");
    refused_line["totals"] = json!({"subtotal": "72.00", "shipping": "9.95", "discount": "0", "tax": "4.00", "total": "81.95"});
    let batch = vec![
        write_record(&order("WEB-1", &["A-1", "A-2"])),
        write_record(&order("WEB-2", &["A-3"])),
        write_record(&too_long),
        write_record(&refused_line),
        write_record(&order("WEB-3", &["A-1"])),
    ];
    let outcomes = c.write(Stream::Orders, batch.clone()).await.unwrap();
    let by_key = |key: &str| outcomes.iter().find(|o| o.key == key).unwrap().result.clone();
    for key in ["WEB-1", "WEB-2", "WEB-3"] {
        assert_eq!(by_key(key).unwrap().action, WriteAction::Created, "{key}");
    }
    // A value the column cannot hold fails its record naming field and column, before the server sees it.
    let failure = by_key("WEB-4").unwrap_err();
    assert_eq!(failure.field.as_deref(), Some("lines[0].sku"));
    assert!(failure.message.contains("order WEB-4: lines[0].sku → web_order_lines.item: is 12 characters long, the column holds 8"), "{}", failure.message);
    // A row the server refuses (a CHECK on a line) takes its whole record back: no header without lines.
    let failure = by_key("WEB-5").unwrap_err();
    assert!(failure.message.starts_with("order WEB-5: web_order_lines (rows of lines) refused it: "), "{}", failure.message);
    assert!(failure.message.contains("qty"), "the server's message names the constraint: {}", failure.message);
    assert_eq!(db.scalar(&format!("SELECT {} FROM web_orders WHERE order_ref = 'WEB-5'", db.text("COUNT(*)"))).await, "0");

    let headers = db.rows(&format!("SELECT order_ref, {}, {}, {}, source FROM web_orders ORDER BY order_ref", db.text("placed"), db.text("order_day"), db.text("total"))).await;
    assert_eq!(headers.len(), 3);
    // 13:30 UTC is 00:30 the next day in Sydney: the wall clock and the business's date.
    assert_eq!(headers[0][1].as_deref().map(|s| &s[..19]), Some("2026-03-03 00:30:00"));
    assert_eq!(headers[0][2].as_deref(), Some("2026-03-03"));
    assert_eq!(headers[0][3].as_deref(), Some("53.95"));
    assert_eq!(headers[0][4].as_deref(), Some("WEB"));
    let lines = db.rows(&format!("SELECT order_ref, {}, item, {}, {}, currency FROM web_order_lines ORDER BY order_ref, line_no", db.text("line_no"), db.text("tax"), db.text("unit_price"))).await;
    assert_eq!(lines.len(), 4);
    assert_eq!(lines[1], vec![Some("WEB-1".into()), Some("2".into()), Some("A-2".into()), Some("2.00".into()), Some("11.0000".into()), Some("AUD".into())]);

    // The same batch again, as after an answer that was lost: nothing is written twice.
    let again = c.write(Stream::Orders, batch.clone()).await.unwrap();
    for o in &again {
        if let Ok(w) = &o.result {
            assert_eq!(w.action, WriteAction::Unchanged, "{}", o.key);
        }
    }
    assert_eq!(db.scalar(&format!("SELECT {} FROM web_orders", db.text("COUNT(*)"))).await, "3");
    assert_eq!(db.scalar(&format!("SELECT {} FROM web_order_lines", db.text("COUNT(*)"))).await, "4");
    // find_by_key (what the engine asks before creating) sees exactly the written ones.
    let keys: Vec<String> = ["WEB-1", "WEB-2", "WEB-3", "WEB-4", "WEB-9"].iter().map(|s| s.to_string()).collect();
    let mut found: Vec<String> = c.find_by_key(Stream::Orders, &keys).await.unwrap().into_keys().collect();
    found.sort();
    assert_eq!(found, ["WEB-1", "WEB-2", "WEB-3"]);
}

#[tokio::test]
async fn postgres_orders_land_in_staging_tables_once_even_when_the_batch_is_sent_again() {
    exactly_once_writes(Server::Postgres).await;
}

#[tokio::test]
async fn mariadb_orders_land_in_staging_tables_once_even_when_the_batch_is_sent_again() {
    exactly_once_writes(Server::MariaDb).await;
}

/// A JSONL orders file → the staging tables through the engine, with the connection dropped while the
/// second batch is being written: the engine retries the batch (looking its keys up first) and every order
/// lands once. A second run with a fresh state store (Ferry's own commit lost) creates nothing.
async fn dropped_connection(server: Server) {
    let db = TestDb::create(server, "drop").await;
    staging_tables(&db).await;
    // The first insert of WEB-13's lines sleeps (once: sequences are not rolled back), so the test can cut
    // the connection while the batch's transaction is open.
    match server {
        Server::Postgres => {
            db.exec(
                "CREATE SEQUENCE fault_once;
                 CREATE FUNCTION hold_once() RETURNS trigger LANGUAGE plpgsql AS $$
                 BEGIN IF NEW.order_ref = 'WEB-13' AND nextval('fault_once') = 1 THEN PERFORM pg_sleep(30); END IF; RETURN NEW; END $$;
                 CREATE TRIGGER hold_once BEFORE INSERT ON web_order_lines FOR EACH ROW EXECUTE FUNCTION hold_once();",
            )
            .await
        }
        Server::MariaDb => {
            db.exec(
                "CREATE SEQUENCE fault_once;
                 CREATE TRIGGER hold_once BEFORE INSERT ON web_order_lines FOR EACH ROW
                 BEGIN IF NEW.order_ref = 'WEB-13' AND NEXTVAL(fault_once) = 1 THEN DO SLEEP(30); END IF; END;",
            )
            .await
        }
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("in")).unwrap();
    let orders: String = (10..16).map(|n| format!("{}\n", order(&format!("WEB-{n}"), &["A-1", "A-2"]))).collect();
    std::fs::write(dir.path().join("in/orders.jsonl"), orders).unwrap();
    let config = |state: &str| {
        let text = format!(
            r#"
[state]
path = "{state}"
[connections.shop]
type = "jsonl"
path = "in"
[connections.legacy]
type = "sql"
url = "{url}"
timezone = "Australia/Sydney"
[connections.legacy.write.orders]
table = "web_orders"
key_column = "order_ref"
columns = {{ placed = "placed_at", currency = "currency", total = "totals.total" }}
[[connections.legacy.write.orders.children]]
table = "web_order_lines"
rows = "lines"
parent_column = "order_ref"
columns = {{ line_no = "$index", item = "sku", qty = "quantity" }}
[flows.orders]
source = "shop"
target = "legacy"
stream = "orders"
batch_size = 2
"#,
            state = dir.path().join(state).display(),
            url = db.url,
        );
        Config::parse(&text, dir.path().to_owned()).unwrap_or_else(|e| panic!("{e}\n{text}"))
    };
    let ws = Workspace::open(config("state.db"), registry()).await.unwrap();
    let killer = {
        let probe = TestDb { server, name: db.name.clone(), url: db.url.clone() };
        tokio::spawn(async move {
            let mut killed = 0;
            for _ in 0..200 {
                killed += probe.kill_sleeping_sessions().await;
                if killed > 0 {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            // Not dropped here: the test's own TestDb drops the database.
            std::mem::forget(probe);
            killed
        })
    };
    let report = ws.sync("orders", &RunOptions { holder: holder_id(), ..Default::default() }, &NoProgress).await.unwrap();
    assert_eq!(killer.await.unwrap(), 1, "the held write was cut off");
    assert!(report.aborted.is_none(), "{report:#?}");
    assert_eq!(report.counts.created, 6, "{report:#?}");
    assert_eq!(report.counts.failed, 0, "{report:#?}");
    let count = |table: &str| format!("SELECT {} FROM {table}", db.text("COUNT(*)"));
    assert_eq!(db.scalar(&count("web_orders")).await, "6");
    assert_eq!(db.scalar(&count("web_order_lines")).await, "12");
    let per_order = db.rows(&format!("SELECT order_ref, {} FROM web_order_lines GROUP BY order_ref HAVING COUNT(*) <> 2", db.text("COUNT(*)"))).await;
    assert!(per_order.is_empty(), "every order has its two lines once: {per_order:?}");

    // Ferry's state lost (a fresh store): every order is found by key, none is created again.
    let fresh = Workspace::open(config("state-2.db"), registry()).await.unwrap();
    let report = fresh.sync("orders", &RunOptions { holder: holder_id(), ..Default::default() }, &NoProgress).await.unwrap();
    assert_eq!(report.counts.created, 0, "{report:#?}");
    assert_eq!(db.scalar(&count("web_orders")).await, "6");
    drop((ws, fresh));
}

#[tokio::test]
async fn postgres_a_connection_dropped_mid_batch_still_writes_every_order_once() {
    dropped_connection(Server::Postgres).await;
}

#[tokio::test]
async fn mariadb_a_connection_dropped_mid_batch_still_writes_every_order_once() {
    dropped_connection(Server::MariaDb).await;
}

/// Products from a legacy table into a JSONL shop through the engine: a row with a bad price fails alone
/// naming record and field, the next run reads from the cursor and writes only what changed.
async fn engine_products(server: Server) {
    let db = TestDb::create(server, "flow").await;
    items_table(&db).await;
    db.exec("INSERT INTO items VALUES ('A-5', 'Broken', NULL, TRUE, '2026-03-01 10:20:00')").await;
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        r#"
[state]
path = "{state}"
[connections.legacy]
type = "sql"
url = "{url}"
[connections.legacy.read.products]
table = "items"
cursor = "changed_at"
columns = {{ item_code = "sku", descr = "name", sell_price = "price.amount" }}
[connections.shop]
type = "jsonl"
path = "shop"
[flows.products]
source = "legacy"
target = "shop"
stream = "products"
[flows.products.mapping]
drop = ["web", "changed_at"]
set = {{ "price.currency" = "AUD", "price.tax_inclusive" = true }}
"#,
        state = dir.path().join("state.db").display(),
        url = db.url,
    );
    let ws = Workspace::open(Config::parse(&text, dir.path().to_owned()).unwrap(), registry()).await.unwrap();
    let run = || async { ws.sync("products", &RunOptions { holder: holder_id(), ..Default::default() }, &NoProgress).await.unwrap() };
    let first = run().await;
    assert_eq!(first.counts.created, 4, "{first:#?}");
    assert_eq!(first.counts.failed, 1, "{first:#?}");
    let failure = &first.failures[0];
    assert_eq!(failure.key, "A-5");
    assert_eq!(failure.field.as_deref(), Some("price.amount"), "{failure:?}");

    let second = run().await;
    assert_eq!((second.counts.created, second.counts.updated), (0, 0), "{second:#?}");
    db.exec("UPDATE items SET sell_price = 21.00, changed_at = '2026-03-01 11:00:00' WHERE item_code = 'A-1'").await;
    let third = run().await;
    assert_eq!(third.counts.updated, 1, "{third:#?}");
    assert!(third.counts.read < 5, "read from the cursor, not everything: {third:#?}");
    drop(ws);
}

#[tokio::test]
async fn postgres_products_flow_through_the_engine_from_the_cursor() {
    engine_products(Server::Postgres).await;
}

#[tokio::test]
async fn mariadb_products_flow_through_the_engine_from_the_cursor() {
    engine_products(Server::MariaDb).await;
}

/// Customers are upserted: a changed customer updates its row and replaces its child rows, in one
/// transaction.
async fn customers_upsert(server: Server) {
    let db = TestDb::create(server, "upsert").await;
    db.exec(
        "CREATE TABLE stg_customers (code VARCHAR(20) PRIMARY KEY, email VARCHAR(80), company VARCHAR(80));
         CREATE TABLE stg_addresses (code VARCHAR(20) NOT NULL, seq INT NOT NULL, street VARCHAR(80), city VARCHAR(40), PRIMARY KEY (code, seq));",
    )
    .await;
    let c = connector(
        &db,
        json!({"write": {"customers": {"table": "stg_customers", "key_column": "code", "columns": {"email": "email", "company": "company"},
            "children": [{"table": "stg_addresses", "rows": "addresses", "parent_column": "code",
                          "columns": {"seq": "$index", "street": "street[0]", "city": "city"}}]}}}),
    );
    assert_eq!(c.describe().stream(Stream::Customers).unwrap().write, Some(ferry_engine::WriteMode::Upsert));
    let customer = |email: &str, cities: &[&str]| {
        let addresses: Vec<Value> = cities.iter().map(|c| json!({"street": [format!("1 {c} St")], "city": c})).collect();
        let record = Record::parse(Stream::Customers, json!({"code": "C-1", "email": email, "company": "Acme", "addresses": addresses}), "t").unwrap();
        WriteRecord { key: "C-1".into(), target_id: None, record, previous: None }
    };
    let first = c.write(Stream::Customers, vec![customer("a@acme.test", &["Sydney", "Perth"])]).await.unwrap();
    assert_eq!(first[0].result.as_ref().unwrap().action, WriteAction::Created);
    let second = c.write(Stream::Customers, vec![customer("b@acme.test", &["Hobart"])]).await.unwrap();
    assert_eq!(second[0].result.as_ref().unwrap().action, WriteAction::Updated);
    assert_eq!(db.scalar("SELECT email FROM stg_customers WHERE code = 'C-1'").await, "b@acme.test");
    let addresses = db.rows(&format!("SELECT {}, street, city FROM stg_addresses ORDER BY seq", db.text("seq"))).await;
    assert_eq!(addresses, vec![vec![Some("1".into()), Some("1 Hobart St".into()), Some("Hobart".into())]]);
}

#[tokio::test]
async fn postgres_customers_are_upserted_with_their_addresses_replaced() {
    customers_upsert(Server::Postgres).await;
}

#[tokio::test]
async fn mariadb_customers_are_upserted_with_their_addresses_replaced() {
    customers_upsert(Server::MariaDb).await;
}

/// examples/sql-legacy as shipped (its schema and ferry.toml, the URL put in place of `url_env`):
/// products from the view into the JSONL shop, the shop's orders into the staging tables, once.
async fn the_example(server: Server) {
    let example = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/sql-legacy");
    let db = TestDb::create(server, "example").await;
    let schema = match server {
        Server::Postgres => "schema.postgres.sql",
        Server::MariaDb => "schema.mysql.sql",
    };
    db.exec(&std::fs::read_to_string(example.join(schema)).unwrap()).await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("shop")).unwrap();
    std::fs::copy(example.join("shop/orders.jsonl"), dir.path().join("shop/orders.jsonl")).unwrap();
    let text = std::fs::read_to_string(example.join("ferry.toml")).unwrap();
    assert!(text.contains("url_env = \"LEGACY_DB_URL\""));
    let text = text.replace("url_env = \"LEGACY_DB_URL\"", &format!("url = \"{}\"", db.url));
    let ws = Workspace::open(Config::parse(&text, dir.path().to_owned()).unwrap_or_else(|e| panic!("{e}")), registry()).await.unwrap();
    let options = RunOptions { holder: holder_id(), ..Default::default() };
    for round in 0..2 {
        let products = ws.sync("products", &options, &NoProgress).await.unwrap();
        let orders = ws.sync("orders", &options, &NoProgress).await.unwrap();
        let expected = if round == 0 { (3, 2) } else { (0, 0) };
        assert_eq!((products.counts.created, orders.counts.created), expected, "round {round}: {products:#?} {orders:#?}");
        assert_eq!(products.counts.failed + orders.counts.failed, 0, "{products:#?} {orders:#?}");
    }
    let shop = std::fs::read_to_string(dir.path().join("shop/products.jsonl")).unwrap();
    assert_eq!(shop.lines().count(), 3, "INT-9999 is not in the web view: {shop}");
    let headers = db.rows(&format!("SELECT ordref, {}, shipcity, {}, status FROM webord_hdr ORDER BY ordref", db.text("orddate"), db.text("total"))).await;
    assert_eq!(headers.len(), 2);
    assert_eq!(headers[0][1].as_deref().map(|t| &t[..16]), Some("2026-03-03 00:30"), "Sydney's wall clock");
    assert_eq!(headers[0][2].as_deref(), Some("Katoomba"));
    assert_eq!(headers[1][3].as_deref(), Some("214.00"));
    assert_eq!(headers[1][4].as_deref(), Some("N"), "the column default is left to the server");
    let lines = db.rows(&format!("SELECT ordref, {}, itemno, {} FROM webord_lin ORDER BY ordref, lineno", db.text("lineno"), db.text("gst"))).await;
    assert_eq!(lines.len(), 3);
    assert_eq!(lines[1], vec![Some("WEB-5001".into()), Some("2".into()), Some("RKE-2001".into()), Some("4.45".into())]);
}

#[tokio::test]
async fn postgres_runs_the_sql_legacy_example() {
    the_example(Server::Postgres).await;
}

#[tokio::test]
async fn mariadb_runs_the_sql_legacy_example() {
    the_example(Server::MariaDb).await;
}

/// Two writers sending the same orders at the same time (two Ferry processes, or a retry racing a slow
/// first attempt): every order is created by exactly one of them, the other finds it.
async fn concurrent_writers(server: Server) {
    let db = TestDb::create(server, "race").await;
    staging_tables(&db).await;
    let batch: Vec<WriteRecord> = (0..40).map(|n| write_record(&order(&format!("WEB-{n}"), &["A-1", "A-2"]))).collect();
    let (a, b) = (connector(&db, orders_options()), connector(&db, orders_options()));
    let (ra, rb) = tokio::join!(a.write(Stream::Orders, batch.clone()), b.write(Stream::Orders, batch.clone()));
    let mut created = 0;
    for outcome in ra.unwrap().into_iter().chain(rb.unwrap()) {
        let written = outcome.result.unwrap_or_else(|f| panic!("{}: {f:?}", outcome.key));
        match written.action {
            WriteAction::Created => created += 1,
            WriteAction::Unchanged => {}
            other => panic!("{}: {other:?}", outcome.key),
        }
    }
    assert_eq!(created, 40, "each order created by one writer");
    assert_eq!(db.scalar(&format!("SELECT {} FROM web_orders", db.text("COUNT(*)"))).await, "40");
    assert_eq!(db.scalar(&format!("SELECT {} FROM web_order_lines", db.text("COUNT(*)"))).await, "80");
}

#[tokio::test]
async fn postgres_two_writers_racing_create_each_order_once() {
    concurrent_writers(Server::Postgres).await;
}

#[tokio::test]
async fn mariadb_two_writers_racing_create_each_order_once() {
    concurrent_writers(Server::MariaDb).await;
}

/// A staging table that does not fit the config is refused before anything is written, naming table and
/// column; once the table is fixed, the same connection writes (a refusal is not remembered).
async fn tables_checked_against_the_config(server: Server) {
    let db = TestDb::create(server, "fit").await;
    db.exec("CREATE TABLE stg (ref VARCHAR(20) NOT NULL, total NUMERIC(12,2), note VARCHAR(10) NOT NULL)").await;
    let c = connector(&db, json!({"write": {"orders": {"table": "stg", "key_column": "ref", "columns": {"total": "totals.total", "amount": "totals.tax"}}}}));
    let err = |r: Result<Vec<String>, ferry_engine::ConnectorError>| r.expect_err("refused").to_string();
    let message = err(c.check_write(Stream::Orders).await);
    assert!(message.contains("table stg has no column \"amount\"; its columns are note, ref, total"), "{message}");
    let c = connector(&db, json!({"write": {"orders": {"table": "stg", "key_column": "ref", "columns": {"total": "totals.total"}}}}));
    let message = err(c.check_write(Stream::Orders).await);
    assert!(message.contains("column(s) note are NOT NULL without a default"), "{message}");
    let c = connector(&db, json!({"write": {"orders": {"table": "stg", "key_column": "ref", "columns": {"total": "totals.total", "note": {"value": "web"}}}}}));
    let message = err(c.check_write(Stream::Orders).await);
    assert!(message.contains("unique index on the key column stg.ref"), "{message}");
    let message = connector(&db, json!({"write": {"orders": {"table": "nowhere", "key_column": "ref", "columns": {}}}})).check().await.unwrap();
    assert!(!message.ok && message.details.iter().any(|d| d.contains("table nowhere does not exist")), "{message:?}");

    db.exec("CREATE UNIQUE INDEX stg_ref ON stg (ref)").await;
    assert!(c.check_write(Stream::Orders).await.is_ok());
    let outcomes = c.write(Stream::Orders, vec![write_record(&order("WEB-1", &["A-1"]))]).await.unwrap();
    assert_eq!(outcomes[0].result.as_ref().unwrap().action, WriteAction::Created);
    assert_eq!(db.scalar("SELECT note FROM stg").await, "web");
}

#[tokio::test]
async fn postgres_a_staging_table_that_does_not_fit_is_refused_naming_table_and_column() {
    tables_checked_against_the_config(Server::Postgres).await;
}

#[tokio::test]
async fn mariadb_a_staging_table_that_does_not_fit_is_refused_naming_table_and_column() {
    tables_checked_against_the_config(Server::MariaDb).await;
}
