use super::*;
use ferry_model::Record;
use futures::StreamExt;
use serde_json::{Value, json};

fn connector(dir: &Path) -> JsonlConnector {
    JsonlConnector::new(dir.to_path_buf(), true, true)
}

fn rec(stream: Stream, v: Value) -> WriteRecord {
    let record = Record::parse(stream, v, "test").unwrap();
    WriteRecord { key: record.key(), target_id: None, record, previous: None }
}

fn product(sku: &str, name: &str) -> WriteRecord {
    rec(Stream::Products, json!({"sku": sku, "name": name}))
}

fn order(number: &str) -> WriteRecord {
    rec(
        Stream::Orders,
        json!({
            "number": number, "placed_at": "2026-11-20T10:00:00Z", "currency": "AUD", "prices_include_tax": true,
            "lines": [{"sku": "SPADE-1", "quantity": "2", "unit_price": "25", "total": "50"}],
            "totals": {"subtotal": "50", "total": "50"}
        }),
    )
}

async fn read_all(c: &JsonlConnector, stream: Stream, keys: Option<Vec<String>>) -> Vec<ReadItem> {
    let items: Vec<_> = c.read(ReadRequest { stream: Some(stream), checkpoint: None, keys }).collect().await;
    items.into_iter().map(|i| i.unwrap()).collect()
}

