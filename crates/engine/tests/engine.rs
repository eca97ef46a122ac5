// The engine's invariants, driven through the connector contract. The same file is compiled again as
// `engine_on_postgres.rs` (`include!`): the test binary's name picks the state store's backend, so every
// invariant here holds on SQLite and on PostgreSQL.

#[path = "support/memory.rs"]
mod memory;

use ferry_engine::config::{FlowConfig, OnMissing};
use ferry_engine::connector::{ReadMode, WriteMode};
use ferry_engine::mapping::{Mapping, MappingConfig};
use ferry_engine::run::{Flow, NoProgress, Replay, RunOptions, run_flow};
use ferry_engine::store::{PgStore, SqliteStore, Store};
use ferry_model::Stream;
use memory::Memory;
use serde_json::json;
use std::sync::Arc;

fn product(sku: &str, price: &str) -> serde_json::Value {
    json!({"sku": sku, "name": format!("Product {sku}"), "price": {"amount": price, "currency": "AUD", "tax_inclusive": true}})
}

fn order(number: &str) -> serde_json::Value {
    json!({"number": number, "placed_at": "2026-11-20T10:00:00Z", "currency": "AUD", "prices_include_tax": true,
           "lines": [{"sku": "A", "quantity": "1", "unit_price": "11", "total": "11"}],
           "totals": {"subtotal": "11", "tax": "1", "total": "11"}})
}

/// Where the rig's state lives: a SQLite file in a temporary folder, or a scratch PostgreSQL schema.
enum Backing {
    Sqlite(tempfile::TempDir),
    Postgres(ferry_engine::store::postgres::ScratchSchema),
}

/// This binary's backend: `engine_on_postgres` runs the suite on PostgreSQL.
fn on_postgres() -> bool {
    env!("CARGO_CRATE_NAME").ends_with("on_postgres")
}

async fn open_store() -> (Arc<dyn Store>, Backing) {
    if on_postgres() {
        let scratch = ferry_engine::store::postgres::ScratchSchema::new("engine");
        let store = scratch.open().await.unwrap_or_else(|e| panic!("PostgreSQL for the engine suite: {e}"));
        (Arc::new(store), Backing::Postgres(scratch))
    } else {
        let dir = tempfile::tempdir().unwrap();
        (Arc::new(SqliteStore::open(&dir.path().join("state.db")).await.unwrap()), Backing::Sqlite(dir))
    }
}

struct Rig {
    backing: Backing,
    store: Arc<dyn Store>,
    source: Arc<Memory>,
    target: Arc<Memory>,
    flow: Flow,
}

async fn rig(stream: Stream, read_mode: ReadMode, write_mode: WriteMode, records: Vec<serde_json::Value>) -> Rig {
    let (store, backing) = open_store().await;
    let source = Arc::new(Memory::new(stream, read_mode, write_mode));
    *source.source.lock().unwrap() = records;
    let target = Arc::new(Memory::new(stream, read_mode, write_mode));
    let config = FlowConfig {
        source: "src".into(),
        target: "dst".into(),
        stream,
        description: None,
        batch_size: None,
        on_missing: OnMissing::Ignore,
        max_retire_share: None,
        on_duplicate: Default::default(),
        mapping: MappingConfig::default(),
        schedule: None,
        schedule_timezone: None,
        enabled: true,
        orders: Default::default(),
    };
    let mapping = Mapping::compile(&config.mapping, stream).unwrap();
    let flow = Flow { name: "f".into(), config, source: source.clone(), target: target.clone(), mapping };
    Rig { backing, store, source, target, flow }
}

fn opts() -> RunOptions {
    RunOptions { holder: ferry_engine::holder_id(), ..Default::default() }
}

impl Rig {
    async fn sync(&self, options: RunOptions) -> ferry_engine::RunReport {
        run_flow(&self.flow, self.store.as_ref(), &options, &NoProgress).await.unwrap()
    }

    /// Moves every parked record's retry time into the past (instead of waiting minutes).
    async fn make_failures_due(&self) {
        let sql = "UPDATE failures SET next_retry_at = '2000-01-01T00:00:00.000000Z'";
        match &self.backing {
            Backing::Sqlite(dir) => {
                let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", dir.path().join("state.db").display())).await.unwrap();
                sqlx::query(sql).execute(&pool).await.unwrap();
            }
            Backing::Postgres(scratch) => {
                let store = PgStore::open(&scratch.url, &scratch.schema, 2).await.unwrap();
                sqlx::query(sql).execute(store.pool()).await.unwrap();
            }
        }
    }
}

#[tokio::test]
async fn first_run_creates_all_second_writes_nothing_one_change_writes_one() {
    let r = rig(Stream::Products, ReadMode::Snapshot, WriteMode::Upsert, (0..10).map(|i| product(&format!("P{i}"), "10")).collect()).await;
    let first = r.sync(opts()).await;
    assert_eq!((first.counts.read, first.counts.created, first.counts.failed), (10, 10, 0));
    assert_eq!(r.target.writes(), 10);

    let second = r.sync(opts()).await;
    assert_eq!((second.counts.unchanged, second.counts.created + second.counts.updated), (10, 0));
    assert_eq!(r.target.writes(), 10, "an unchanged re-sync writes nothing");

    r.source.source.lock().unwrap()[4] = product("P4", "12.50");
    let third = r.sync(opts()).await;
    assert_eq!((third.counts.updated, third.counts.unchanged), (1, 9));
    assert_eq!(r.target.writes(), 11);
}

