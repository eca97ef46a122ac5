//! Tryton connector throughput against the live test server (scripts/peers/tryton/up.sh, port 18000):
//! a full read of 10,000 products and an import of 1,000 orders, with the split between time spent
//! waiting on Tryton (HTTP round trips) and Ferry's own work.
//!
//!     cargo bench -p ferry-connectors --features tryton --bench tryton
//!
//! The 10,000 `BENCH-*` products are created once and reused on later runs; orders get fresh numbers.

#[path = "../tests/support/mod.rs"]
mod support;

use chrono::Utc;
use ferry_connectors::tryton::Tryton;
use ferry_engine::{Connector, ReadItem, ReadRequest, WriteRecord};
use ferry_model::{Record, Stream};
use futures::StreamExt;
use serde_json::{Value, json};
use std::time::{Duration, Instant};
use support::{Setup, dec, none};

const PRODUCTS: usize = 10_000;
const ORDERS: usize = 1_000;

fn waited(t: &Tryton) -> (u64, Duration) {
    t.rpc().stats.snapshot()
}

fn report(what: &str, n: usize, wall: Duration, calls: u64, wait: Duration) {
    let own = wall.saturating_sub(wait);
    println!(
        "{what}: {n} records in {:.2} s = {:.0} records/s; {calls} RPC calls; waiting on Tryton {:.2} s ({:.0} %), Ferry's own work {:.2} s ({:.0} %)",
        wall.as_secs_f64(),
        n as f64 / wall.as_secs_f64(),
        wait.as_secs_f64(),
        100.0 * wait.as_secs_f64() / wall.as_secs_f64(),
        own.as_secs_f64(),
        100.0 * own.as_secs_f64() / wall.as_secs_f64(),
    );
}

#[tokio::main]
async fn main() {
    let t = support::tryton(json!({"page_size": 500, "order_state": "quotation", "batch_size": 50}));
    let s = Setup(&t);

    // --- data: 10,000 products (20 templates per create call: larger batches overflow the SQLite parser in Tryton's checks), once
    let have = t.rpc().search("product.product", json!([["code", "like", "BENCH-%"]]), 0, None, Value::Null, &none()).await.unwrap().len();
    if have < PRODUCTS {
        let started = Instant::now();
        let unit = s.unit().await;
        let goods = s.id("product.category", json!([["name", "=", "Goods"], ["accounting", "=", true]])).await;
        let mut i = have;
        while i < PRODUCTS {
            let chunk: Vec<Value> = (i..(i + 20).min(PRODUCTS))
                .map(|n| {
                    json!({"name": format!("Bench product {n}"), "code": format!("BENCH-{n:05}"), "type": "goods", "default_uom": unit,
                        "salable": true, "sale_uom": unit, "list_price": dec(&format!("{}.95", 5 + n % 90)), "account_category": goods,
                        "products": [["create", [{"cost_price": dec("2.50")}]]]})
                })
                .collect();
            i += chunk.len();
            t.rpc().create("product.template", chunk, &none()).await.unwrap();
        }
        println!("setup: created {} products in {:.1} s", PRODUCTS - have, started.elapsed().as_secs_f64());
    }

    // --- read every product (all of them: the 10,000 bench products and whatever the tests left)
    let (c0, w0) = waited(&t);
    let started = Instant::now();
    let mut records = 0usize;
    let mut stream = t.read(ReadRequest { stream: Some(Stream::Products), checkpoint: None, keys: None });
    while let Some(item) = stream.next().await {
        match item.unwrap() {
            ReadItem::Record(r) => {
                // what the engine does next: parse + validate the canonical record
                Record::parse(Stream::Products, r.data, &r.position).unwrap();
                records += 1;
            }
            ReadItem::Invalid { .. } | ReadItem::Checkpoint(_) | ReadItem::Warning(_) => {}
        }
    }
    drop(stream);
    let (c1, w1) = waited(&t);
    assert!(records >= PRODUCTS, "read {records} products");
    report("read products", records, started.elapsed(), c1 - c0, w1 - w0);

    // --- import 1,000 orders (2 product lines + freight + GST each) in batches of 50
    let run = support::uniq();
    let batch_size = t.describe().batch_size;
    let orders: Vec<WriteRecord> = (0..ORDERS)
        .map(|n| {
            let a = format!("BENCH-{:05}", n % PRODUCTS);
            let b = format!("BENCH-{:05}", (n * 7 + 3) % PRODUCTS);
            let o = json!({
                "number": format!("BENCH-{run}-{n:04}"), "placed_at": Utc::now(), "currency": "AUD", "prices_include_tax": false,
                "lines": [
                    {"sku": a, "quantity": "2", "unit_price": "10.00", "total": "20.00"},
                    {"sku": b, "quantity": "1", "unit_price": "5.50", "total": "5.50"}],
                "shipping": [{"method": "Standard", "amount": "8.00"}],
                "billing_address": {"street": ["1 Bench St"], "city": "Perth", "postcode": "6000", "country": "AU"},
                "totals": {"subtotal": "25.50", "shipping": "8.00", "tax": "3.35", "total": "36.85"},
            });
            let record = Record::parse(Stream::Orders, o, "bench").unwrap();
            WriteRecord { key: record.key(), target_id: None, record, previous: None }
        })
        .collect();
    let (c0, w0) = waited(&t);
    let started = Instant::now();
    let mut created = 0;
    let mut batches = orders.into_iter().peekable();
    while batches.peek().is_some() {
        let batch: Vec<WriteRecord> = batches.by_ref().take(batch_size).collect();
        for o in t.write(Stream::Orders, batch).await.unwrap() {
            match o.result {
                Ok(_) => created += 1,
                Err(f) => panic!("order {} failed: {f:?}", o.key),
            }
        }
    }
    let (c1, w1) = waited(&t);
    report("import orders", created, started.elapsed(), c1 - c0, w1 - w0);
}
