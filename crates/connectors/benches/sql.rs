//! `sql` connector throughput against the machine's PostgreSQL and MariaDB (a database of its own each,
//! dropped afterwards): a full read of 100,000 products (rows decoded, nested like CSV rows, parsed into
//! canonical products as the engine does next), an incremental read that finds nothing new, and 1,000
//! orders of 3 lines written into staging tables (header + lines per order in one transaction, looked up
//! by key first), then the same 1,000 sent again (all found, none written twice).
//!
//!     cargo bench -p ferry-connectors --features sql --bench sql
//!     cargo bench --profile dev -p ferry-connectors --features sql --bench sql   # without the release build
//!
//! Admin URLs as for the live tests: FERRY_TEST_POSTGRES_URL, FERRY_TEST_MYSQL_URL.

#[path = "../tests/sqldb/mod.rs"]
mod sqldb;

use ferry_engine::{BuildContext, Connector, ReadItem, ReadRequest, WriteAction, WriteRecord};
use ferry_model::{Record, Stream};
use futures::StreamExt;
use serde_json::{Value, json};
use sqldb::{Server, TestDb};
use std::sync::Arc;
use std::time::Instant;

const PRODUCTS: usize = 100_000;
const ORDERS: usize = 1_000;

fn connector(db: &TestDb) -> Arc<dyn Connector> {
    let options = json!({
        "url": db.url,
        "read": {"products": {"table": "items", "cursor": "changed_at",
                 "columns": {"item_code": "sku", "descr": "name", "brand": "brand", "sell_price": "price.amount",
                             "currency": "price.currency", "incl_tax": "price.tax_inclusive", "changed_at": "updated_at"}}},
        "write": {"orders": {"table": "web_orders", "key_column": "order_ref",
                  "columns": {"placed": "placed_at", "email": "customer.email", "currency": "currency", "shipping": "totals.shipping",
                              "tax": "totals.tax", "total": "totals.total"},
                  "children": [{"table": "web_order_lines", "rows": "lines", "parent_column": "order_ref",
                                "columns": {"line_no": "$index", "item": "sku", "qty": "quantity", "unit_price": "unit_price",
                                            "tax": "sum(taxes[].amount)", "line_total": "total"}}]}}
    });
    ferry_connectors::registry().build("sql", &options, &BuildContext::new("bench", "/tmp")).unwrap()
}

async fn setup(db: &TestDb) {
    let (ts, series) = match db.server {
        Server::Postgres => ("TIMESTAMP", "generate_series(1, 100000) AS s(seq)"),
        Server::MariaDb => ("DATETIME", "seq_1_to_100000 AS s"),
    };
    let minutes = match db.server {
        Server::Postgres => "TIMESTAMP '2026-01-01 00:00:00' + seq * INTERVAL '1 second'",
        Server::MariaDb => "TIMESTAMP '2026-01-01 00:00:00' + INTERVAL seq SECOND",
    };
    let code = match db.server {
        Server::Postgres => "'BENCH-' || lpad(CAST(seq AS TEXT), 6, '0')",
        Server::MariaDb => "CONCAT('BENCH-', LPAD(seq, 6, '0'))",
    };
    let name = match db.server {
        Server::Postgres => "'Bench product ' || seq",
        Server::MariaDb => "CONCAT('Bench product ', seq)",
    };
    db.exec(&format!(
        "CREATE TABLE items (item_code VARCHAR(20) PRIMARY KEY, descr VARCHAR(100), brand VARCHAR(40), sell_price NUMERIC(12,2),
             currency CHAR(3), incl_tax BOOLEAN, changed_at {ts});
         INSERT INTO items SELECT {code}, {name}, 'Cyclone', 5 + MOD(seq, 90) + 0.95, 'AUD', TRUE, {minutes} FROM {series};
         CREATE TABLE web_orders (order_ref VARCHAR(20) NOT NULL UNIQUE, placed {ts} NOT NULL, email VARCHAR(80), currency CHAR(3),
             shipping NUMERIC(12,2), tax NUMERIC(12,2), total NUMERIC(12,2));
         CREATE TABLE web_order_lines (order_ref VARCHAR(20) NOT NULL, line_no INT NOT NULL, item VARCHAR(20), qty NUMERIC(10,3),
             unit_price NUMERIC(12,4), tax NUMERIC(12,2), line_total NUMERIC(12,2), PRIMARY KEY (order_ref, line_no));"
    ))
    .await;
    assert_eq!(db.scalar(&format!("SELECT {} FROM items", db.text("COUNT(*)"))).await, PRODUCTS.to_string());
}