#[tokio::test]
async fn a_runs_written_records_carry_their_field_level_changes() {
    let r = rig(Stream::Products, ReadMode::Snapshot, WriteMode::Upsert, vec![product("P1", "10"), product("P2", "10")]).await;
    let first = r.sync(opts()).await;
    let created = r.store.run_records(first.run_id.unwrap()).await.unwrap();
    let paths: Vec<&str> = created[0].changes.as_ref().unwrap().as_array().unwrap().iter().map(|c| c["path"].as_str().unwrap()).collect();
    assert!(paths.contains(&"price.amount") && paths.contains(&"sku"), "a created record lists each field as new: {paths:?}");

    r.source.source.lock().unwrap()[1] = product("P2", "12.50");
    let second = r.sync(opts()).await;
    let updated = r.store.run_records(second.run_id.unwrap()).await.unwrap();
    assert_eq!(updated.len(), 1);
    assert_eq!(updated[0].changes, Some(json!([{"path": "price.amount", "old": "10", "new": "12.5"}])), "an update lists what changed, before and after");
}

#[tokio::test]
async fn a_bad_record_fails_alone_naming_record_and_field_and_heals_when_fixed() {
    let mut records: Vec<_> = (0..5).map(|i| product(&format!("P{i}"), "10")).collect();
    records[2]["price"]["amount"] = json!("ten");
    let r = rig(Stream::Products, ReadMode::Snapshot, WriteMode::Upsert, records).await;
    let report = r.sync(opts()).await;
    assert_eq!((report.counts.created, report.counts.failed), (4, 1));
    assert_eq!(report.failures[0].key, "P2");
    assert_eq!(report.failures[0].field.as_deref(), Some("price.amount"));
    let parked = r.store.failures(Some("f"), None).await.unwrap();
    assert_eq!(parked.len(), 1);
    assert_eq!(parked[0].source["price"]["amount"], "ten", "the source payload is kept for replay");

    r.source.source.lock().unwrap()[2] = product("P2", "10");
    let report = r.sync(opts()).await;
    assert_eq!((report.counts.created, report.counts.failed), (1, 0));
    assert!(r.store.failures(Some("f"), None).await.unwrap().is_empty(), "fixed record resolves its failure");
}

#[tokio::test]
async fn the_target_refusing_one_record_parks_it_and_the_batch_goes_on() {
    let r = rig(Stream::Products, ReadMode::Snapshot, WriteMode::Upsert, (0..6).map(|i| product(&format!("P{i}"), "1")).collect()).await;
    r.target.faults.lock().unwrap().refuse.insert("P1".into(), "name".into());
    let report = r.sync(opts()).await;
    assert_eq!((report.counts.created, report.counts.failed), (5, 1));
    let parked = r.store.failures(Some("f"), None).await.unwrap();
    assert_eq!((parked[0].key.as_str(), parked[0].stage.as_str(), parked[0].field.as_deref()), ("P1", "write", Some("name")));

    // A target naming the field only in its message: the failure carries it anyway.
    r.target.faults.lock().unwrap().refuse.insert("P1".into(), String::new());
    let report = r.sync(RunOptions { replay: Replay::AllOnly, ..opts() }).await;
    assert_eq!(report.failures[0].field.as_deref(), Some("name"), "{:?}", report.failures);

    // Replay after the target was fixed.
    r.target.faults.lock().unwrap().refuse.clear();
    let report = r.sync(RunOptions { replay: Replay::AllOnly, ..opts() }).await;
    assert_eq!((report.counts.read, report.counts.created), (1, 1));
    assert!(r.store.failures(Some("f"), None).await.unwrap().is_empty());
}

#[tokio::test]
async fn a_parked_retryable_record_is_replayed_by_a_normal_run_once_its_retry_time_has_come() {
    // An incremental source whose checkpoint has moved past the record: only the replay can bring it.
    let r = rig(Stream::Orders, ReadMode::Incremental, WriteMode::CreateOnce, vec![order("W1"), order("W2")]).await;
    r.target.faults.lock().unwrap().busy.insert("W2".into());
    let report = r.sync(opts()).await;
    assert_eq!((report.counts.created, report.counts.failed), (1, 1));
    assert!(report.failures[0].retryable);
    r.target.faults.lock().unwrap().busy.clear();

    let early = r.sync(opts()).await;
    assert_eq!(early.counts.read, 0, "not due yet: nothing replayed, nothing new read");

    r.make_failures_due().await;
    let due = r.sync(opts()).await;
    assert_eq!((due.counts.read, due.counts.created), (1, 1));
    assert!(r.store.failures(Some("f"), None).await.unwrap().is_empty());
    assert_eq!(r.target.target.lock().unwrap().len(), 2);
}

