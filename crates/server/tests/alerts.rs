//! Alerts end to end: each rule kind over real runs, failures, webhooks and jobs in the state store;
//! messages sent to a real SMTP server (aiosmtpd from PyPI, `scripts/peers/smtp/install.sh`, one per test,
//! writing a Maildir) and to an axum HTTP receiver, both on 127.0.0.1; the clock driven by hand.

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{Request, StatusCode};
use axum::routing::post;
use chrono::{Duration, Utc};
use ferry_engine::schedule::{Clock, ManualClock};
use ferry_engine::store::jobs::{JobKind, NewJob};
use ferry_engine::store::records::RecordPut;
use ferry_engine::{Config, RunOptions, holder_id, run::NoProgress};
use ferry_server::alerts::{TickReport, tick};
use ferry_server::{AppState, router};
use serde_json::{Value, json};
use ferry_testkit::SmtpSink;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use tower::ServiceExt;

/// An HTTP server standing in for Slack's incoming webhook: keeps each JSON body; answers 500 to the
/// next `fail` requests.
#[derive(Clone, Default)]
struct Receiver {
    bodies: Arc<Mutex<Vec<Value>>>,
    fail: Arc<AtomicUsize>,
}

impl Receiver {
    async fn start() -> (Receiver, u16) {
        let r = Receiver::default();
        let app = Router::new()
            .route(
                "/hook",
                post(|State(r): State<Receiver>, axum::Json(body): axum::Json<Value>| async move {
                    if r.fail.load(Ordering::SeqCst) > 0 {
                        r.fail.fetch_sub(1, Ordering::SeqCst);
                        return StatusCode::INTERNAL_SERVER_ERROR;
                    }
                    r.bodies.lock().unwrap().push(body);
                    StatusCode::OK
                }),
            )
            .with_state(r.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (r, port)
    }

    /// The first line of each text received (the headline), oldest first.
    fn headlines(&self) -> Vec<String> {
        self.bodies
            .lock()
            .unwrap()
            .iter()
            .map(|b| {
                let text = b["text"].as_str().expect("Slack-compatible {\"text\": …}");
                text.lines().next().unwrap().to_owned()
            })
            .collect()
    }

    fn texts(&self) -> Vec<String> {
        self.bodies.lock().unwrap().iter().map(|b| b["text"].as_str().unwrap().to_owned()).collect()
    }
}

struct Rig {
    dir: tempfile::TempDir,
    smtp: SmtpSink,
    hook: Receiver,
    hook_port: u16,
    clock: Arc<ManualClock>,
}

const FLOWS: &str = r#"
[connections.feed]
type = "jsonl"
path = "feed"
[connections.web]
type = "api"
collection = "in"
[connections.out]
type = "jsonl"
path = "out"
[connections.shop]
type = "jsonl"
path = "out"
webhook_secret = "hook-s3cret"

[flows.products]
source = "feed"
target = "out"
stream = "products"
schedule = "0 * * * *"

[flows.prices]
source = "web"
target = "out"
stream = "products"
"#;

impl Rig {
    async fn new() -> Rig {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("feed")).unwrap();
        let smtp = SmtpSink::start(Path::new(env!("CARGO_TARGET_TMPDIR")), dir.path());
        let (hook, hook_port) = Receiver::start().await;
        Rig { dir, smtp, hook, hook_port, clock: Arc::new(ManualClock::new(Utc::now())) }
    }

    fn config(&self, rules: &str) -> Config {
        Config::parse(&self.config_text(rules), self.dir.path().to_path_buf()).unwrap()
    }

    fn config_text(&self, rules: &str) -> String {
        format!(
            r#"{FLOWS}
[alerts]
cooldown_minutes = 30
[alerts.channels.mail]
type = "email"
host = "127.0.0.1"
port = {smtp}
security = "none"
from = "Ferry <ferry@example.com>"
to = ["ops@example.com"]
[alerts.channels.chat]
type = "webhook"
url = "http://127.0.0.1:{hook}/hook"
{rules}
"#,
            smtp = self.smtp.port,
            hook = self.hook_port,
        )
    }