fn records(items: &[ReadItem]) -> Vec<(String, Value)> {
    items
        .iter()
        .filter_map(|i| match i {
            ReadItem::Record(r) => Some((r.position.clone(), r.data.clone())),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn the_last_version_wins_and_tombstones_apply() {
    let dir = tempfile::tempdir().unwrap();
    let c = connector(dir.path());
    c.write(Stream::Products, vec![product("A", "first"), product("B", "bee"), product("C", "sea")]).await.unwrap();
    let mut again = product("A", "second");
    again.target_id = Some("A".into());
    let out = c.write(Stream::Products, vec![again]).await.unwrap();
    assert_eq!(out[0].result.as_ref().unwrap().action, WriteAction::Updated);
    c.retire(Stream::Products, vec![("B".into(), "B".into())], RetireMode::Delete).await.unwrap();
    c.retire(Stream::Products, vec![("C".into(), "C".into())], RetireMode::Deactivate).await.unwrap();

    let text = std::fs::read_to_string(c.file(Stream::Products)).unwrap();
    assert_eq!(text.lines().count(), 6, "appends only: {text}");
    assert!(text.ends_with("{\"_ferry\":\"deactivated\",\"key\":\"C\"}\n"), "{text}");

    let items = read_all(&c, Stream::Products, None).await;
    let got = records(&items);
    assert_eq!(got.len(), 2, "{got:?}");
    // Winners come in file order, each named by its line.
    assert_eq!(got[0].0, "products.jsonl line 3");
    assert_eq!(got[0].1, json!({"sku": "C", "name": "sea", "status": "discontinued"}));
    assert_eq!(got[1].0, "products.jsonl line 4");
    assert_eq!(got[1].1["name"], "second");

    let state = materialize(&c.file(Stream::Products), Stream::Products).unwrap();
    assert_eq!(state.keys().collect::<Vec<_>>(), ["A", "C"]);
    assert_eq!(state["A"], got[1].1);

    // A record written after its tombstone is back.
    c.write(Stream::Products, vec![product("B", "bee again")]).await.unwrap();
    let state = materialize(&c.file(Stream::Products), Stream::Products).unwrap();
    assert_eq!(state["B"]["name"], "bee again");
}

#[tokio::test]
async fn deactivated_customers_turn_inactive_and_deactivated_orders_disappear() {
    let dir = tempfile::tempdir().unwrap();
    let c = connector(dir.path());
    c.write(Stream::Customers, vec![rec(Stream::Customers, json!({"code": "C1", "email": "a@b.example"}))]).await.unwrap();
    c.retire(Stream::Customers, vec![("C1".into(), "C1".into())], RetireMode::Deactivate).await.unwrap();
    let state = materialize(&c.file(Stream::Customers), Stream::Customers).unwrap();
    assert_eq!(state["C1"]["active"], json!(false));
    // The served record is still a valid customer.
    Record::parse(Stream::Customers, state["C1"].clone(), "x").unwrap();

    c.write(Stream::Orders, vec![order("WEB-1")]).await.unwrap();
    c.retire(Stream::Orders, vec![("WEB-1".into(), "WEB-1".into())], RetireMode::Deactivate).await.unwrap();
    assert!(materialize(&c.file(Stream::Orders), Stream::Orders).unwrap().is_empty());
    assert!(c.find_by_key(Stream::Orders, &["WEB-1".into()]).await.unwrap().is_empty());
}

#[tokio::test]
async fn lines_that_are_not_records_are_reported_and_reading_carries_on() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("products.jsonl");
    std::fs::write(
        &path,
        "{\"sku\":\"A\",\"name\":\"a\"}\nthis is not json\n\n[1,2]\n{\"name\":\"no key\"}\n{\"_ferry\":\"vanished\",\"key\":\"A\"}\n{\"sku\":\"B\",\"name\":\"b\"}\n",
    )
    .unwrap();
    let items = read_all(&connector(dir.path()), Stream::Products, None).await;
    let invalid: Vec<(String, String)> = items
        .iter()
        .filter_map(|i| match i {
            ReadItem::Invalid { position, message, .. } => Some((position.clone(), message.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(invalid.len(), 4, "{invalid:?}");
    assert_eq!(invalid[0].0, "products.jsonl line 2");
    assert!(invalid[0].1.starts_with("products.jsonl line 2 is not JSON"), "{}", invalid[0].1);
    assert!(invalid[1].1.contains("not an object"), "{}", invalid[1].1);
    assert!(invalid[2].1.contains("has no key (sku)"), "{}", invalid[2].1);
    assert!(invalid[3].1.contains("vanished"), "{}", invalid[3].1);
    let keys: Vec<Value> = records(&items).into_iter().map(|(_, v)| v["sku"].clone()).collect();
    assert_eq!(keys, [json!("A"), json!("B")]);
}

#[tokio::test]
async fn a_torn_last_line_is_reported_by_readers_and_cut_before_appending() {
    let dir = tempfile::tempdir().unwrap();
    let c = connector(dir.path());
    c.write(Stream::Products, vec![product("A", "a")]).await.unwrap();
    let path = c.file(Stream::Products);
    // What kill -9 in the middle of an append leaves behind.
    let mut bytes = std::fs::read(&path).unwrap();
    bytes.extend_from_slice(b"{\"sku\":\"B\",\"na");
    std::fs::write(&path, &bytes).unwrap();

    // A fresh connection (a restarted Ferry) reads the complete record and reports the torn one...
    let c = connector(dir.path());
    let items = read_all(&c, Stream::Products, None).await;
    let got = records(&items);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].1["sku"], "A");
    assert!(matches!(&items[0], ReadItem::Invalid { position, .. } if position == "products.jsonl line 2"), "{items:?}");
    // ...and cuts it off before appending, so the next record starts on a line of its own.
    c.write(Stream::Products, vec![product("B", "b")]).await.unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    assert_eq!(text, "{\"sku\":\"A\",\"name\":\"a\",\"status\":\"active\"}\n{\"sku\":\"B\",\"name\":\"b\",\"status\":\"active\"}\n");
}

#[tokio::test]
async fn find_by_key_survives_a_reopen_and_create_once_never_appends_twice() {
    let dir = tempfile::tempdir().unwrap();
    let c = connector(dir.path());
    assert!(c.find_by_key(Stream::Orders, &["WEB-1".into()]).await.unwrap().is_empty());
    let out = c.write(Stream::Orders, vec![order("WEB-1")]).await.unwrap();
    assert_eq!(out[0].result, Ok(ferry_engine::Written { target_id: "WEB-1".into(), action: WriteAction::Created, warning: None }));
    // The key set built before the write was kept up to date by it.
    let found = c.find_by_key(Stream::Orders, &["WEB-1".into(), "WEB-2".into()]).await.unwrap();
    assert_eq!(found, HashMap::from([("WEB-1".to_owned(), "WEB-1".to_owned())]));

    let c = connector(dir.path());
    let found = c.find_by_key(Stream::Orders, &["WEB-1".into()]).await.unwrap();
    assert_eq!(found.get("WEB-1").map(String::as_str), Some("WEB-1"));
    // Even without a cross-reference, writing it again does not duplicate it.
    let out = c.write(Stream::Orders, vec![order("WEB-1"), order("WEB-2"), order("WEB-2")]).await.unwrap();
    let actions: Vec<_> = out.iter().map(|o| o.result.as_ref().unwrap().action).collect();
    assert_eq!(actions, [WriteAction::Unchanged, WriteAction::Created, WriteAction::Unchanged]);
    let text = std::fs::read_to_string(c.file(Stream::Orders)).unwrap();
    assert_eq!(text.lines().count(), 2);
}

#[tokio::test]
async fn a_targeted_read_returns_only_the_named_keys() {
    let dir = tempfile::tempdir().unwrap();
    let c = connector(dir.path());
    let stock = |sku: &str, loc: &str, qty: &str| rec(Stream::Stock, json!({"sku": sku, "location": loc, "on_hand": qty}));
    c.write(Stream::Stock, vec![stock("A", "MEL", "1"), stock("A", "SYD", "2"), stock("B", "MEL", "3")]).await.unwrap();
    c.write(Stream::Stock, vec![stock("A", "SYD", "5")]).await.unwrap();
    let got = records(&read_all(&c, Stream::Stock, Some(vec!["A@SYD".into()])).await);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].1["on_hand"], "5");
}

#[tokio::test]
async fn a_record_of_the_wrong_stream_fails_alone() {
    let dir = tempfile::tempdir().unwrap();
    let c = connector(dir.path());
    let out = c.write(Stream::Products, vec![product("A", "a"), order("WEB-1")]).await.unwrap();
    assert!(out[0].result.is_ok());
    let failure = out[1].result.as_ref().unwrap_err();
    assert!(!failure.retryable && failure.message.contains("orders record"), "{failure:?}");
}

#[tokio::test]
async fn reading_a_missing_file_is_an_error_not_an_empty_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let items: Vec<_> = connector(dir.path()).read(ReadRequest { stream: Some(Stream::Prices), ..Default::default() }).collect().await;
    let err = items.into_iter().next().unwrap().unwrap_err();
    assert!(err.endpoint.ends_with("prices.jsonl") && err.message.contains("not found"), "{err}");
}

#[tokio::test]
async fn check_reports_a_writable_folder_and_missing_ones() {
    let dir = tempfile::tempdir().unwrap();
    let report = JsonlConnector::new(dir.path().join("new/sub"), true, true).check().await.unwrap();
    assert!(report.ok, "{report:?}");
    assert!(!dir.path().join("new").exists(), "check changes nothing");
    let report = JsonlConnector::new(dir.path().join("new"), true, false).check().await.unwrap();
    assert!(!report.ok && report.details[0].contains("does not exist"), "{report:?}");
}

#[test]
fn keys_from_raw_json_match_the_model() {
    for (stream, v) in [
        (Stream::Stock, json!({"sku": "A", "location": "WH", "on_hand": "1"})),
        (Stream::Stock, json!({"sku": "A", "on_hand": "1"})),
        (Stream::Prices, json!({"price_list": "TRADE", "sku": "A", "min_quantity": "10.0",
                                "price": {"amount": "9", "currency": "AUD", "tax_inclusive": false}})),
        (Stream::Prices, json!({"price_list": "TRADE", "sku": "A",
                                "price": {"amount": "9", "currency": "AUD", "tax_inclusive": false}})),
        (Stream::Customers, json!({"code": "C9"})),
    ] {
        let record = Record::parse(stream, v.clone(), "x").unwrap();
        assert_eq!(record_key(stream, &v).as_deref(), Some(record.key().as_str()), "{v}");
        assert_eq!(record_key(stream, &record.to_value()).as_deref(), Some(record.key().as_str()));
    }
}

fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path).unwrap().lines().map(str::to_owned).collect()
}