#[tokio::test]
async fn transient_endpoint_errors_are_retried_with_backoff() {
    let r = rig(Stream::Products, ReadMode::Snapshot, WriteMode::Upsert, vec![product("A", "1")]).await;
    r.target.faults.lock().unwrap().transient_calls = 2;
    let report = r.sync(opts()).await;
    assert_eq!(report.counts.created, 1);
    assert_eq!(*r.target.write_calls.lock().unwrap(), 3);
    assert!(report.aborted.is_none(), "{:?}", report.aborted);
}

#[tokio::test]
async fn a_whole_call_retry_waits_at_least_the_endpoints_retry_after() {
    let r = rig(Stream::Products, ReadMode::Snapshot, WriteMode::Upsert, vec![product("A", "1")]).await;
    {
        let mut faults = r.target.faults.lock().unwrap();
        faults.transient_calls = 1;
        // longer than the first backoff (0.25-0.5 s)
        faults.retry_after = Some(std::time::Duration::from_millis(1500));
    }
    let started = std::time::Instant::now();
    let report = r.sync(opts()).await;
    assert!(report.aborted.is_none() && report.counts.created == 1, "{report:?}");
    assert!(started.elapsed() >= std::time::Duration::from_millis(1500), "waited only {:?}", started.elapsed());
}

#[tokio::test]
async fn an_order_created_by_a_killed_run_is_found_not_created_again() {
    let r = rig(Stream::Orders, ReadMode::Incremental, WriteMode::CreateOnce, vec![order("W1"), order("W2"), order("W3")]).await;
    // A previous run wrote W2 into the target and died before committing its state.
    let w2 = ferry_model::Record::parse(Stream::Orders, order("W2"), "").unwrap();
    r.target.target.lock().unwrap().insert("W2".into(), w2);
    let report = r.sync(opts()).await;
    assert_eq!((report.counts.created, report.counts.resumed, report.counts.unchanged), (2, 1, 0));
    assert_eq!(r.target.writes(), 2, "W2 was not written a second time");
    assert_eq!(r.store.lookup("f", &["W2".into()]).await.unwrap()["W2"].target_id, "id-W2");
}

#[tokio::test]
async fn an_endpoint_dying_mid_run_never_skips_or_duplicates() {
    let orders: Vec<_> = (1..=8).map(|i| order(&format!("W{i}"))).collect();
    let r = rig(Stream::Orders, ReadMode::Incremental, WriteMode::CreateOnce, orders).await;
    r.target.faults.lock().unwrap().die_after = Some(4);
    let report = r.sync(opts()).await;
    assert!(report.aborted.as_deref().unwrap().contains("connection reset"), "{:?}", report.aborted);
    let cp = r.store.checkpoint("f").await.unwrap().and_then(|v| v.as_u64()).unwrap_or(0);
    assert!(cp <= 4, "checkpoint {cp} must not pass records that were not committed");

    r.target.faults.lock().unwrap().die_after = None;
    let report = r.sync(opts()).await;
    assert!(report.aborted.is_none());
    let target = r.target.target.lock().unwrap();
    assert_eq!(target.len(), 8, "every order arrives");
    assert_eq!(r.target.writes(), 8, "and none twice");
}

#[tokio::test]
async fn dry_run_shows_field_changes_and_writes_nothing() {
    let r = rig(Stream::Products, ReadMode::Snapshot, WriteMode::Upsert, vec![product("A", "10"), product("B", "10")]).await;
    r.sync(opts()).await;
    r.source.source.lock().unwrap()[1] = product("B", "11.5");
    r.source.source.lock().unwrap().push(product("C", "3"));
    let report = r.sync(RunOptions { dry_run: true, ..opts() }).await;
    assert_eq!((report.counts.created, report.counts.updated, report.counts.unchanged), (1, 1, 1));
    let b = report.planned.iter().find(|p| p.key == "B").unwrap();
    assert_eq!(b.changes.len(), 1);
    assert_eq!(b.changes[0].path, "price.amount");
    assert_eq!((b.changes[0].old.clone().unwrap(), b.changes[0].new.clone().unwrap()), (json!("10"), json!("11.5")));
    assert_eq!(r.target.writes(), 2, "dry run wrote nothing");
    assert_eq!(r.store.runs(Some("f"), 10).await.unwrap().len(), 1, "dry run recorded no run");
}

#[tokio::test]
async fn records_gone_from_a_complete_read_are_retired_per_policy_with_a_guard() {
    let mut r = rig(Stream::Products, ReadMode::Snapshot, WriteMode::Upsert, (0..20).map(|i| product(&format!("P{i:02}"), "1")).collect()).await;
    r.flow.config.on_missing = OnMissing::Deactivate;
    r.sync(opts()).await;
    r.source.source.lock().unwrap().retain(|p| p["sku"] != "P03");
    let report = r.sync(opts()).await;
    assert_eq!(report.counts.retired, 1);
    assert_eq!(r.target.retired.lock().unwrap()[0].0, "P03");
    let again = r.sync(opts()).await;
    assert_eq!(again.counts.retired, 0, "a retired record is not retired again");

    // A truncated export must not empty the shop.
    r.source.source.lock().unwrap().truncate(2);
    let report = r.sync(opts()).await;
    assert_eq!(report.counts.retired, 0);
    assert!(report.warnings[0].contains("truncated"), "{:?}", report.warnings);
}

