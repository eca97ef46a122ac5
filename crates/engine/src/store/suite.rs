//! The store test suite, run against both backends: every test is a generic function over a [`Store`],
//! instantiated once on a fresh SQLite file and once on a fresh PostgreSQL schema (dropped afterwards),
//! so the two behave the same by construction and nextest runs them all in parallel.

use super::jobs::*;
use super::keys::Scope;
use super::records::{RecordPut, RecordQuery};
use super::retention::{RecordsPrune, RunsPrune, RunsPruned};
use super::secrets::SealedSecret;
use super::*;
use super::alerts::{FlowHealth, Rejections, WaitingJob};
use super::dashboard::{GroupKey, NewWebhookLog};
use crate::alerts::Delivery;
use crate::connector::WriteAction;
use chrono::{Duration as ChronoDuration, TimeZone};
use std::time::Duration;

/// What a test needs beyond the traits (backdating rows it cannot make old through them).
pub(super) trait Hooks {
    async fn backdate_run(&self, id: i64, started_at: DateTime<Utc>);
    /// The reason and who, of a failure dropped from the dashboard (`dropped_failures`).
    async fn dropped_reason(&self, key: &str) -> Option<(String, String)>;
}

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 1, 12, 0, 0).unwrap()
}

fn day(d: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, d, 12, 0, 0).unwrap()
}

const LEASE: Duration = Duration::from_secs(60);