#[tokio::test]
async fn compaction_keeps_the_current_state_in_fewer_lines_and_a_dry_run_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let c = connector(dir.path());
    for round in 0..3 {
        c.write(Stream::Products, vec![product("A", &format!("A v{round}")), product("B", "B"), product("C", "C")]).await.unwrap();
    }
    c.retire(Stream::Products, vec![("B".into(), "B".into())], RetireMode::Delete).await.unwrap();
    c.retire(Stream::Products, vec![("C".into(), "C".into())], RetireMode::Deactivate).await.unwrap();
    let path = c.file(Stream::Products);
    // a line someone appended by hand stays visible
    std::fs::OpenOptions::new().append(true).open(&path).unwrap().write_all(b"not json\n\n").unwrap();
    let state = materialize(&path, Stream::Products).unwrap();
    let before = lines(&path);
    assert_eq!(before.len(), 13);

    let dry = c.compact(Stream::Products, true).await.unwrap().unwrap();
    assert_eq!((dry.lines_before, dry.lines_after), (13, 4));
    assert_eq!(lines(&path), before, "a dry run rewrites nothing");

    let done = c.compact(Stream::Products, false).await.unwrap().unwrap();
    assert_eq!(done, dry);
    let after = lines(&path);
    assert_eq!(after.len(), 4, "{after:#?}");
    assert!(after[0].contains("\"A v2\""), "latest version of A: {after:#?}");
    assert!(after.iter().any(|l| l == "not json"));
    assert!(!after.iter().any(|l| l.contains("\"B\"")), "B was deleted: {after:#?}");
    assert_eq!(materialize(&path, Stream::Products).unwrap(), state, "same state, fewer lines");
    // C is still served deactivated, and nothing is left to compact
    let served = records(&read_all(&c, Stream::Products, Some(vec!["C".into()])).await);
    assert_eq!(served[0].1["status"], "discontinued");
    let again = c.compact(Stream::Products, false).await.unwrap().unwrap();
    assert_eq!((again.lines_before, again.lines_after), (4, 4));
    assert!(c.compact(Stream::Stock, false).await.unwrap().is_none(), "no file, nothing to compact");
}