#[tokio::test]
async fn a_lease_left_by_a_killed_process_is_taken_over() {
    let r = rig(Stream::Products, ReadMode::Snapshot, WriteMode::Upsert, vec![product("A", "1")]).await;
    let host = ferry_engine::holder_id().rsplit_once(':').unwrap().0.to_owned();
    // pid 0x7fffffff does not exist
    r.store.lock_flow("f", &format!("{host}:2147483647"), chrono::Duration::minutes(10)).await.unwrap();
    let report = r.sync(opts()).await;
    assert_eq!(report.counts.created, 1);
    // a live holder is respected
    r.store.lock_flow("f", "otherhost:1", chrono::Duration::minutes(10)).await.unwrap();
    let err = run_flow(&r.flow, r.store.as_ref(), &opts(), &NoProgress).await.unwrap_err();
    assert!(err.to_string().contains("already running in otherhost:1"), "{err}");
}

mod properties {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig { cases: 24, failure_persistence: None, ..ProptestConfig::default() })]
        /// Whatever the catalogue and whatever changes, a sync makes the target equal the source, and a
        /// second sync writes nothing.
        #[test]
        fn sync_is_idempotent_and_converges(
            prices in proptest::collection::vec(1u32..1000, 1..30),
            changes in proptest::collection::vec((0usize..30, 1u32..1000), 0..10),
        ) {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async {
                let records: Vec<_> = prices.iter().enumerate().map(|(i, p)| product(&format!("P{i}"), &p.to_string())).collect();
                let r = rig(Stream::Products, ReadMode::Snapshot, WriteMode::Upsert, records).await;
                r.sync(opts()).await;
                for (i, p) in &changes {
                    let mut src = r.source.source.lock().unwrap();
                    let n = src.len();
                    src[i % n] = product(&format!("P{}", i % n), &p.to_string());
                }
                let before = r.target.writes();
                let changed = r.sync(opts()).await;
                prop_assert_eq!(r.target.writes() - before, (changed.counts.created + changed.counts.updated) as usize);
                let src = r.source.source.lock().unwrap().clone();
                let target = r.target.target.lock().unwrap().clone();
                prop_assert_eq!(target.len(), src.len());
                for s in &src {
                    let key = s["sku"].as_str().unwrap();
                    prop_assert_eq!(&target[key], &ferry_model::Record::parse(Stream::Products, s.clone(), "").unwrap());
                }
                let again = r.sync(opts()).await;
                prop_assert_eq!(again.counts.created + again.counts.updated, 0);
                Ok(())
            })?;
        }
    }
}

/// The no-change shortcut (raw content synced before → unchanged) must not hide a later version of a key
/// that an earlier row of the same run changed: the last row read wins, within a batch and across
/// batches prepared while the previous one is written.
#[tokio::test]
async fn a_key_read_twice_in_one_run_ends_with_its_last_version_even_when_that_was_synced_before() {
    for batch_size in [None, Some(1), Some(2)] {
        let mut r = rig(Stream::Products, ReadMode::Snapshot, WriteMode::Upsert, vec![product("P1", "10"), product("P2", "5")]).await;
        r.flow.config.batch_size = batch_size;
        r.sync(opts()).await;
        // Next export: P1 changes to 12, then (appended later in the same file) goes back to 10, whose raw
        // content Ferry has synced before.
        *r.source.source.lock().unwrap() = vec![product("P1", "12"), product("P2", "5"), product("P1", "10")];
        let report = r.sync(opts()).await;
        assert_eq!(report.counts.failed, 0, "batch size {batch_size:?}");
        let price = r.target.target.lock().unwrap()["P1"].to_value()["price"]["amount"].clone();
        assert_eq!(price, "10", "batch size {batch_size:?}: the last row read is what the target holds");
        // And the state agrees: within one batch the earlier row is dropped and the next run writes nothing;
        // across batches the earlier version is written on its way (the source really has both rows).
        let before = r.target.writes();
        let again = r.sync(opts()).await;
        let price = r.target.target.lock().unwrap()["P1"].to_value()["price"]["amount"].clone();
        assert_eq!(price, "10", "batch size {batch_size:?}");
        if batch_size.is_none() {
            assert_eq!((again.counts.created + again.counts.updated, r.target.writes()), (0, before));
        }
    }
}

// ---- create-once records: resumed, never assumed done (issue 9) ----