    async fn open(&self, rules: &str) -> Arc<AppState> {
        AppState::open(self.config(rules), self.clock.clone()).await.unwrap()
    }

    /// Runs a flow now; its outcome is whatever the data makes it.
    async fn sync(&self, state: &AppState, flow: &str) {
        let options = RunOptions { holder: holder_id(), ..Default::default() };
        let _ = state.workspace.sync(flow, &options, &NoProgress).await;
    }

    fn feed(&self, lines: &[Value]) {
        let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
        std::fs::write(self.dir.path().join("feed/products.jsonl"), text).unwrap();
    }

    /// Mail subjects and webhook headlines received so far (they must agree).
    fn received(&self) -> Vec<String> {
        for mail in self.smtp.messages() {
            assert!(mail.contains("To: ops@example.com") && mail.contains("From: Ferry <ferry@example.com>"), "{mail}");
        }
        let mails = self.smtp.subjects();
        assert_eq!(mails, self.hook.headlines(), "both channels are told the same");
        mails
    }
}

fn product(sku: &str) -> Value {
    json!({"sku": sku, "name": format!("Product {sku}"), "price": {"amount": "5", "currency": "AUD", "tax_inclusive": true}})
}

async fn evaluate(state: &AppState) -> TickReport {
    let report = tick(state).await.unwrap();
    assert!(report.failed.is_empty(), "{report:?}");
    report
}

const FLOW_FAILED: &str = "[alerts.rules.failed]\nkind = \"flow_failed\"\nflows = [\"products\"]\n";

#[tokio::test]
async fn a_failed_flow_is_one_message_per_channel_and_one_resolved_message() {
    let rig = Rig::new().await;
    let state = rig.open(FLOW_FAILED).await;
    evaluate(&state).await;
    assert!(rig.received().is_empty(), "no run yet, nothing failed");

    // the feed file is missing: the run aborts, three times over ten minutes
    for _ in 0..3 {
        rig.sync(&state, "products").await;
        evaluate(&state).await;
        rig.clock.advance(Duration::minutes(5));
    }
    assert_eq!(state.store.runs(Some("products"), 10).await.unwrap().iter().filter(|r| r.status == "aborted").count(), 3);
    assert_eq!(rig.received(), ["[Ferry default] FIRING failed (products)"], "one problem, one message");
    let text = &rig.hook.texts()[0];
    assert!(text.contains("flow products: run 1 aborted at") && text.contains("products.jsonl"), "names the run and the cause: {text}");

    // fixed: the next run is ok, and each channel hears it once
    rig.feed(&[product("A")]);
    rig.sync(&state, "products").await;
    let report = evaluate(&state).await;
    assert_eq!(report.resolved, 1);
    evaluate(&state).await;
    assert_eq!(rig.received(), ["[Ferry default] FIRING failed (products)", "[Ferry default] RESOLVED failed (products)"]);
    assert!(rig.hook.texts()[1].starts_with("[Ferry default] RESOLVED failed (products)\nResolved after 15 min. It was: flow products: run 1 aborted"), "{}", rig.hook.texts()[1]);
}

