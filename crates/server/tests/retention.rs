//! `ferry serve`'s automatic prune, driven by a manual clock: old runs, pushed records the flow has read
//! (except one with an open failure) and superseded JSONL lines go, once per interval; a target whose
//! flow is running is left alone.

use chrono::{Duration, Utc};
use ferry_engine::Config;
use ferry_engine::retention::prune;
use ferry_engine::schedule::{Clock, ManualClock};
use ferry_engine::store::records::{RecordPut, RecordQuery};
use ferry_engine::{RunOptions, holder_id, run::NoProgress};
use ferry_server::{AppState, retention};
use serde_json::{Value, json};
use std::sync::Arc;

fn put(sku: &str, price: &str) -> RecordPut {
    let payload = json!({"sku": sku, "name": format!("Product {sku}"), "price": {"amount": price, "currency": "AUD", "tax_inclusive": true}});
    RecordPut { key: sku.into(), hash: format!("{sku}-{price}"), payload }
}

fn lines(path: &std::path::Path) -> Vec<Value> {
    std::fs::read_to_string(path).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

#[tokio::test]
async fn serve_prunes_once_per_interval_and_never_what_is_open_or_unread() {
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        r#"
[state]
path = "{}"
[connections.web]
type = "api"
collection = "in"
[connections.out]
type = "jsonl"
path = "out"
[flows.products]
source = "web"
target = "out"
stream = "products"
"#,
        dir.path().join("state.db").display()
    );
    let config = Config::parse(&text, dir.path().to_owned()).unwrap();
    let start = Utc::now();
    let clock = Arc::new(ManualClock::new(start));
    let state = AppState::open(config, clock.clone()).await.unwrap();
    let store = state.store.clone();
    let sync = || async {
        let options = RunOptions { holder: holder_id(), ..Default::default() };
        state.workspace.sync("products", &options, &NoProgress).await.unwrap()
    };

    // pushed a while ago: A, B, and D with a negative price (parked by the flow); E just now
    let old = start - Duration::days(40);
    store.put_records("in", "products", vec![put("A", "5"), put("B", "5"), put("D", "-1")], old).await.unwrap();
    store.put_records("in", "products", vec![put("E", "5")], start).await.unwrap();
    sync().await;
    store.put_records("in", "products", vec![put("B", "6")], old).await.unwrap();
    sync().await;
    sync().await;
    // pushed after the flow's last read: not consumed yet
    store.put_records("in", "products", vec![put("F", "5")], old).await.unwrap();
    assert_eq!(store.failures(Some("products"), None).await.unwrap().len(), 1, "D is parked");
    let file = dir.path().join("out/products.jsonl");
    assert_eq!(lines(&file).len(), 4, "A, B, E, then B again");

    // a month later; the flow is running elsewhere: its JSONL target is left alone
    clock.set(start + Duration::days(31));
    store.lock_flow("products", "elsewhere:1", Duration::minutes(5)).await.unwrap();
    let busy = prune(&state.workspace, store.as_ref(), clock.now(), "prune-test", false).await.unwrap();
    assert!(busy.compacted.is_empty() && busy.skipped.len() == 1, "{busy:#?}");
    assert!(busy.skipped[0].contains("elsewhere:1"), "{busy:#?}");
    assert_eq!(lines(&file).len(), 4);
    assert_eq!((busy.runs, busy.run_records), (2, 5), "runs older than 30 days but the newest, with their outcomes (A, B, D, E; B): {busy:#?}");
    assert_eq!(busy.pushed_records, 3, "A, B and E were read; D has an open failure, F is unread: {busy:#?}");
    let left: Vec<String> = store.get_records("in", "products", &RecordQuery { limit: 10, ..Default::default() }).await.unwrap().into_iter().map(|r| r.key).collect();
    assert_eq!(left, ["D", "F"]);
    assert_eq!(store.runs(Some("products"), 10).await.unwrap().len(), 1, "the newest run stays");
    store.unlock_flow("products", "elsewhere:1").await.unwrap();

    // that prune was logged: serve's next look is not due before the interval
    assert!(retention::tick(&state).await.unwrap().is_none());
    clock.advance(Duration::hours(23));
    assert!(retention::tick(&state).await.unwrap().is_none());
    clock.advance(Duration::hours(2));
    let report = retention::tick(&state).await.unwrap().expect("24 hours later: due");
    assert_eq!(report.compacted.len(), 1, "{report:#?}");
    assert_eq!((report.compacted[0].compaction.lines_before, report.compacted[0].compaction.lines_after), (4, 3));
    let skus: Vec<String> = lines(&file).iter().map(|v| v["sku"].as_str().unwrap().to_owned()).collect();
    assert_eq!(skus, ["A", "E", "B"]);
    assert_eq!(lines(&file)[2]["price"]["amount"], "6", "the latest B");
    assert_eq!(store.last_prune().await.unwrap().map(|t| t.timestamp_micros()), Some(clock.now().timestamp_micros()), "logged at the prune's time");

    // the target keeps working after the rewrite
    store.put_records("in", "products", vec![put("G", "5")], clock.now()).await.unwrap();
    sync().await;
    assert_eq!(lines(&file).len(), 5, "F and G appended to the compacted file");
}