#[tokio::test]
async fn a_record_created_but_left_short_of_its_end_state_is_resumed_not_called_unchanged() {
    let r = rig(Stream::Orders, ReadMode::Incremental, WriteMode::CreateOnce, vec![order("W1"), order("W2")]).await;
    r.target.faults.lock().unwrap().stall_after_create.insert("W1".into());
    let first = r.sync(opts()).await;
    assert_eq!((first.counts.created, first.counts.failed), (1, 1));
    assert!(first.failures[0].retryable);

    // The retry finds W1 in the target (created, unfinished) and drives it on.
    r.make_failures_due().await;
    let second = r.sync(opts()).await;
    assert_eq!((second.counts.resumed, second.counts.unchanged, second.counts.created), (1, 0, 0), "{:?}", second.counts);
    assert!(r.target.unfinished.lock().unwrap().is_empty(), "W1 reached its end state");
    assert_eq!(r.target.writes(), 2, "W1 was created once");
    assert!(r.store.failures(Some("f"), None).await.unwrap().is_empty());
    let run = &r.store.runs(Some("f"), 1).await.unwrap()[0];
    assert_eq!(run.counts.resumed, 1, "ferry status counts resumed records");
}

#[tokio::test]
async fn a_lost_answer_is_retried_by_finding_what_the_call_created() {
    let r = rig(Stream::Orders, ReadMode::Incremental, WriteMode::CreateOnce, vec![order("W1"), order("W2"), order("W3")]).await;
    r.target.faults.lock().unwrap().lose_answers = 1;
    let report = r.sync(opts()).await;
    assert!(report.aborted.is_none(), "{:?}", report.aborted);
    assert_eq!(report.counts.failed, 0, "no record parked as 'must be unique': {:?}", report.failures);
    assert_eq!(r.target.writes(), 3, "each order created once");
    assert_eq!(r.store.lookup("f", &["W1".into(), "W2".into(), "W3".into()]).await.unwrap().len(), 3);
}

#[tokio::test]
async fn an_order_cancelled_before_import_is_not_created() {
    let mut cancelled = order("W1");
    cancelled["status"] = json!("cancelled");
    let r = rig(Stream::Orders, ReadMode::Incremental, WriteMode::CreateOnce, vec![cancelled, order("W2")]).await;
    let report = r.sync(opts()).await;
    assert_eq!((report.counts.created, report.counts.skipped), (1, 1));
    assert!(!r.target.target.lock().unwrap().contains_key("W1"));
    let run = &r.store.runs(Some("f"), 1).await.unwrap()[0];
    let records = r.store.run_records(run.id).await.unwrap();
    let skipped = records.iter().find(|x| x.key == "W1").expect("the skip is listed");
    assert_eq!(skipped.outcome, "skipped");
    assert!(skipped.message.as_deref().unwrap().contains("cancelled"), "{skipped:?}");
}

#[tokio::test]
async fn an_order_changed_after_import_goes_to_the_target_with_what_it_had() {
    let r = rig(Stream::Orders, ReadMode::Incremental, WriteMode::CreateOnce, vec![order("W1")]).await;
    r.sync(opts()).await;
    let mut cancelled = order("W1");
    cancelled["status"] = json!("cancelled");
    r.source.source.lock().unwrap().push(cancelled);
    let report = r.sync(opts()).await;
    assert_eq!(report.counts.updated, 1, "{:?}", report.counts);
    let previous = r.target.previous_seen.lock().unwrap()["W1"].clone();
    assert_eq!(previous["status"], json!("pending"), "the connector sees what the target had: {previous}");
    let target = r.target.target.lock().unwrap();
    let ferry_model::Record::Order(o) = &target["W1"] else { panic!() };
    assert_eq!(o.status, ferry_model::OrderStatus::Cancelled);
}

fn customer(code: &str) -> serde_json::Value {
    json!({"code": code, "company": format!("Customer {code}")})
}

/// Found by hand (issue 10): a quantity at `Decimal::MAX` made order validation panic on the batch's
/// preparation thread, so the whole flow stopped on every run with "0 failed". Now that order is parked
/// naming its field and the orders around it are delivered.
#[tokio::test]
async fn an_order_whose_amounts_overflow_is_parked_and_the_orders_around_it_are_delivered() {
    let mut poison = order("WEB-2");
    poison["lines"][0]["quantity"] = json!("79228162514264337593543950335");
    let r = rig(Stream::Orders, ReadMode::Snapshot, WriteMode::CreateOnce, vec![order("WEB-1"), poison, order("WEB-3")]).await;
    let report = r.sync(opts()).await;
    assert_eq!(report.aborted, None);
    assert_eq!((report.counts.created, report.counts.failed), (2, 1), "{report:?}");
    let failure = &report.failures[0];
    assert_eq!((failure.key.as_str(), failure.field.as_deref()), ("WEB-2", Some("lines[0].total")));
    assert!(failure.message.contains("out of range"), "{}", failure.message);
}