#[tokio::test]
async fn a_problem_back_within_the_cooldown_waits_for_it_and_sends_nothing_if_it_clears_meanwhile() {
    let rig = Rig::new().await;
    let state = rig.open(FLOW_FAILED).await;
    let fired = "[Ferry default] FIRING failed (products)";
    let resolved = "[Ferry default] RESOLVED failed (products)";
    rig.sync(&state, "products").await;
    evaluate(&state).await;
    rig.feed(&[product("A")]);
    rig.sync(&state, "products").await;
    rig.clock.advance(Duration::minutes(5));
    evaluate(&state).await;
    assert_eq!(rig.received(), [fired, resolved]);

    // fails again 10 minutes after the first message (cool-down 30): held back; fixed before it ends
    std::fs::remove_file(rig.dir.path().join("feed/products.jsonl")).unwrap();
    rig.sync(&state, "products").await;
    rig.clock.advance(Duration::minutes(5));
    assert_eq!(evaluate(&state).await.opened.len(), 1, "a new alert, not yet sent");
    rig.feed(&[product("A")]);
    rig.sync(&state, "products").await;
    rig.clock.advance(Duration::minutes(5));
    evaluate(&state).await;
    assert_eq!(rig.received(), [fired, resolved], "nothing about a problem that came and went within the cool-down");

    // fails again and lasts: sent once the cool-down since the first message has passed
    std::fs::remove_file(rig.dir.path().join("feed/products.jsonl")).unwrap();
    rig.sync(&state, "products").await;
    rig.clock.advance(Duration::minutes(5));
    evaluate(&state).await;
    assert_eq!(rig.received().len(), 2, "20 minutes after the first message: still held back");
    rig.clock.advance(Duration::minutes(11));
    evaluate(&state).await;
    assert_eq!(rig.received(), [fired, resolved, fired]);
}

#[tokio::test]
async fn a_restart_sends_nothing_again_and_still_sends_what_it_owes() {
    let rig = Rig::new().await;
    let state = rig.open(FLOW_FAILED).await;
    rig.sync(&state, "products").await;
    evaluate(&state).await;
    assert_eq!(rig.received().len(), 1);
    drop(state);

    // a new process on the same store: the alert is still open and was sent
    let state = rig.open(FLOW_FAILED).await;
    rig.clock.advance(Duration::hours(2));
    let report = evaluate(&state).await;
    assert!(report.sent.is_empty() && report.opened.is_empty(), "{report:?}");
    assert_eq!(rig.received().len(), 1);

    // resolved while the chat receiver fails: mail is told, chat is told after the next restart
    rig.feed(&[product("A")]);
    rig.sync(&state, "products").await;
    rig.hook.fail.store(1, Ordering::SeqCst);
    let report = tick(&state).await.unwrap();
    assert_eq!(report.failed.len(), 1, "{report:?}");
    assert!(!report.failed[0].contains(&rig.hook_port.to_string()), "the webhook URL is not in the error: {report:?}");
    assert_eq!(rig.smtp.subjects().len(), 2);
    drop(state);
    let state = rig.open(FLOW_FAILED).await;
    evaluate(&state).await;
    evaluate(&state).await;
    assert_eq!(rig.received(), ["[Ferry default] FIRING failed (products)", "[Ferry default] RESOLVED failed (products)"]);
}

#[tokio::test]
async fn open_failures_above_the_limit_fire_and_resolve_when_dropped() {
    let rig = Rig::new().await;
    let state = rig.open("[alerts.rules.parked]\nkind = \"open_failures\"\nabove = 1\n").await;
    // two records with a negative price: parked by a real run of the flow
    let bad = |sku: &str| RecordPut { key: sku.into(), hash: sku.into(), payload: json!({"sku": sku, "name": sku, "price": {"amount": "-1", "currency": "AUD", "tax_inclusive": true}}) };
    state.store.put_records("in", "products", vec![bad("N-1")], Utc::now()).await.unwrap();
    rig.sync(&state, "prices").await;
    evaluate(&state).await;
    assert!(rig.received().is_empty(), "one open failure is not above 1");
    state.store.put_records("in", "products", vec![bad("N-2")], Utc::now()).await.unwrap();
    rig.sync(&state, "prices").await;
    evaluate(&state).await;
    evaluate(&state).await;
    assert_eq!(rig.received(), ["[Ferry default] FIRING parked"]);
    assert!(rig.hook.texts()[0].contains("2 open failures (prices 2), more than 1"), "{:?}", rig.hook.texts());
    state.store.drop_failures(Some("prices"), &[]).await.unwrap();
    evaluate(&state).await;
    assert_eq!(rig.received(), ["[Ferry default] FIRING parked", "[Ferry default] RESOLVED parked"]);
}