fn synced(key: &str, target: &str, hash: &str) -> Synced {
    Synced {
        key: key.into(),
        target_id: target.into(),
        hash: hash.into(),
        payload: format!(r#"{{"sku":"{key}","price":"10.50"}}"#),
        source_hash: Some(format!("src-{hash}")),
    }
}

fn failure(key: &str, retryable: bool) -> NewFailure {
    NewFailure {
        key: key.into(),
        position: Some("products.csv line 3".into()),
        stage: Stage::Validate,
        field: Some("price.amount".into()),
        message: "not a decimal".into(),
        retryable,
        source: serde_json::json!({"ItemCode": key, "SellPrice": "x"}),
    }
}

// ---- state: runs, leases, cross-reference, failures, checkpoints ----

pub(super) async fn a_flow_lease_has_one_holder_until_released_or_expired<S: Store + Hooks>(s: &S) {
    s.lock_flow("products", "host:1", ChronoDuration::minutes(10)).await.unwrap();
    s.lock_flow("products", "host:1", ChronoDuration::minutes(10)).await.expect("the holder renews its own lease");
    let e = s.lock_flow("products", "host:2", ChronoDuration::minutes(10)).await.unwrap_err();
    assert!(e.message.contains("already running in host:1"), "{e}");
    assert_eq!(s.lock_holder("products").await.unwrap().as_deref(), Some("host:1"));
    s.lock_flow("stock", "host:2", ChronoDuration::minutes(10)).await.expect("other flows are free");
    s.unlock_flow("products", "host:2").await.unwrap();
    assert_eq!(s.lock_holder("products").await.unwrap().as_deref(), Some("host:1"), "only the holder releases");
    s.unlock_flow("products", "host:1").await.unwrap();
    s.lock_flow("products", "host:2", ChronoDuration::milliseconds(-1)).await.unwrap();
    s.lock_flow("products", "host:3", ChronoDuration::minutes(1)).await.expect("an expired lease is taken over");
    assert_eq!(s.lock_holder("products").await.unwrap().as_deref(), Some("host:3"));
}

pub(super) async fn a_batch_commits_xref_failures_outcomes_checkpoint_and_counts_together<S: Store + Hooks>(s: &S) {
    s.lock_flow("products", "host:1", ChronoDuration::minutes(10)).await.unwrap();
    let run = s.begin_run("products", "full").await.unwrap();
    let counts = Counts { read: 4, created: 2, failed: 1, warned: 1, ..Default::default() };
    let outcomes = vec![
        RunRecord {
            key: "B".into(),
            outcome: "created",
            target_id: Some("t-b".into()),
            field: None,
            message: None,
            changes: Some(serde_json::json!([{"path": "price.amount", "old": null, "new": "10.50"}])),
        },
        RunRecord { key: "A".into(), outcome: "created", target_id: Some("t-a".into()), field: None, message: None, changes: None },
        RunRecord { key: "C".into(), outcome: "failed", target_id: None, field: Some("price.amount".into()), message: Some("not a decimal".into()), changes: None },
    ];
    s.commit_batch(
        "products",
        run,
        BatchCommit {
            // A key twice in one batch: the later row wins.
            synced: vec![synced("A", "t-old", "h0"), synced("B", "t-b", "h1"), synced("A", "t-a", "h1")],
            failed: vec![failure("C", true)],
            outcomes,
            checkpoint: Some(serde_json::from_str(r#"{"write_date": "2026-03-01T12:00:00.123456", "n": 1.50}"#).unwrap()),
            counts,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let found = s.lookup("products", &["A".into(), "B".into(), "Z".into()]).await.unwrap();
    assert_eq!(found.len(), 2);
    assert_eq!(found["A"], XrefEntry { target_id: "t-a".into(), hash: "h1".into() });
    assert!(s.lookup("stock", &["A".into()]).await.unwrap().is_empty(), "flows are separate");
    assert!(s.lookup("products", &[]).await.unwrap().is_empty());
    assert_eq!(s.payloads("products", &["B".into()]).await.unwrap()["B"]["price"], serde_json::json!("10.50"));
    assert_eq!(s.checkpoint("products").await.unwrap().unwrap().to_string(), r#"{"n":1.50,"write_date":"2026-03-01T12:00:00.123456"}"#);
    let recs = s.run_records(run).await.unwrap();
    assert_eq!(recs.iter().map(|r| (r.key.as_str(), r.outcome)).collect::<Vec<_>>(), [("B", "created"), ("A", "created"), ("C", "failed")]);
    assert_eq!(recs[2].field.as_deref(), Some("price.amount"));
    assert_eq!(recs[0].changes, Some(serde_json::json!([{"path": "price.amount", "old": null, "new": "10.50"}])), "a write's field-level changes are kept");
    assert_eq!(recs[1].changes, None);
    let runs = s.runs(Some("products"), 10).await.unwrap();
    assert_eq!((runs[0].id, runs[0].counts, runs[0].status.as_str()), (run, counts, "running"));
    // The failure: parked, retried later, attempts grow, resolved by a later write.
    let f = s.failures(Some("products"), None).await.unwrap();
    assert_eq!((f.len(), f[0].key.as_str(), f[0].attempts, f[0].retryable), (1, "C", 1, true));
    assert_eq!(f[0].source["SellPrice"], "x");
    assert!(f[0].next_retry_at.as_deref().unwrap() > f[0].last_failed_at.as_str());
    assert!(s.failures(None, Some(Utc::now())).await.unwrap().is_empty(), "not due yet");
    assert_eq!(s.failures(None, Some(Utc::now() + ChronoDuration::hours(7))).await.unwrap().len(), 1);
    s.commit_batch("products", run, BatchCommit { failed: vec![failure("C", false)], ..Default::default() }).await.unwrap();
    let again = s.failure(f[0].id).await.unwrap().unwrap();
    assert_eq!((again.attempts, again.retryable, again.next_retry_at.clone()), (2, false, None));
    assert_eq!(again.first_failed_at, f[0].first_failed_at);
    s.commit_batch("products", run, BatchCommit { synced: vec![synced("C", "t-c", "h1")], resolved: vec!["C".into()], ..Default::default() })
        .await
        .unwrap();
    assert!(s.failures(None, None).await.unwrap().is_empty());
    // Forgetting and the key pages (bytewise key order on both backends).
    s.commit_batch("products", run, BatchCommit { forgotten: vec!["B".into()], ..Default::default() }).await.unwrap();
    s.commit_batch("products", run, BatchCommit { synced: vec![synced("a", "t-la", "h1"), synced("Ä", "t-ae", "h1")], ..Default::default() })
        .await
        .unwrap();
    assert_eq!(s.xref_keys_page("products", "", 10).await.unwrap(), ["A", "C", "a", "Ä"]);
    assert_eq!(s.xref_keys_page("products", "A", 2).await.unwrap(), ["C", "a"]);
    let hashes = s.source_hash_page("products", "C", 10).await.unwrap();
    assert_eq!(hashes, [("a".to_string(), "src-h1".to_string()), ("Ä".to_string(), "src-h1".to_string())]);
    let rows = s.xref_find("t-a").await.unwrap();
    assert_eq!((rows.len(), rows[0].key.as_str(), rows[0].flow.as_str()), (1, "A", "products"));
    assert!(rows[0].synced_at.ends_with('Z') && rows[0].synced_at.len() == 27, "RFC 3339 with microseconds: {}", rows[0].synced_at);
    s.set_run_warnings(run, &["key A read twice".into()]).await.unwrap();
    s.finish_run(run, "ok", None).await.unwrap();
    let done = &s.runs(None, 1).await.unwrap()[0];
    assert_eq!((done.status.as_str(), done.warnings.clone()), ("ok", vec!["key A read twice".to_string()]));
    assert!(done.finished_at.is_some());
    s.reset_checkpoint("products").await.unwrap();
    assert!(s.checkpoint("products").await.unwrap().is_none());
    assert!(s.run_exists(run).await.unwrap() && !s.run_exists(run + 1000).await.unwrap());
}

pub(super) async fn failures_are_dropped_by_id_or_flow<S: Store + Hooks>(s: &S) {
    let run = s.begin_run("products", "full").await.unwrap();
    s.commit_batch("products", run, BatchCommit { failed: vec![failure("A", false), failure("B", false)], ..Default::default() }).await.unwrap();
    s.commit_batch("stock", run, BatchCommit { failed: vec![failure("A", false)], ..Default::default() }).await.unwrap();
    let ids: Vec<i64> = s.failures(Some("products"), None).await.unwrap().iter().map(|f| f.id).collect();
    assert_eq!(s.drop_failures(Some("products"), &ids[..1]).await.unwrap(), 1);
    assert_eq!(s.drop_failures(Some("products"), &[]).await.unwrap(), 1, "no ids: the whole flow");
    assert_eq!(s.failures(None, None).await.unwrap().iter().map(|f| f.flow.as_str()).collect::<Vec<_>>(), ["stock"]);
}

pub(super) async fn a_running_run_without_a_live_lease_is_interrupted<S: Store + Hooks>(s: &S) {
    s.lock_flow("products", "host:1", ChronoDuration::minutes(10)).await.unwrap();
    let alive = s.begin_run("products", "full").await.unwrap();
    assert_eq!(s.interrupt_stale_runs(None, &|_| false).await.unwrap(), 0, "its lease is live");
    assert_eq!(s.interrupt_stale_runs(Some("products"), &|h| h == "host:1").await.unwrap(), 1, "its process is gone");
    let run = &s.runs(Some("products"), 1).await.unwrap()[0];
    assert_eq!((run.id, run.status.as_str()), (alive, "interrupted"));
    assert!(run.error.as_deref().unwrap().contains("host:1 no longer exists"), "{:?}", run.error);
    s.unlock_flow("products", "host:1").await.unwrap();
    let released = s.begin_run("products", "full").await.unwrap();
    assert_eq!(s.interrupt_stale_runs(None, &|_| false).await.unwrap(), 1);
    assert!(s.runs(None, 1).await.unwrap()[0].error.as_deref().unwrap().contains("released"), "run {released}");
}

// ---- jobs ----

pub(super) async fn dedupe_key_enqueues_once<S: Store + Hooks>(s: &S) {
    let mut job = NewJob::new("products", JobKind::Scheduled, t0());
    job.dedupe_key = Some("schedule:products:2026-03-01T12:00:00Z".into());
    let a = s.enqueue(job.clone()).await.unwrap();
    let b = s.enqueue(job).await.unwrap();
    assert!(a.created && !b.created);
    assert_eq!(a.id, b.id);
    assert_eq!(s.jobs(&JobFilter::default()).await.unwrap().len(), 1);
    assert_eq!(s.latest_dedupe_run_after("schedule:products:").await.unwrap(), Some(t0()));
    assert_eq!(s.latest_dedupe_run_after("schedule:product:").await.unwrap(), None);
    // A firing that failed and waits for its retry keeps marking its own instant, not its retry's.
    let id = a.id;
    s.claim("w", LEASE, t0()).await.unwrap().unwrap();
    s.fail(id, "w", None, "flow products is already running", Some(t0() + ChronoDuration::minutes(3)), t0()).await.unwrap();
    assert_eq!(s.latest_dedupe_run_after("schedule:products:").await.unwrap(), Some(t0()));
}

pub(super) async fn targeted_jobs_of_the_claimed_flow_coalesce_into_one_lease_and_others_do_not<S: Store + Hooks>(s: &S) {
    let hook = |key: &str| {
        let mut j = NewJob::new("products", JobKind::Webhook, t0());
        j.keys = Some(vec![key.into()]);
        j
    };
    for k in ["A", "B", "C", "D"] {
        s.enqueue(hook(k)).await.unwrap();
    }
    s.enqueue(NewJob::new("products", JobKind::Manual, t0())).await.unwrap();
    let mut later = hook("LATER");
    later.run_after = t0() + ChronoDuration::seconds(30);
    s.enqueue(later).await.unwrap();
    let mut other = hook("X");
    other.flow = "stock".into();
    s.enqueue(other).await.unwrap();
    let first = s.claim("w1", LEASE, t0()).await.unwrap().unwrap();
    assert_eq!(first.keys, Some(vec!["A".to_string()]));
    let more = s.claim_targeted("products", "w1", LEASE, t0(), 2).await.unwrap();
    assert_eq!(more.iter().map(|j| j.keys.clone().unwrap()[0].clone()).collect::<Vec<_>>(), ["B", "C"]);
    assert!(more.iter().all(|j| j.status == JobStatus::Running && j.lease_holder.as_deref() == Some("w1") && j.attempts == 1));
    let rest = s.claim_targeted("products", "w1", LEASE, t0(), 100).await.unwrap();
    assert_eq!(rest.iter().map(|j| j.keys.clone().unwrap()[0].clone()).collect::<Vec<_>>(), ["D"]);
    assert_eq!(s.claim("w2", LEASE, t0()).await.unwrap().unwrap().flow, "stock");
    assert!(s.claim("w2", LEASE, t0()).await.unwrap().is_none());
}

pub(super) async fn claim_respects_run_after_and_one_running_job_per_flow<S: Store + Hooks>(s: &S) {
    let mut later = NewJob::new("stock", JobKind::Manual, t0() + ChronoDuration::seconds(30));
    later.keys = Some(vec!["SKU-1".into()]);
    s.enqueue(later).await.unwrap();
    s.enqueue(NewJob::new("products", JobKind::Manual, t0())).await.unwrap();
    s.enqueue(NewJob::new("products", JobKind::Webhook, t0())).await.unwrap();
    let first = s.claim("w1", LEASE, t0()).await.unwrap().unwrap();
    assert_eq!((first.flow.as_str(), first.attempts, first.status), ("products", 1, JobStatus::Running));
    assert!(s.claim("w2", LEASE, t0()).await.unwrap().is_none());
    let stock = s.claim("w2", LEASE, t0() + ChronoDuration::seconds(30)).await.unwrap().unwrap();
    assert_eq!(stock.keys, Some(vec!["SKU-1".to_string()]));
    assert!(s.complete(first.id, "w1", Some(7), t0()).await.unwrap());
    let second = s.claim("w2", LEASE, t0()).await.unwrap().unwrap();
    assert_eq!(second.kind, JobKind::Webhook);
    let done = s.job(first.id).await.unwrap().unwrap();
    assert_eq!((done.status, done.run_id), (JobStatus::Succeeded, Some(7)));
}

pub(super) async fn an_expired_lease_is_claimed_again_and_the_dead_worker_can_no_longer_finish_it<S: Store + Hooks>(s: &S) {
    let id = s.enqueue(NewJob::new("orders", JobKind::Manual, t0())).await.unwrap().id;
    let a = s.claim("dead-worker", LEASE, t0()).await.unwrap().unwrap();
    assert!(s.heartbeat(id, "dead-worker", LEASE, t0() + ChronoDuration::seconds(30)).await.unwrap());
    assert!(s.claim("w2", LEASE, t0() + ChronoDuration::seconds(89)).await.unwrap().is_none());
    let b = s.claim("w2", LEASE, t0() + ChronoDuration::seconds(91)).await.unwrap().unwrap();
    assert_eq!((a.id, b.id, b.attempts), (id, id, 2));
    assert!(!s.heartbeat(id, "dead-worker", LEASE, t0() + ChronoDuration::seconds(92)).await.unwrap());
    assert!(!s.complete(id, "dead-worker", None, t0() + ChronoDuration::seconds(92)).await.unwrap());
    assert!(s.complete(id, "w2", None, t0() + ChronoDuration::seconds(93)).await.unwrap());
}

pub(super) async fn fail_with_retry_requeues_and_without_fails_for_good_and_release_does_not_count<S: Store + Hooks>(s: &S) {
    let id = s.enqueue(NewJob::new("orders", JobKind::Manual, t0())).await.unwrap().id;
    s.claim("w", LEASE, t0()).await.unwrap().unwrap();
    let retry_at = t0() + ChronoDuration::seconds(30);
    assert!(s.fail(id, "w", Some(3), "tryton: connection refused", Some(retry_at), t0()).await.unwrap());
    let j = s.job(id).await.unwrap().unwrap();
    assert_eq!((j.status, j.run_after, j.error.as_deref()), (JobStatus::Queued, retry_at, Some("tryton: connection refused")));
    assert!(s.claim("w", LEASE, t0()).await.unwrap().is_none());
    let j = s.claim("w", LEASE, retry_at).await.unwrap().unwrap();
    assert_eq!(j.attempts, 2);
    assert!(s.release(id, "w", retry_at).await.unwrap());
    assert_eq!(s.job(id).await.unwrap().unwrap().attempts, 1);
    s.claim("w", LEASE, retry_at).await.unwrap().unwrap();
    assert!(s.fail(id, "w", None, "bad mapping", None, retry_at).await.unwrap());
    let depth = s.queue_depth(retry_at).await.unwrap();
    assert_eq!(depth, QueueDepth { queued: 0, due: 0, running: 0, failed: 1 });
    assert!(s.requeue(id, retry_at).await.unwrap());
    assert_eq!(s.queue_depth(retry_at).await.unwrap().due, 1);
    let listed = s.jobs(&JobFilter { status: Some(JobStatus::Queued), flow: Some("orders".into()), limit: 5 }).await.unwrap();
    assert_eq!(listed.iter().map(|j| j.id).collect::<Vec<_>>(), [id]);
}

/// Many workers, each with a store of its own (as separate processes have), race for 200 jobs of 5 flows:
/// each job is claimed once, and no flow ever has two live running jobs.
pub(super) async fn concurrent_workers_claim_each_job_once_and_never_two_of_a_flow<S: Store + Hooks + 'static>(stores: Vec<S>) {
    let stores: Vec<std::sync::Arc<S>> = stores.into_iter().map(std::sync::Arc::new).collect();
    for i in 0..200 {
        let mut j = NewJob::new(format!("flow{}", i % 5), JobKind::Manual, t0());
        j.dedupe_key = Some(format!("job-{i}"));
        stores[0].enqueue(j).await.unwrap();
    }
    let running: std::sync::Arc<std::sync::Mutex<std::collections::HashSet<String>>> = Default::default();
    let mut workers = Vec::new();
    for (w, s) in stores.iter().enumerate() {
        for lane in 0..3 {
            let (s, running) = (s.clone(), running.clone());
            workers.push(tokio::spawn(async move {
                let me = format!("w{w}.{lane}");
                let mut done = Vec::new();
                loop {
                    let Some(job) = s.claim(&me, LEASE, t0()).await.unwrap() else {
                        if s.queue_depth(t0()).await.unwrap().due == 0 {
                            return done;
                        }
                        tokio::task::yield_now().await;
                        continue;
                    };
                    assert!(running.lock().unwrap().insert(job.flow.clone()), "flow {} claimed twice at once", job.flow);
                    tokio::task::yield_now().await;
                    running.lock().unwrap().remove(&job.flow);
                    assert!(s.complete(job.id, &me, None, t0()).await.unwrap());
                    done.push(job.id);
                }
            }));
        }
    }
    let mut all = Vec::new();
    for w in workers {
        all.extend(w.await.unwrap());
    }
    all.sort();
    let before = all.len();
    all.dedup();
    assert_eq!((before, all.len()), (200, 200), "every job done exactly once");
}

// ---- records, keys ----

pub(super) async fn upserts_report_their_action_and_pages_follow_change_order<S: Store + Hooks>(s: &S) {
    let put = |key: &str, hash: &str| RecordPut { key: key.into(), hash: hash.into(), payload: serde_json::json!({"sku": key, "h": hash}) };
    let now = Utc::now();
    let a = s.put_records("default", "products", vec![put("A", "1"), put("B", "1"), put("C", "1")], now).await.unwrap();
    assert_eq!(a, [WriteAction::Created; 3]);
    let b = s.put_records("default", "products", vec![put("A", "1"), put("B", "2")], now).await.unwrap();
    assert_eq!(b, [WriteAction::Unchanged, WriteAction::Updated]);
    s.put_records("other", "products", vec![put("A", "9")], now).await.unwrap();
    let page1 = s.get_records("default", "products", &RecordQuery { limit: 2, ..Default::default() }).await.unwrap();
    assert_eq!(page1.iter().map(|r| r.key.as_str()).collect::<Vec<_>>(), ["A", "C"]);
    let page2 = s
        .get_records("default", "products", &RecordQuery { after_seq: Some(page1[1].seq), limit: 2, ..Default::default() })
        .await
        .unwrap();
    assert_eq!(page2.iter().map(|r| (r.key.as_str(), r.payload["h"].as_str().unwrap())).collect::<Vec<_>>(), [("B", "2")]);
    let by_key = s.get_records("default", "products", &RecordQuery { keys: Some(vec!["C".into()]), limit: 9, ..Default::default() }).await.unwrap();
    assert_eq!(by_key.len(), 1);
    let twice = s.put_records("default", "products", vec![put("E", "1"), put("E", "2")], now).await.unwrap();
    assert_eq!(twice, [WriteAction::Created, WriteAction::Updated], "a key twice in one push: the later wins");
    let e = s.get_records("default", "products", &RecordQuery { keys: Some(vec!["E".into()]), limit: 9, ..Default::default() }).await.unwrap();
    assert_eq!(e[0].payload["h"], "2");
    assert_eq!(s.delete_records("default", "products", &["B".into(), "Z".into()]).await.unwrap(), ["B"]);
}

pub(super) async fn keys_are_verified_by_token_and_revocable<S: Store + Hooks>(s: &S) {
    let (key, token) = s.create_key("shop frontend", &[Scope::Read, Scope::Write]).await.unwrap();
    let found = s.verify_key(&token).await.unwrap().unwrap();
    assert_eq!(found.id, key.id);
    assert!(found.allows(Scope::Write) && !found.allows(Scope::Admin));
    assert!(s.verify_key(&format!("{token}x")).await.unwrap().is_none());
    assert_eq!(s.list_keys().await.unwrap().len(), 1);
    assert!(s.list_keys().await.unwrap()[0].last_used_at.is_some());
    assert!(s.revoke_key(&key.id).await.unwrap());
    assert!(!s.revoke_key(&key.id).await.unwrap());
    assert!(s.verify_key(&token).await.unwrap().is_none());
}

// ---- retention ----

async fn run<S: Store + Hooks>(s: &S, flow: &str, d: u32, status: &str, records: usize) -> i64 {
    let id = s.begin_run(flow, "incremental").await.unwrap();
    let outcomes = (0..records).map(|i| RunRecord { key: format!("K{i}"), outcome: "created", target_id: None, field: None, message: None, changes: None }).collect();
    s.commit_batch(flow, id, BatchCommit { outcomes, ..Default::default() }).await.unwrap();
    if status != "running" {
        s.finish_run(id, status, None).await.unwrap();
    }
    s.backdate_run(id, day(d)).await;
    id
}

async fn run_ids<S: Store + Hooks>(s: &S) -> Vec<i64> {
    let mut ids: Vec<i64> = s.runs(None, 1000).await.unwrap().iter().map(|r| r.id).collect();
    ids.sort();
    ids
}

pub(super) async fn old_runs_go_with_their_records_but_not_the_newest_of_a_flow_or_a_running_one<S: Store + Hooks>(s: &S) {
    let old = run(s, "products", 1, "ok", 3).await;
    let running = run(s, "products", 2, "running", 1).await;
    let recent = run(s, "products", 20, "failed_records", 2).await;
    let only = run(s, "stock", 1, "ok", 1).await;
    let rule = RunsPrune { older_than: Some(day(10)), keep_per_flow: None };
    let dry = s.prune_runs(rule, true).await.unwrap();
    assert_eq!(dry, RunsPruned { runs: 1, run_records: 3 });
    assert_eq!(run_ids(s).await, [old, running, recent, only], "a dry run removes nothing");
    assert_eq!(s.prune_runs(rule, false).await.unwrap(), dry);
    assert_eq!(run_ids(s).await, [running, recent, only]);
    assert!(s.run_records(old).await.unwrap().is_empty());
    assert_eq!(s.run_records(recent).await.unwrap().len(), 2);
    assert_eq!(s.prune_runs(rule, false).await.unwrap(), RunsPruned::default());
    let ids: Vec<i64> = {
        let mut v = Vec::new();
        for d in 20..26 {
            v.push(run(s, "orders", d, "ok", 1).await);
        }
        v
    };
    let pruned = s.prune_runs(RunsPrune { older_than: None, keep_per_flow: Some(2) }, false).await.unwrap();
    assert_eq!(pruned.runs, 4, "orders keeps its newest two; the others have two or fewer");
    assert!(run_ids(s).await.ends_with(&ids[4..]));
}

async fn finish<S: Store + Hooks>(s: &S, flow: &str, kind: JobKind, d: u32, ok: bool) -> i64 {
    let id = s.enqueue(NewJob::new(flow, kind, day(d))).await.unwrap().id;
    assert_eq!(s.claim("w", LEASE, day(d)).await.unwrap().unwrap().id, id);
    if ok {
        s.complete(id, "w", None, day(d)).await.unwrap();
    } else {
        s.fail(id, "w", None, "boom", None, day(d)).await.unwrap();
    }
    id
}

pub(super) async fn succeeded_jobs_go_after_their_age_but_failed_ones_and_each_flows_newest_stay<S: Store + Hooks>(s: &S) {
    let old_ok = finish(s, "products", JobKind::Scheduled, 1, true).await;
    let old_failed = finish(s, "products", JobKind::Scheduled, 2, false).await;
    let newest_scheduled = finish(s, "products", JobKind::Scheduled, 3, true).await;
    let old_webhook = finish(s, "products", JobKind::Webhook, 1, true).await;
    let newest_webhook = finish(s, "products", JobKind::Webhook, 2, true).await;
    let recent = finish(s, "stock", JobKind::Manual, 20, true).await;
    assert_eq!(s.prune_jobs(day(10), true).await.unwrap(), 2);
    assert_eq!(s.prune_jobs(day(10), false).await.unwrap(), 2);
    let mut left: Vec<i64> = s.jobs(&JobFilter { limit: 100, ..Default::default() }).await.unwrap().iter().map(|j| j.id).collect();
    left.sort();
    assert_eq!(left, [old_failed, newest_scheduled, newest_webhook, recent]);
    assert!(!left.contains(&old_ok) && !left.contains(&old_webhook));
}

pub(super) async fn pushed_records_go_once_read_and_old_unless_a_failure_holds_them<S: Store + Hooks>(s: &S) {
    let put = |k: &str| RecordPut { key: k.into(), hash: k.into(), payload: serde_json::json!({"number": k}) };
    s.put_records("web", "orders", vec![put("A"), put("B"), put("C")], day(1)).await.unwrap();
    s.put_records("web", "orders", vec![put("D")], day(20)).await.unwrap();
    s.put_records("other", "orders", vec![put("A")], day(1)).await.unwrap();
    let all = s.get_records("web", "orders", &RecordQuery { limit: 10, ..Default::default() }).await.unwrap();
    let seq = |k: &str| all.iter().find(|r| r.key == k).unwrap().seq;
    let rule = RecordsPrune { collection: "web".into(), stream: "orders".into(), up_to_seq: seq("C").max(seq("D")), changed_before: day(10), keep_keys: vec!["B".into()] };
    assert_eq!(s.prune_records(&rule, true).await.unwrap(), 2);
    assert_eq!(s.prune_records(&rule, false).await.unwrap(), 2);
    let left: Vec<String> = s.get_records("web", "orders", &RecordQuery { limit: 10, ..Default::default() }).await.unwrap().into_iter().map(|r| r.key).collect();
    assert_eq!(left, ["B", "D"]);
    assert_eq!(s.get_records("other", "orders", &RecordQuery { limit: 10, ..Default::default() }).await.unwrap().len(), 1);
    let unread = RecordsPrune { up_to_seq: 0, keep_keys: vec![], ..rule };
    assert_eq!(s.prune_records(&unread, false).await.unwrap(), 0);
}

pub(super) async fn the_last_prune_is_remembered<S: Store + Hooks>(s: &S) {
    assert_eq!(s.last_prune().await.unwrap(), None);
    s.log_prune(day(1), day(1) + ChronoDuration::seconds(3), &serde_json::json!({"runs": 1})).await.unwrap();
    s.log_prune(day(2), day(2) + ChronoDuration::seconds(3), &serde_json::json!({"runs": 0})).await.unwrap();
    assert_eq!(s.last_prune().await.unwrap(), Some(day(2)));
}

// ---- secrets, deliveries ----

pub(super) async fn secrets_round_trip_list_delete_and_reseal<S: Store + Hooks>(s: &S) {
    let a = SealedSecret { name: "a".into(), key_id: "k1".into(), nonce: vec![1; 24], ciphertext: vec![2, 0, 255, 2] };
    s.put_secret(a.clone()).await.unwrap();
    s.put_secret(SealedSecret { name: "B".into(), ..a.clone() }).await.unwrap();
    assert_eq!(s.get_secret("a").await.unwrap().unwrap().ciphertext, vec![2, 0, 255, 2]);
    assert_eq!(s.list_secrets().await.unwrap().iter().map(|i| i.name.as_str()).collect::<Vec<_>>(), ["B", "a"]);
    s.reseal_all(vec![SealedSecret { key_id: "k2".into(), ciphertext: vec![3; 20], ..a.clone() }]).await.unwrap();
    let got = s.get_secret("a").await.unwrap().unwrap();
    assert_eq!((got.key_id.as_str(), got.ciphertext), ("k2", vec![3; 20]));
    assert!(s.reseal_all(vec![SealedSecret { name: "zz".into(), key_id: "k3".into(), ..a.clone() }]).await.is_err());
    assert_eq!(s.all_secrets().await.unwrap().len(), 2);
    assert!(s.delete_secret("B").await.unwrap());
    assert!(!s.delete_secret("B").await.unwrap());
    assert!(s.get_secret("B").await.unwrap().is_none());
}

pub(super) async fn a_delivery_is_first_once_within_its_window<S: Store + Hooks>(s: &S) {
    let t0 = Utc::now();
    let hour = ChronoDuration::hours(1);
    assert_eq!(s.seen_delivery("shop", "d1", t0 - hour).await.unwrap(), None);
    assert!(s.claim_delivery("shop", "d1", t0).await.unwrap());
    assert!(!s.claim_delivery("shop", "d1", t0).await.unwrap());
    s.set_delivery_jobs("shop", "d1", &[7, 8]).await.unwrap();
    assert_eq!(s.seen_delivery("shop", "d1", t0 - hour).await.unwrap(), Some(vec![7, 8]));
    assert_eq!(s.seen_delivery("other", "d1", t0 - hour).await.unwrap(), None);
    assert_eq!(s.seen_delivery("shop", "d1", t0 + hour).await.unwrap(), None);
    assert_eq!(s.forget_deliveries(t0 + hour).await.unwrap(), 1);
    assert!(s.claim_delivery("shop", "d1", t0 + hour).await.unwrap());
    s.release_delivery("shop", "d1").await.unwrap();
    assert!(s.claim_delivery("shop", "d1", t0 + hour).await.unwrap());
}

// ---- dashboard ----

fn grouped_failure(key: &str, field: &str) -> NewFailure {
    NewFailure {
        key: key.into(),
        position: None,
        stage: Stage::Validate,
        field: Some(field.into()),
        message: format!("{key}: {field} is wrong"),
        retryable: false,
        source: serde_json::json!({"sku": key}),
    }
}

pub(super) async fn failures_group_by_flow_stage_and_field_page_by_id_and_drop_with_their_reason<S: Store + Hooks>(s: &S) {
    let run = s.begin_run("products", "incremental").await.unwrap();
    let failed = vec![grouped_failure("A", "price.amount"), grouped_failure("B", "price.amount"), grouped_failure("C", "name")];
    s.commit_batch("products", run, BatchCommit { failed, ..Default::default() }).await.unwrap();
    let groups = s.failure_groups(10).await.unwrap();
    assert_eq!(groups.len(), 2);
    assert_eq!((groups[0].field.as_str(), groups[0].count, groups[0].sample_message.as_str()), ("price.amount", 2, "A: price.amount is wrong"));
    let group = GroupKey { flow: "products".into(), stage: "validate".into(), field: "price.amount".into() };
    let first = s.failures_page(&group, None, 1).await.unwrap();
    assert_eq!(first[0].key, "A");
    let second = s.failures_page(&group, Some(first[0].id), 1).await.unwrap();
    assert_eq!(second[0].key, "B");
    assert!(s.failures_page(&group, Some(second[0].id), 1).await.unwrap().is_empty());

    assert!(s.set_failure_source(first[0].id, &serde_json::json!({"sku": "A", "price": "1"})).await.unwrap());
    assert_eq!(s.failure(first[0].id).await.unwrap().unwrap().source, serde_json::json!({"sku": "A", "price": "1"}));
    assert!(s.drop_failure_with_reason(second[0].id, "discontinued item", "admin", Utc::now()).await.unwrap());
    assert!(!s.drop_failure_with_reason(second[0].id, "again", "admin", Utc::now()).await.unwrap());
    assert_eq!(s.dropped_reason("B").await, Some(("discontinued item".into(), "admin".into())));
    assert_eq!(s.open_failures_by_flow().await.unwrap()["products"], 2);
}

pub(super) async fn a_record_is_found_by_key_or_target_id_with_the_runs_that_touched_it<S: Store + Hooks>(s: &S) {
    let run = s.begin_run("orders", "incremental").await.unwrap();
    let synced = vec![crate::store::Synced {
        key: "WEB-1001".into(),
        target_id: "sale-7".into(),
        hash: "h".into(),
        payload: r#"{"number":"WEB-1001"}"#.into(),
        source_hash: None,
    }];
    let outcomes = vec![crate::store::RunRecord {
        key: "WEB-1001".into(),
        outcome: "created",
        target_id: Some("sale-7".into()),
        field: None,
        message: None,
        changes: Some(serde_json::json!([{"path": "number", "old": null, "new": "WEB-1001"}])),
    }];
    s.commit_batch("orders", run, BatchCommit { synced, outcomes, ..Default::default() }).await.unwrap();
    let flows = vec!["orders".to_owned(), "products".to_owned()];
    let by_key = s.find_record(&flows, "WEB-1001").await.unwrap();
    assert_eq!((by_key.len(), by_key[0].target_id.as_str()), (1, "sale-7"));
    assert_eq!(s.find_record(&flows, "sale-7").await.unwrap()[0].key, "WEB-1001");
    assert!(s.find_record(&flows, "nothing").await.unwrap().is_empty());
    let runs = s.runs_touching("WEB-1001", 10).await.unwrap();
    assert_eq!((runs[0].run_id, runs[0].outcome.as_str()), (run, "created"));
    let records = s.run_records_page(run, None, 10).await.unwrap();
    assert_eq!(records[0].changes, Some(serde_json::json!([{"path": "number", "old": null, "new": "WEB-1001"}])));
    assert!(s.run_records_page(run, Some(records[0].seq), 10).await.unwrap().is_empty());
    assert_eq!(s.last_runs(&flows).await.unwrap()["orders"].id, run);
    assert_eq!(s.runs_page("orders", Some(run), 10).await.unwrap().len(), 0);
}

pub(super) async fn the_webhook_log_pages_newest_first_per_connection<S: Store + Hooks>(s: &S) {
    for (i, conn) in ["shop", "erp", "shop"].iter().enumerate() {
        s.log_webhook(NewWebhookLog {
            connection: (*conn).into(),
            received_at: Utc::now(),
            status: if i == 2 { 401 } else { 202 },
            outcome: if i == 2 { "rejected" } else { "enqueued" },
            code: (i == 2).then(|| "invalid_signature".into()),
            message: None,
            delivery_id: None,
            jobs: vec![i as i64],
            bytes: 10,
        })
        .await
        .unwrap();
    }
    let shop = s.webhook_log_page(Some("shop"), None, 10).await.unwrap();
    assert_eq!(shop.iter().map(|e| e.outcome.as_str()).collect::<Vec<_>>(), ["rejected", "enqueued"]);
    assert_eq!(shop[0].code.as_deref(), Some("invalid_signature"));
    let older = s.webhook_log_page(None, Some(shop[0].id), 1).await.unwrap();
    assert_eq!(older[0].connection, "erp");
}

// ---- alerts ----

fn minute(m: i64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 12, 3, 12, 0, 0).unwrap() + ChronoDuration::minutes(m)
}

pub(super) async fn flow_health_reads_the_newest_finished_and_completed_runs<S: Store + Hooks>(s: &S) {
    let ok = s.begin_run("orders", "incremental").await.unwrap();
    s.finish_run(ok, "ok", None).await.unwrap();
    let aborted = s.begin_run("orders", "incremental").await.unwrap();
    s.finish_run(aborted, "aborted", Some("endpoint down")).await.unwrap();
    let _running = s.begin_run("orders", "incremental").await.unwrap();
    let h = s.flow_health(&["orders".into(), "stock".into()]).await.unwrap();
    let last = h["orders"].last_finished.clone().unwrap();
    assert_eq!((last.id, last.status.as_str(), last.error.as_deref()), (aborted, "aborted", Some("endpoint down")));
    assert!(h["orders"].last_success_at.is_some());
    assert_eq!(h["stock"], FlowHealth::default());
}

pub(super) async fn failures_queue_rejections_and_watch_are_read_back<S: Store + Hooks>(s: &S) {
    assert!(s.open_failure_counts().await.unwrap().is_empty());
    assert_eq!(s.oldest_due_job(minute(0)).await.unwrap(), None);
    let a = s.enqueue(NewJob::new("orders", JobKind::Manual, minute(-20))).await.unwrap().id;
    s.enqueue(NewJob::new("stock", JobKind::Manual, minute(-5))).await.unwrap();
    s.enqueue(NewJob::new("stock", JobKind::Manual, minute(30))).await.unwrap();
    assert_eq!(s.oldest_due_job(minute(0)).await.unwrap(), Some(WaitingJob { id: a, flow: "orders".into(), run_after: minute(-20), due: 2 }));

    let x = |m, code: &str, count| Rejections { connection: "shop".into(), minute: minute(m), code: code.into(), count };
    s.add_rejections(&[x(0, "invalid_signature", 2), x(1, "invalid_signature", 1)]).await.unwrap();
    s.add_rejections(&[x(0, "invalid_signature", 3)]).await.unwrap();
    assert_eq!(s.rejections_since(minute(0)).await.unwrap(), [x(0, "invalid_signature", 5), x(1, "invalid_signature", 1)]);
    assert_eq!(s.forget_rejections(minute(1)).await.unwrap(), 1);
    assert_eq!(s.rejections_since(minute(-60)).await.unwrap(), [x(1, "invalid_signature", 1)]);

    assert_eq!(s.watching_since(minute(0)).await.unwrap(), minute(0));
    assert_eq!(s.watching_since(minute(99)).await.unwrap(), minute(0), "the first instant stays");
}

pub(super) async fn one_open_alert_per_rule_and_subject_with_its_deliveries<S: Store + Hooks>(s: &S) {
    let id = s.open_alert("failed", "orders", "flow orders: run 1 aborted", minute(0)).await.unwrap().unwrap();
    assert_eq!(s.open_alert("failed", "orders", "again", minute(1)).await.unwrap(), None, "already open");
    let other = s.open_alert("failed", "stock", "flow stock: run 2 aborted", minute(1)).await.unwrap().unwrap();
    s.record_delivery(id, "mail", false, minute(0)).await.unwrap();
    s.record_delivery(id, "chat", false, minute(1)).await.unwrap();
    let active = s.active_alerts().await.unwrap();
    assert_eq!(active.iter().map(|a| a.id).collect::<Vec<_>>(), [id, other]);
    assert_eq!(active[0].deliveries["chat"], Delivery { fired_at: Some(minute(1)), resolved_at: None });
    assert_eq!(active[0].message, "flow orders: run 1 aborted");

    s.resolve_alert(id, minute(5)).await.unwrap();
    s.resolve_alert(other, minute(5)).await.unwrap();
    s.record_delivery(id, "mail", true, minute(5)).await.unwrap();
    let active = s.active_alerts().await.unwrap();
    assert_eq!(active.len(), 1, "chat still owes the resolved message; stock never fired: {active:?}");
    assert_eq!(active[0].resolved_at, Some(minute(5)));
    s.record_delivery(id, "chat", true, minute(6)).await.unwrap();
    assert!(s.active_alerts().await.unwrap().is_empty());

    // the same problem again: a new alert; the cool-down sees the last "fired" of the old one
    let again = s.open_alert("failed", "orders", "flow orders: run 3 aborted", minute(10)).await.unwrap().unwrap();
    assert_ne!(again, id);
    let last = s.last_fired(minute(-60)).await.unwrap();
    assert_eq!(last[&("failed".to_string(), "orders".to_string(), "chat".to_string())], minute(1));
    assert!(s.last_fired(minute(2)).await.unwrap().is_empty(), "older than the window");

    assert_eq!(s.forget_alerts(minute(7)).await.unwrap(), 2);
    assert_eq!(s.active_alerts().await.unwrap().iter().map(|a| a.id).collect::<Vec<_>>(), [again]);
}

macro_rules! suite {
    ($backend:ident, $open:ident, $open_many:ident, [$($test:ident),* $(,)?]) => {
        mod $backend {
            $(
                #[tokio::test]
                async fn $test() {
                    let (store, _scratch) = super::$open().await;
                    super::$test(&store).await;
                }
            )*

            #[tokio::test]
            async fn concurrent_workers_claim_each_job_once_and_never_two_of_a_flow() {
                let (stores, _scratch) = super::$open_many(3).await;
                super::concurrent_workers_claim_each_job_once_and_never_two_of_a_flow(stores).await;
            }
        }
    };
}

macro_rules! both {
    ($($test:ident),* $(,)?) => {
        suite!(on_sqlite, open_sqlite, open_sqlite_many, [$($test),*]);
        suite!(on_postgres, open_postgres, open_postgres_many, [$($test),*]);
    };
}

both!(
    a_flow_lease_has_one_holder_until_released_or_expired,
    a_batch_commits_xref_failures_outcomes_checkpoint_and_counts_together,
    failures_are_dropped_by_id_or_flow,
    a_running_run_without_a_live_lease_is_interrupted,
    dedupe_key_enqueues_once,
    targeted_jobs_of_the_claimed_flow_coalesce_into_one_lease_and_others_do_not,
    claim_respects_run_after_and_one_running_job_per_flow,
    an_expired_lease_is_claimed_again_and_the_dead_worker_can_no_longer_finish_it,
    fail_with_retry_requeues_and_without_fails_for_good_and_release_does_not_count,
    upserts_report_their_action_and_pages_follow_change_order,
    keys_are_verified_by_token_and_revocable,
    old_runs_go_with_their_records_but_not_the_newest_of_a_flow_or_a_running_one,
    succeeded_jobs_go_after_their_age_but_failed_ones_and_each_flows_newest_stay,
    pushed_records_go_once_read_and_old_unless_a_failure_holds_them,
    the_last_prune_is_remembered,
    secrets_round_trip_list_delete_and_reseal,
    a_delivery_is_first_once_within_its_window,
    failures_group_by_flow_stage_and_field_page_by_id_and_drop_with_their_reason,
    a_record_is_found_by_key_or_target_id_with_the_runs_that_touched_it,
    the_webhook_log_pages_newest_first_per_connection,
    flow_health_reads_the_newest_finished_and_completed_runs,
    failures_queue_rejections_and_watch_are_read_back,
    one_open_alert_per_rule_and_subject_with_its_deliveries,
);

async fn open_sqlite() -> (SqliteStore, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    (SqliteStore::open(&dir.path().join("state.db")).await.unwrap(), dir)
}

async fn open_sqlite_many(n: usize) -> (Vec<SqliteStore>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let mut stores = Vec::new();
    for _ in 0..n {
        stores.push(SqliteStore::open(&dir.path().join("state.db")).await.unwrap());
    }
    (stores, dir)
}

async fn open_postgres() -> (PgStore, postgres::ScratchSchema) {
    let scratch = postgres::ScratchSchema::new("suite");
    let store = scratch.open().await.unwrap_or_else(|e| panic!("PostgreSQL for the store tests ({}): {e}", postgres::test_url()));
    (store, scratch)
}

async fn open_postgres_many(n: usize) -> (Vec<PgStore>, postgres::ScratchSchema) {
    let scratch = postgres::ScratchSchema::new("suite");
    let mut stores = Vec::new();
    for _ in 0..n {
        stores.push(scratch.open().await.unwrap_or_else(|e| panic!("PostgreSQL for the store tests ({}): {e}", postgres::test_url())));
    }
    (stores, scratch)
}

/// A job enqueued through one PostgreSQL store wakes a worker waiting on another (another process).
#[tokio::test]
async fn postgres_notifies_idle_workers_of_jobs_enqueued_anywhere() {
    let (stores, _scratch) = open_postgres_many(2).await;
    let mut signal = stores[1].job_signal();
    // The listener's first tick says it listens; from then on nothing is missed.
    tokio::time::timeout(Duration::from_secs(10), signal.changed()).await.expect("listening").unwrap();
    signal.borrow_and_update();
    let started = std::time::Instant::now();
    stores[0].enqueue(NewJob::new("products", JobKind::Webhook, Utc::now())).await.unwrap();
    tokio::time::timeout(Duration::from_secs(5), signal.changed()).await.expect("woken by the notification").unwrap();
    assert!(started.elapsed() < Duration::from_millis(500), "woken after {:?}", started.elapsed());
    assert!(stores[1].claim("w", LEASE, Utc::now()).await.unwrap().is_some());
}