/// Defence in depth: a connector that panics on one record (a bug) costs that record only. The batch is
/// written again one record at a time; the panicking one is parked with the panic's message.
#[tokio::test]
async fn a_record_that_makes_the_target_panic_is_parked_alone_and_the_batch_goes_on() {
    for write_mode in [WriteMode::Upsert, WriteMode::CreateOnce] {
        let records = if write_mode == WriteMode::Upsert {
            (1..=5).map(|i| product(&format!("P{i}"), "1")).collect()
        } else {
            (1..=5).map(|i| order(&format!("P{i}"))).collect()
        };
        let stream = if write_mode == WriteMode::Upsert { Stream::Products } else { Stream::Orders };
        let r = rig(stream, ReadMode::Snapshot, write_mode, records).await;
        r.target.faults.lock().unwrap().panic_on.insert("P2".into());
        let report = r.sync(opts()).await;
        assert_eq!(report.aborted, None, "{write_mode:?}");
        // P1 was stored before the panic: rewritten (upsert) or found and not created again (create-once).
        let c = report.counts;
        assert_eq!((c.created + c.updated + c.unchanged, c.failed), (4, 1), "{write_mode:?}: {report:?}");
        assert!(report.failures[0].message.contains("panicked writing this record: connector bug on P2"), "{:?}", report.failures);
        let target = r.target.target.lock().unwrap().keys().cloned().collect::<Vec<_>>();
        assert_eq!(target, ["P1", "P3", "P4", "P5"], "{write_mode:?}");
        if write_mode == WriteMode::CreateOnce {
            assert_eq!(r.target.writes(), 4, "no record created twice");
        }
    }
}

/// The defect: a header-only customers export deleted all 10 customers (exit 0), because the share guard
/// only acted above 10 missing records.
#[tokio::test]
async fn an_empty_snapshot_retires_nothing_and_names_the_source_unless_allowed() {
    let mut r = rig(Stream::Customers, ReadMode::Snapshot, WriteMode::Upsert, (0..10).map(|i| customer(&format!("C{i}"))).collect()).await;
    r.flow.config.on_missing = OnMissing::Delete;
    r.sync(opts()).await;
    r.source.source.lock().unwrap().clear();
    for options in [opts(), RunOptions { force_retire: true, ..opts() }, RunOptions { dry_run: true, ..opts() }] {
        let report = r.sync(options).await;
        let aborted = report.aborted.expect("an empty source stops the run");
        assert!(aborted.contains("source src") && aborted.contains("--allow-empty-source"), "{aborted}");
        assert_eq!(report.counts.retired, 0);
    }
    assert!(r.target.retired.lock().unwrap().is_empty());
    let report = r.sync(RunOptions { allow_empty_source: true, force_retire: true, ..opts() }).await;
    assert_eq!((report.aborted, report.counts.retired), (None, 10));
}

#[tokio::test]
async fn the_retire_share_holds_for_a_handful_of_records() {
    let mut r = rig(Stream::Customers, ReadMode::Snapshot, WriteMode::Upsert, (0..4).map(|i| customer(&format!("C{i}"))).collect()).await;
    r.flow.config.on_missing = OnMissing::Delete;
    r.sync(opts()).await;
    r.source.source.lock().unwrap().truncate(1);
    let report = r.sync(opts()).await;
    assert_eq!(report.counts.retired, 0, "3 of 4 is more than half");
    assert!(report.warnings[0].contains("max_retire_share = 0.5 allows (2)"), "{:?}", report.warnings);
    r.source.source.lock().unwrap().push(customer("C1"));
    let report = r.sync(opts()).await;
    assert_eq!(report.counts.retired, 2, "2 of 4 is half: allowed");
}

/// A retirement the target refuses is parked with what retiring it again needs, and `failures retry`
/// retires it (it used to be parked with a null payload and fail validation when replayed).
#[tokio::test]
async fn a_refused_retirement_is_retried_by_failures_retry() {
    let mut r = rig(Stream::Customers, ReadMode::Snapshot, WriteMode::Upsert, (0..4).map(|i| customer(&format!("C{i}"))).collect()).await;
    r.flow.config.on_missing = OnMissing::Deactivate;
    r.sync(opts()).await;
    r.target.faults.lock().unwrap().refuse_retire.insert("C3".into());
    r.source.source.lock().unwrap().truncate(3);
    let report = r.sync(opts()).await;
    assert_eq!(report.counts.failed, 1);
    let parked = r.store.failures(Some("f"), None).await.unwrap();
    assert_eq!((parked[0].key.as_str(), parked[0].stage.as_str()), ("C3", "retire"));
    assert_eq!(parked[0].source["retire"]["target_id"], "id-C3");

    r.target.faults.lock().unwrap().refuse_retire.clear();
    let report = r.sync(RunOptions { replay: Replay::AllOnly, ..opts() }).await;
    assert_eq!((report.counts.retired, report.counts.failed), (1, 0), "{report:?}");
    assert_eq!(r.target.retired.lock().unwrap().as_slice(), [("C3".to_owned(), ferry_engine::RetireMode::Deactivate)]);
    assert!(r.store.failures(Some("f"), None).await.unwrap().is_empty());
}