#[tokio::test]
async fn no_success_fires_for_a_flow_that_completes_no_run_and_resolves_when_one_does() {
    let rig = Rig::new().await;
    // alerting began three hours ago (the clock is the server's; runs carry real times)
    rig.clock.set(Utc::now() - Duration::hours(3));
    let state = rig.open("[alerts.rules.stale]\nkind = \"no_success\"\nfor_minutes = 120\n").await;
    evaluate(&state).await;
    rig.clock.set(Utc::now() - Duration::minutes(61));
    evaluate(&state).await;
    assert!(rig.received().is_empty(), "under two hours");
    rig.clock.set(Utc::now());
    evaluate(&state).await;
    assert_eq!(rig.received(), ["[Ferry default] FIRING stale (products)"], "the scheduled flow only");
    assert!(rig.hook.texts()[0].contains("flow products has never completed a run (3 h since alerting began; limit 2 h)"), "{:?}", rig.hook.texts());
    rig.feed(&[product("A")]);
    rig.sync(&state, "products").await;
    evaluate(&state).await;
    assert_eq!(rig.received(), ["[Ferry default] FIRING stale (products)", "[Ferry default] RESOLVED stale (products)"]);
}

#[tokio::test]
async fn a_burst_of_rejected_webhook_signatures_fires_and_resolves_when_it_ages_out() {
    let rig = Rig::new().await;
    let state = rig.open("[alerts.rules.signatures]\nkind = \"webhook_rejections\"\nat_least = 3\nwithin_minutes = 10\n").await;
    let post = |signature: &str| {
        let req = Request::post("/hooks/shop")
            .header("x-ferry-signature", signature)
            .header("x-ferry-timestamp", rig.clock.now().timestamp().to_string())
            .body(Body::from("{}"))
            .unwrap();
        router(state.clone()).oneshot(req)
    };
    for _ in 0..2 {
        assert_eq!(post("sha256=00").await.unwrap().status(), StatusCode::UNAUTHORIZED);
    }
    evaluate(&state).await;
    assert!(rig.received().is_empty(), "two is not a burst of three");
    assert_eq!(post(&ferry_server::webhook::sign("wrong-secret", b"{}")).await.unwrap().status(), StatusCode::UNAUTHORIZED);
    // a good one is not counted
    assert_ne!(post(&ferry_server::webhook::sign("hook-s3cret", b"{}")).await.unwrap().status(), StatusCode::UNAUTHORIZED);
    evaluate(&state).await;
    assert_eq!(rig.received(), ["[Ferry default] FIRING signatures (shop)"]);
    assert!(rig.hook.texts()[0].contains("3 webhook deliveries to connection shop rejected in the last 10 min (invalid_signature 3)"), "{:?}", rig.hook.texts());
    rig.clock.advance(Duration::minutes(12));
    evaluate(&state).await;
    assert_eq!(rig.received(), ["[Ferry default] FIRING signatures (shop)", "[Ferry default] RESOLVED signatures (shop)"]);
}

#[tokio::test]
async fn a_queue_whose_oldest_due_job_waited_too_long_fires_until_the_job_ran() {
    let rig = Rig::new().await;
    let state = rig.open("[alerts.rules.backlog]\nkind = \"queue_age\"\nolder_than_minutes = 15\n").await;
    let now = rig.clock.now();
    let job = state.store.enqueue(NewJob::new("products", JobKind::Manual, now - Duration::minutes(10))).await.unwrap().id;
    evaluate(&state).await;
    assert!(rig.received().is_empty());
    rig.clock.advance(Duration::minutes(6));
    evaluate(&state).await;
    assert_eq!(rig.received(), ["[Ferry default] FIRING backlog"]);
    assert!(rig.hook.texts()[0].contains(&format!("job {job} (flow products) has waited 16 min in the queue, 1 job(s) due; limit 15 min")), "{:?}", rig.hook.texts());
    let claimed = state.store.claim("w", std::time::Duration::from_secs(60), rig.clock.now()).await.unwrap().unwrap();
    state.store.complete(claimed.id, "w", None, rig.clock.now()).await.unwrap();
    evaluate(&state).await;
    assert_eq!(rig.received(), ["[Ferry default] FIRING backlog", "[Ferry default] RESOLVED backlog"]);
}