#[tokio::test]
async fn writes_after_a_compaction_land_in_the_new_file_even_from_another_connector() {
    let dir = tempfile::tempdir().unwrap();
    // two connections on one folder, as `ferry serve` and a `ferry prune` beside it
    let serve = connector(dir.path());
    let prune = connector(dir.path());
    serve.write(Stream::Products, vec![product("A", "A1")]).await.unwrap();
    serve.write(Stream::Products, vec![product("A", "A2")]).await.unwrap();
    let compacted = prune.compact(Stream::Products, false).await.unwrap().unwrap();
    assert_eq!((compacted.lines_before, compacted.lines_after), (2, 1));
    // serve's appender still holds the replaced file: the write must reach the new one
    serve.write(Stream::Products, vec![product("B", "B1")]).await.unwrap();
    prune.write(Stream::Products, vec![product("C", "C1")]).await.unwrap();
    let state = materialize(&serve.file(Stream::Products), Stream::Products).unwrap();
    assert_eq!(state.keys().map(String::as_str).collect::<Vec<_>>(), ["A", "B", "C"]);
    assert_eq!(state["A"]["name"], "A2");
}

/// The defect: a JSONL input whose last line had no newline lost that record (and a snapshot read with
/// `on_missing` would then retire it). As a source, the last line is a record; as the target's own state
/// (what `find_by_key` sees) an unterminated line is still a torn append, cut off by the next write.
#[tokio::test]
async fn a_last_line_without_newline_is_a_record_when_read_and_a_torn_append_when_written() {
    let dir = tempfile::tempdir().unwrap();
    let c = connector(dir.path());
    std::fs::write(c.file(Stream::Products), "{\"sku\":\"A\",\"name\":\"Spade\"}\n{\"sku\":\"B\",\"name\":\"Rake\"}").unwrap();
    let read = records(&read_all(&c, Stream::Products, None).await);
    assert_eq!(read.iter().map(|(_, v)| v["sku"].as_str().unwrap()).collect::<Vec<_>>(), ["A", "B"]);
    assert_eq!(read[1].0, "products.jsonl line 2");

    // A torn line (cut mid-record) is reported, not silently dropped.
    std::fs::write(c.file(Stream::Products), "{\"sku\":\"A\",\"name\":\"Spade\"}\n{\"sku\":\"B\",\"na").unwrap();
    let items = read_all(&c, Stream::Products, None).await;
    assert!(items.iter().any(|i| matches!(i, ReadItem::Invalid { position, .. } if position == "products.jsonl line 2")), "{items:?}");

    // The orders this connector wrote: an unterminated last line is not an order the file holds.
    std::fs::write(c.file(Stream::Orders), "").unwrap();
    let line = serde_json::to_string(&order("WEB-1").record).unwrap();
    std::fs::write(c.file(Stream::Orders), line).unwrap();
    let fresh = connector(dir.path());
    assert!(fresh.find_by_key(Stream::Orders, &["WEB-1".into()]).await.unwrap().is_empty());
    fresh.write(Stream::Orders, vec![order("WEB-1")]).await.unwrap();
    assert_eq!(std::fs::read_to_string(fresh.file(Stream::Orders)).unwrap().lines().count(), 1);
}