/// `--key` names canonical keys, after mapping. The defect: with the key renamed by the mapping, the
/// source was asked for the key (which it does not know) and every record was written.
#[tokio::test]
async fn key_selects_canonical_keys_after_a_mapping_that_renames_the_key() {
    let raw = |code: &str, own: &str| json!({"ItemCode": code, "sku": own, "name": format!("Spade {code}")});
    let mut r = rig(Stream::Products, ReadMode::Snapshot, WriteMode::Upsert, (1..=21).map(|i| raw(&format!("SPD-{}", 1000 + i), &format!("internal-{i}"))).collect()).await;
    r.flow.config.mapping = toml::from_str("rename = { ItemCode = \"sku\" }\ndrop = [\"sku\"]").unwrap();
    r.flow.mapping = Mapping::compile(&r.flow.config.mapping, Stream::Products).unwrap();
    let keys = Some(vec!["SPD-1001".to_owned()]);

    let dry = r.sync(RunOptions { keys: keys.clone(), dry_run: true, ..opts() }).await;
    assert_eq!(dry.planned.iter().map(|p| p.key.as_str()).collect::<Vec<_>>(), ["SPD-1001"]);
    let report = r.sync(RunOptions { keys: keys.clone(), ..opts() }).await;
    assert_eq!((report.counts.created, report.counts.failed), (1, 0), "{report:?}");
    assert_eq!(r.target.target.lock().unwrap().keys().collect::<Vec<_>>(), ["SPD-1001"]);
    assert_eq!(r.source.requested_keys.lock().unwrap().last().unwrap(), &None, "the source's own key differs: it reads all");

    // A mapping that leaves the key alone lets the source filter.
    let plain = rig(Stream::Products, ReadMode::Snapshot, WriteMode::Upsert, vec![product("A", "1"), product("B", "1")]).await;
    let report = plain.sync(RunOptions { keys: Some(vec!["B".into()]), ..opts() }).await;
    assert_eq!(report.counts.created, 1);
    assert_eq!(plain.source.requested_keys.lock().unwrap().last().unwrap(), &Some(vec!["B".to_owned()]));
}

/// A run whose process was killed (-9) stays `running` no longer than its lease: the next run of the flow
/// marks it interrupted, and so does anyone listing runs once the lease has expired.
#[tokio::test]
async fn runs_of_a_killed_process_are_marked_interrupted() {
    let r = rig(Stream::Products, ReadMode::Snapshot, WriteMode::Upsert, vec![product("A", "1")]).await;
    let host = ferry_engine::holder_id().rsplit_once(':').unwrap().0.to_owned();
    let dead = format!("{host}:2147483647");
    r.store.lock_flow("f", &dead, chrono::Duration::minutes(10)).await.unwrap();
    let killed = r.store.begin_run("f", "incremental").await.unwrap();

    // A live run of another host with a valid lease is left alone...
    let other = rig(Stream::Products, ReadMode::Snapshot, WriteMode::Upsert, vec![]).await;
    other.store.lock_flow("g", "elsewhere:1", chrono::Duration::minutes(10)).await.unwrap();
    let live = other.store.begin_run("g", "incremental").await.unwrap();
    assert_eq!(ferry_engine::lease::interrupt_stale_runs(other.store.as_ref(), None).await.unwrap(), 0);
    // ...until its lease expires without renewal.
    other.store.unlock_flow("g", "elsewhere:1").await.unwrap();
    other.store.lock_flow("g", "elsewhere:1", chrono::Duration::seconds(-1)).await.unwrap();
    assert_eq!(ferry_engine::lease::interrupt_stale_runs(other.store.as_ref(), None).await.unwrap(), 1);
    let run = other.store.runs(Some("g"), 1).await.unwrap().remove(0);
    assert_eq!((run.id, run.status.as_str()), (live, "interrupted"));
    assert!(run.error.as_deref().unwrap().contains("expired"), "{:?}", run.error);

    // The dead process's run: interrupted as soon as anyone looks, and by the next run.
    let report = r.sync(opts()).await;
    assert_eq!(report.counts.created, 1);
    let runs = r.store.runs(Some("f"), 10).await.unwrap();
    let old = runs.iter().find(|x| x.id == killed).unwrap();
    assert_eq!(old.status, "interrupted");
    assert!(old.error.as_deref().unwrap().contains(&dead), "{:?}", old.error);
    assert!(runs.iter().all(|x| x.status != "running"));
}

mod retire_share {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig { cases: 32, failure_persistence: None, ..ProptestConfig::default() })]
        /// Whatever the catalogue's size, the share and how much of it a snapshot lost, one run never
        /// retires more than `max_retire_share` of the live records (and an empty snapshot none).
        #[test]
        fn a_snapshot_read_never_retires_more_than_the_share(
            size in 1usize..40,
            kept in 0usize..40,
            share_pct in 0u32..=100,
            delete in any::<bool>(),
        ) {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async {
                let records: Vec<_> = (0..size).map(|i| customer(&format!("C{i:02}"))).collect();
                let mut r = rig(Stream::Customers, ReadMode::Snapshot, WriteMode::Upsert, records).await;
                r.flow.config.on_missing = if delete { OnMissing::Delete } else { OnMissing::Deactivate };
                r.flow.config.max_retire_share = Some(f64::from(share_pct) / 100.0);
                r.sync(opts()).await;
                r.source.source.lock().unwrap().truncate(kept.min(size));
                let report = r.sync(opts()).await;
                let limit = (f64::from(share_pct) / 100.0 * size as f64).floor() as u64;
                prop_assert!(report.counts.retired <= limit, "retired {} of {size} with share {share_pct} %", report.counts.retired);
                prop_assert_eq!(r.target.retired.lock().unwrap().len() as u64, report.counts.retired);
                if kept == 0 {
                    prop_assert_eq!(report.counts.retired, 0);
                }
                Ok(())
            })?;
        }
    }
}