fn orders() -> Vec<WriteRecord> {
    (0..ORDERS)
        .map(|n| {
            let lines: Vec<Value> = (0..3)
                .map(|l| json!({"sku": format!("BENCH-{:06}", 1 + (n * 3 + l) % PRODUCTS), "quantity": "2", "unit_price": "11.00", "total": "22.00",
                                "taxes": [{"name": "GST", "rate": "0.1", "amount": "2.00"}]}))
                .collect();
            let order = json!({"number": format!("BENCH-WEB-{n:05}"), "placed_at": "2026-03-02T13:30:00Z", "status": "confirmed",
                "customer": {"email": format!("buyer{n}@example.com")}, "currency": "AUD", "prices_include_tax": true, "lines": lines,
                "shipping": [{"method": "Courier", "amount": "9.95"}],
                "totals": {"subtotal": "66.00", "shipping": "9.95", "discount": "0", "tax": "6.00", "total": "75.95"}});
            let record = Record::parse(Stream::Orders, order, "bench").unwrap();
            WriteRecord { key: record.key(), target_id: None, record, previous: None }
        })
        .collect()
}

/// Peak resident set of this process so far, in MiB (Linux).
fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("VmHWM:")).and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok()))
        .map(|kb| kb / 1024.0)
        .unwrap_or(0.0)
}

async fn read(c: &dyn Connector, checkpoint: Option<Value>) -> (usize, Option<Value>) {
    let mut records = 0;
    let mut last = None;
    let mut items = c.read(ReadRequest { stream: Some(Stream::Products), checkpoint, keys: None });
    while let Some(item) = items.next().await {
        match item.unwrap() {
            ReadItem::Record(r) => {
                // What the engine does next: parse and validate the canonical record.
                Record::parse(Stream::Products, r.data, &r.position).unwrap();
                records += 1;
            }
            ReadItem::Checkpoint(cp) => last = Some(cp),
            ReadItem::Invalid { message, .. } => panic!("{message}"),
            ReadItem::Warning(_) => {}
        }
    }
    (records, last)
}

async fn bench(server: Server) {
    let db = TestDb::create(server, "bench").await;
    let started = Instant::now();
    setup(&db).await;
    println!("{server:?}: setup {:.1} s", started.elapsed().as_secs_f64());
    let c = connector(&db);

    let started = Instant::now();
    let (n, checkpoint) = read(c.as_ref(), None).await;
    let wall = started.elapsed().as_secs_f64();
    assert_eq!(n, PRODUCTS);
    println!("{server:?}: full read of {n} products in {wall:.2} s = {:.0} records/s (peak RSS so far {:.0} MiB)", n as f64 / wall, peak_rss_mib());

    let started = Instant::now();
    let (n, _) = read(c.as_ref(), checkpoint).await;
    println!("{server:?}: incremental read from the checkpoint: {n} records (the overlap) in {:.3} s", started.elapsed().as_secs_f64());

    let batch_size = c.describe().batch_size;
    let all = orders();
    let started = Instant::now();
    let mut created = 0;
    for chunk in all.chunks(batch_size) {
        for o in c.write(Stream::Orders, chunk.to_vec()).await.unwrap() {
            created += usize::from(o.result.unwrap().action == WriteAction::Created);
        }
    }
    let wall = started.elapsed().as_secs_f64();
    assert_eq!(created, ORDERS);
    println!("{server:?}: wrote {ORDERS} orders (3 lines each) in {wall:.2} s = {:.0} orders/s (batches of {batch_size})", ORDERS as f64 / wall);

    let started = Instant::now();
    let keys: Vec<String> = all.iter().map(|w| w.key.clone()).collect();
    let found = c.find_by_key(Stream::Orders, &keys).await.unwrap().len();
    let mut unchanged = 0;
    for chunk in all.chunks(batch_size) {
        for o in c.write(Stream::Orders, chunk.to_vec()).await.unwrap() {
            unchanged += usize::from(o.result.unwrap().action == WriteAction::Unchanged);
        }
    }
    let wall = started.elapsed().as_secs_f64();
    assert_eq!((found, unchanged), (ORDERS, ORDERS));
    assert_eq!(db.scalar(&format!("SELECT {} FROM web_order_lines", db.text("COUNT(*)"))).await, (3 * ORDERS).to_string());
    println!("{server:?}: the same {ORDERS} orders again (find_by_key + write): all found, none written, in {wall:.2} s");
}

#[tokio::main]
async fn main() {
    bench(Server::Postgres).await;
    bench(Server::MariaDb).await;
    println!("peak RSS {:.0} MiB", peak_rss_mib());
}