#[tokio::test]
async fn ferry_serve_evaluates_by_itself_with_webhook_urls_from_the_secret_store_and_the_environment() {
    let rig = Rig::new().await;
    let url = format!("http://127.0.0.1:{}/hook", rig.hook_port);
    // the first channel's URL sealed in the workspace's store, the second's in an environment variable
    let key = ferry_engine::secrets::MasterKey::generate();
    let store = ferry_engine::store::SqliteStore::open(&rig.dir.path().join("ferry-state.db")).await.unwrap();
    ferry_engine::store::SecretStore::put_secret(&store, key.seal("chat-url", &url)).await.unwrap();
    drop(store);
    // SAFETY: these variables are read by no other test of this binary (nextest runs each test in its own process).
    unsafe {
        std::env::set_var(ferry_engine::secrets::MASTER_KEY_ENV, key.to_hex().as_str());
        std::env::set_var("FERRY_TEST_ALERTS_CHAT2_URL", &url);
    }
    let text = format!(
        r#"{FLOWS}
[alerts]
evaluate_every_seconds = 1
prefix = "[acme]"
[alerts.channels.chat]
type = "webhook"
url = {{ secret = "chat-url" }}
[alerts.channels.chat2]
type = "webhook"
url = {{ env = "FERRY_TEST_ALERTS_CHAT2_URL" }}
[alerts.rules.backlog]
kind = "queue_age"
older_than_minutes = 15
"#
    );
    let config = Config::parse(&text, rig.dir.path().to_path_buf()).unwrap();
    let state = AppState::open(config, rig.clock.clone()).await.unwrap();
    // a job waiting for 20 minutes behind another job of its flow that a worker elsewhere holds for an hour
    let now = rig.clock.now();
    state.store.enqueue(NewJob::new("prices", JobKind::Manual, now - Duration::minutes(30))).await.unwrap();
    state.store.claim("elsewhere:1", std::time::Duration::from_secs(3600), now).await.unwrap().unwrap();
    state.store.enqueue(NewJob::new("prices", JobKind::Manual, now - Duration::minutes(20))).await.unwrap();

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(ferry_server::serve(state.clone(), listener, async move {
        let _ = stop_rx.await;
    }));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while rig.hook.headlines().len() < 2 {
        assert!(std::time::Instant::now() < deadline, "no alert within 20 s: {:?}", rig.hook.headlines());
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
    let _ = stop_tx.send(());
    server.await.unwrap().unwrap();
    assert_eq!(rig.hook.headlines(), ["[acme] FIRING backlog", "[acme] FIRING backlog"], "one message per channel, however many evaluations");
}

#[tokio::test]
async fn starttls_never_falls_back_to_sending_in_the_clear() {
    let rig = Rig::new().await;
    // the sink offers no STARTTLS: the message must not go out unencrypted; the webhook still does
    let text = rig.config_text(FLOW_FAILED).replace("security = \"none\"", "security = \"starttls\"");
    assert!(text.contains("starttls"));
    let config = Config::parse(&text, rig.dir.path().to_path_buf()).unwrap();
    let state = AppState::open(config, rig.clock.clone()).await.unwrap();
    rig.sync(&state, "products").await;
    let report = tick(&state).await.unwrap();
    assert_eq!(report.sent.len(), 1, "{report:?}");
    assert_eq!(report.failed.len(), 1, "{report:?}");
    assert!(report.failed[0].contains("to mail: SMTP"), "{report:?}");
    assert!(rig.smtp.subjects().is_empty());
    assert_eq!(rig.hook.headlines(), ["[Ferry default] FIRING failed (products)"]);
    // and it is tried again at the next evaluation, the webhook is not repeated
    let report = tick(&state).await.unwrap();
    assert_eq!((report.sent.len(), report.failed.len()), (0, 1), "{report:?}");
}

#[tokio::test]
async fn alerts_belong_to_each_workspace_not_to_the_server_config() {
    let rig = Rig::new().await;
    let dir = rig.dir.path();
    std::fs::create_dir_all(dir.join("acme/feed")).unwrap();
    std::fs::create_dir_all(dir.join("beta")).unwrap();
    std::fs::write(dir.join("acme/ws.toml"), rig.config_text(FLOW_FAILED)).unwrap();
    std::fs::write(dir.join("beta/ws.toml"), FLOWS).unwrap();
    let server_text = "[server]\nworkspaces = { acme = \"acme/ws.toml\", beta = \"beta/ws.toml\" }\n";
    let clock = rig.clock.clone();
    let server = ferry_server::Server::open(Config::parse(server_text, dir.to_path_buf()).unwrap(), clock.clone()).await.unwrap();
    let acme = server.workspace("acme").unwrap();
    assert!(acme.alerting.as_ref().is_some_and(|a| a.prefix == "[Ferry acme]"));
    assert!(server.workspace("beta").unwrap().alerting.is_none());
    rig.sync(acme, "products").await;
    evaluate(acme).await;
    assert_eq!(rig.received(), ["[Ferry acme] FIRING failed (products)"]);

    let with_alerts = format!("{server_text}[alerts.channels.chat]\ntype = \"webhook\"\nurl = \"http://127.0.0.1:9/x\"\n");
    let err = ferry_server::Server::open(Config::parse(&with_alerts, dir.to_path_buf()).unwrap(), clock).await.err().unwrap().to_string();
    assert!(err.contains("no [alerts] of its own"), "{err}");
}

#[tokio::test]
async fn two_servers_on_one_store_send_each_message_once() {
    let rig = Rig::new().await;
    let first = rig.open(FLOW_FAILED).await;
    let second = rig.open(FLOW_FAILED).await;
    // the second runs in another process: its lease holder is another
    second.store.lock_flow(ferry_server::alerts::ALERTS_LEASE, "otherhost:1/alerts", Duration::minutes(5)).await.unwrap();
    rig.sync(&first, "products").await;
    assert!(evaluate(&first).await.skipped, "the lease is the other server's");
    assert!(rig.received().is_empty());
    // the other server died: its lease expires, this one takes over
    sqlx::query("UPDATE flow_locks SET expires_at = '2000-01-01T00:00:00.000000Z'").execute(&sqlx::SqlitePool::connect(&format!("sqlite://{}", rig.dir.path().join("ferry-state.db").display())).await.unwrap()).await.unwrap();
    let report = evaluate(&first).await;
    assert!(!report.skipped && report.sent.len() == 2, "{report:?}");
    assert!(evaluate(&second).await.sent.is_empty(), "same process, same holder: nothing owed any more");
    assert_eq!(rig.received(), ["[Ferry default] FIRING failed (products)"]);

    // a lease left by a process of this host that is gone (kill -9, restart) is taken over at once
    let gone = format!("{}:{}/alerts", ferry_engine::holder_id().rsplit_once(':').unwrap().0, u32::MAX - 7);
    second.store.unlock_flow(ferry_server::alerts::ALERTS_LEASE, &format!("{}/alerts", ferry_engine::holder_id())).await.unwrap();
    second.store.lock_flow(ferry_server::alerts::ALERTS_LEASE, &gone, Duration::minutes(5)).await.unwrap();
    assert!(!evaluate(&first).await.skipped);
}