/// What the target holds for `key`, as JSON.
fn target_json(r: &Rig, key: &str) -> serde_json::Value {
    serde_json::to_value(r.target.target.lock().unwrap().get(key).expect("written")).unwrap()
}

#[tokio::test]
async fn a_key_read_twice_is_named_with_both_positions_and_the_later_row_wins() {
    // P1 twice in one batch, P2 twice across batches (batch size 3).
    let records = vec![product("P1", "1"), product("P2", "2"), product("P1", "11"), product("P3", "3"), product("P2", "22")];
    let mut r = rig(Stream::Products, ReadMode::Snapshot, WriteMode::Upsert, records).await;
    r.flow.config.batch_size = Some(3);
    let report = r.sync(opts()).await;
    assert_eq!(report.counts.failed, 0);
    let named: Vec<_> = report.duplicates.iter().map(|d| (d.key.as_str(), d.first.as_deref(), d.again.as_str())).collect();
    assert_eq!(named, [("P1", Some("memory #0"), "memory #2"), ("P2", Some("memory #1"), "memory #4")]);
    assert!(report.warnings.iter().any(|w| w == "key P1 read twice: at memory #0 and at memory #2; the later one wins (on_duplicate = \"warn\")"), "{:?}", report.warnings);
    assert_eq!(target_json(&r, "P1")["price"]["amount"], "11");
    assert_eq!(target_json(&r, "P2")["price"]["amount"], "22");
    // Kept with the run: its records and its warnings (what `ferry status` shows).
    let run_id = report.run_id.unwrap();
    let records = r.store.run_records(run_id).await.unwrap();
    let dups: Vec<_> = records.iter().filter(|o| o.outcome == "duplicate").map(|o| o.key.as_str()).collect();
    assert_eq!(dups, ["P1", "P2"]);
    let runs = r.store.runs(Some("f"), 1).await.unwrap();
    assert_eq!(runs[0].warnings.len(), 2, "{:?}", runs[0].warnings);

    // Unchanged content read twice (recognised without mapping) is a duplicate too.
    let report = r.sync(opts()).await;
    assert_eq!(report.duplicates.len(), 2, "{:?}", report.duplicates);
}

#[tokio::test]
async fn on_duplicate_fail_keeps_the_first_row_and_parks_the_later_one() {
    let records = vec![product("P1", "1"), product("P2", "2"), product("P1", "11")];
    let mut r = rig(Stream::Products, ReadMode::Snapshot, WriteMode::Upsert, records).await;
    r.flow.config.on_duplicate = ferry_engine::duplicates::OnDuplicate::Fail;
    let report = r.sync(opts()).await;
    assert_eq!((report.counts.created, report.counts.failed), (2, 1));
    assert_eq!(target_json(&r, "P1")["price"]["amount"], "1");
    let parked = r.store.failures(Some("f"), None).await.unwrap();
    assert_eq!(parked.len(), 1);
    assert_eq!(parked[0].key, "P1 (duplicate at memory #2)");
    assert_eq!(parked[0].position.as_deref(), Some("memory #2"));
    assert_eq!(parked[0].source["price"]["amount"], "11");
    assert!(parked[0].message.contains("at memory #0 and at memory #2"), "{}", parked[0].message);
}

#[tokio::test]
async fn records_without_a_key_fail_one_by_one_with_their_own_payload() {
    // Two keyless records at the same position (as a miscounted line number once produced) stay two.
    let mut records = vec![json!({"name": "first"}), json!({"name": "second"})];
    records.push(product("P1", "1"));
    let r = rig(Stream::Products, ReadMode::Snapshot, WriteMode::Upsert, records).await;
    let report = r.sync(opts()).await;
    assert_eq!(report.counts.failed, 2);
    assert_eq!(report.failures[0].field.as_deref(), Some("sku"), "the field serde names is the failure's field");
    let parked = r.store.failures(Some("f"), None).await.unwrap();
    let mut names: Vec<_> = parked.iter().map(|f| (f.source["name"].as_str().unwrap().to_owned(), f.attempts)).collect();
    names.sort();
    assert_eq!(names, [("first".to_owned(), 1), ("second".to_owned(), 1)]);
    assert!(parked.iter().all(|f| f.key.starts_with(f.position.as_deref().unwrap()) && f.key.contains(" #")), "{parked:?}");
    // The same bad record read again is the same failure.
    r.sync(opts()).await;
    let parked = r.store.failures(Some("f"), None).await.unwrap();
    assert_eq!(parked.iter().map(|f| f.attempts).collect::<Vec<_>>(), [2, 2]);
}
