//! Transient faults between Ferry and the live peers, injected by the project's own fault proxy
//! (crates/testkit) in front of the real Tryton (127.0.0.1:18000) and Vendure (127.0.0.1:18300):
//!
//! - the clients honour `Retry-After` (seconds and HTTP date), retry reads per request, and never re-send
//!   a write the server may have applied (a dropped `create` answer is left to the engine);
//! - with 10 % of all requests failing (502, 503, 429, timeouts, answers lost after the peer committed),
//!   a products/customers/stock sync Tryton → JSONL and JSONL → Vendure converges in a bounded number of
//!   runs, with every record exactly once in the target.
#![cfg(all(feature = "tryton", feature = "vendure"))]

mod support;

use chrono::{DateTime, Utc};
use ferry_connectors::retry::RequestRetry;
use ferry_connectors::tryton::Tryton;
use ferry_connectors::vendure::gql::Gql;
use ferry_engine::backoff::Backoff;
use ferry_engine::store::BatchCommit;
use ferry_engine::{Config, Replay, RunOptions, RunReport, Workspace, holder_id, run::NoProgress};
use ferry_testkit::{Fault, FaultProxy, RetryAfter};
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, Instant};
use support::{Api, Setup, none, tryton, uniq};

/// The fault mix of the convergence tests: 10 % of requests, every kind the issue names.
fn faults() -> Vec<Fault> {
    vec![
        Fault::Status(502),
        Fault::Status(503),
        Fault::TooManyRequests { retry_after: RetryAfter::Seconds(1) },
        Fault::TooManyRequests { retry_after: RetryAfter::DateIn(Duration::from_secs(1)) },
        Fault::Timeout,
        Fault::DropAfterForward,
    ]
}

/// A Tryton connector whose requests go through `proxy`, with a short timeout so `Fault::Timeout` costs
/// seconds, not a minute.
fn tryton_via(proxy: &FaultProxy) -> Tryton {
    support::ensure_up();
    Tryton::new(support::options(json!({"timeout_seconds": 3, "url": proxy.url()})), "test").unwrap()
}

fn gql_via(proxy: &FaultProxy) -> Gql {
    let peer = support::vendure();
    Gql::new(format!("{}/admin-api", proxy.url()), peer.username.clone(), peer.password.clone(), None, Duration::from_secs(3)).unwrap()
}

// ------------------------------------------------------------------------------------------ the clients

#[tokio::test]
async fn tryton_waits_as_long_as_retry_after_says_in_seconds_or_as_a_date() {
    let proxy = FaultProxy::start(&format!("http://127.0.0.1:{}", support::port()));
    let erp = tryton_via(&proxy);
    erp.rpc().context().await.unwrap(); // log in first: the faults below hit only the search
    let search = "model.party.party.search\"";
    for retry_after in [RetryAfter::Seconds(2), RetryAfter::DateIn(Duration::from_secs(2))] {
        proxy.fail_matching(search, Fault::TooManyRequests { retry_after: retry_after.clone() }, 1);
        let started = Instant::now();
        erp.rpc().search("party.party", json!([]), 0, Some(1), Value::Null, &none()).await.unwrap();
        let waited = started.elapsed();
        // the old client retried a 429 after 0.3-0.9 s whatever the server said
        assert!(waited >= Duration::from_millis(1900), "{retry_after:?}: waited only {waited:?}");
        assert!(waited < Duration::from_secs(6), "{retry_after:?}: waited {waited:?}");
    }
    assert_eq!(proxy.stats().faulted(search), 2);
    assert_eq!(proxy.stats().seen(search), 4, "each search sent twice");
}

#[tokio::test]
async fn tryton_reads_are_retried_per_request_and_a_429_is_not_called_a_login_throttle() {
    let proxy = FaultProxy::start(&format!("http://127.0.0.1:{}", support::port()));
    let erp = tryton_via(&proxy);
    erp.rpc().context().await.unwrap();
    let search = "model.party.party.search\"";
    // three faults of three kinds: the fourth send gets through
    proxy.fail_matching(search, Fault::Status(502), 1);
    proxy.fail_matching(search, Fault::DropAfterForward, 1);
    proxy.fail_matching(search, Fault::TooManyRequests { retry_after: RetryAfter::Absent }, 1);
    erp.rpc().search("party.party", json!([]), 0, Some(1), Value::Null, &none()).await.unwrap();
    assert_eq!(proxy.stats().seen(search), 4);
    // bounded: a search that keeps failing gives up after 4 sends, saying what the server said
    proxy.fail_matching(search, Fault::TooManyRequests { retry_after: RetryAfter::Absent }, 4);
    let err = erp.rpc().search("party.party", json!([]), 0, Some(1), Value::Null, &none()).await.unwrap_err();
    assert!(err.is_transient());
    assert!(err.message.starts_with("HTTP 429 Too Many Requests"), "{err}");
    assert!(err.message.contains("after 4 attempts"), "{err}");
    assert!(!err.message.contains("login"), "only a 429 on the login call is a login throttle: {err}");
    assert_eq!(proxy.stats().seen(search), 8);

    // the login call's own 429 says so
    let fresh = tryton_via(&proxy);
    proxy.fail_matching("common.db.login", Fault::TooManyRequests { retry_after: RetryAfter::Seconds(0) }, 4);
    let err = fresh.rpc().context().await.unwrap_err();
    assert!(err.message.contains("login attempts throttled"), "{err}");
}

#[tokio::test]
async fn a_tryton_create_is_not_resent_when_tryton_may_have_applied_it() {
    let proxy = FaultProxy::start(&format!("http://127.0.0.1:{}", support::port()));
    let erp = tryton_via(&proxy);
    erp.rpc().context().await.unwrap();
    let u = uniq();
    let create = "model.party.party.create";
    let parties = |name: String| {
        let erp = &erp;
        async move { erp.rpc().search("party.party", json!([["name", "=", name]]), 0, None, Value::Null, &none()).await.unwrap().len() }
    };

    // a 502 may come after the write: not re-sent, the error goes to the engine
    proxy.fail_matching(create, Fault::Status(502), 1);
    let err = erp.rpc().create("party.party", vec![json!({"name": format!("Transient A {u}")})], &none()).await.unwrap_err();
    assert!(err.is_transient() && err.message.starts_with("HTTP 502 Bad Gateway"), "{err}");
    assert_eq!(proxy.stats().seen(create), 1, "sent once");

    // the answer lost after Tryton committed: not re-sent either (the engine's find-by-key finds it)
    proxy.fail_matching(create, Fault::DropAfterForward, 1);
    let err = erp.rpc().create("party.party", vec![json!({"name": format!("Transient B {u}")})], &none()).await.unwrap_err();
    assert!(err.is_transient(), "{err}");
    assert_eq!(proxy.stats().seen(create), 2);
    assert_eq!(parties(format!("Transient B {u}")).await, 1, "Tryton did the work");

    // a 429 is a refusal: sending it again is safe, and happens after Retry-After
    proxy.fail_matching(create, Fault::TooManyRequests { retry_after: RetryAfter::Seconds(1) }, 1);
    let started = Instant::now();
    erp.rpc().create("party.party", vec![json!({"name": format!("Transient C {u}")})], &none()).await.unwrap();
    assert!(started.elapsed() >= Duration::from_millis(900));
    assert_eq!(proxy.stats().seen(create), 4);
    assert_eq!(parties(format!("Transient C {u}")).await, 1, "created once");
}

#[tokio::test]
async fn vendure_queries_are_retried_and_mutations_are_not_resent_after_a_lost_answer() {
    let proxy = FaultProxy::start(&support::vendure().base_url);
    let gql = gql_via(&proxy).with_retry(RequestRetry { attempts: 4, backoff: Backoff { base: Duration::from_millis(50), max: Duration::from_millis(200) } });
    gql.login().await.unwrap();
    let query = "activeChannel";
    proxy.fail_matching(query, Fault::Status(503), 1);
    proxy.fail_matching(query, Fault::Timeout, 1);
    proxy.fail_matching(query, Fault::TooManyRequests { retry_after: RetryAfter::DateIn(Duration::from_secs(1)) }, 1);
    let started = Instant::now();
    let data = gql.query("{ activeChannel { code } }", json!({})).await.unwrap();
    assert_eq!(data["activeChannel"]["code"], "__default_channel__");
    assert!(started.elapsed() >= Duration::from_secs(4), "a 3 s timeout and a 1 s Retry-After were waited out");
    assert_eq!(proxy.stats().seen(query), 4);

    let u = uniq().to_lowercase();
    let create = "createCustomer";
    let mutation = "mutation($i:CreateCustomerInput!){ createCustomer(input:$i){ ... on Customer { id } ... on ErrorResult { errorCode message } } }";
    let input = json!({"i": {"emailAddress": format!("transient-{u}@example.test"), "firstName": "Trans", "lastName": u}});
    proxy.fail_matching(create, Fault::DropAfterForward, 1);
    let err = gql.call(mutation, input.clone()).await.unwrap_err();
    assert!(matches!(&err, ferry_connectors::vendure::gql::CallError::Connector(e) if e.is_transient()), "{err:?}");
    assert_eq!(proxy.stats().seen(create), 1, "a mutation whose answer was lost is not re-sent");
    let found = Api::admin()
        .await
        .ok("query($e:String!){ customers(options:{filter:{emailAddress:{eq:$e}}}){ totalItems } }", json!({"e": format!("transient-{u}@example.test")}))
        .await;
    assert_eq!(found["customers"]["totalItems"], 1, "Vendure did the work once");

    // a 429 on a mutation is a refusal: re-sent, after Retry-After, and applied once
    proxy.fail_matching(create, Fault::TooManyRequests { retry_after: RetryAfter::Seconds(1) }, 1);
    let second = json!({"i": {"emailAddress": format!("transient2-{u}@example.test"), "firstName": "Trans", "lastName": u}});
    gql.call(mutation, second).await.unwrap();
    assert_eq!(proxy.stats().seen(create), 3);
}

// ------------------------------------------------------------------------------- whole syncs converge

/// Runs `flow` until a run completes with nothing parked (replaying what earlier runs parked), at most
/// `max_runs` times; returns the reports. Panics when it does not converge.
async fn converge(ws: &Workspace, flow: &str, max_runs: usize) -> Vec<RunReport> {
    let mut reports = Vec::new();
    for _ in 0..max_runs {
        let parked = ws.store().failures(Some(flow), None).await.unwrap();
        let replay = if parked.is_empty() { Replay::Due } else { Replay::AllOnly };
        let options = RunOptions { holder: holder_id(), replay, ..Default::default() };
        let report = ws.sync(flow, &options, &NoProgress).await.unwrap_or_else(|e| panic!("sync {flow}: {e}"));
        let done = report.aborted.is_none() && ws.store().failures(Some(flow), None).await.unwrap().is_empty();
        reports.push(report);
        if done {
            return reports;
        }
    }
    panic!("{flow} did not converge in {max_runs} runs: {reports:#?}");
}

/// Keys of a JSONL file and how many lines each has.
fn lines_per_key(path: &Path, key_of: impl Fn(&Value) -> String) -> BTreeMap<String, usize> {
    let mut keys = BTreeMap::new();
    for line in std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())).lines() {
        let v: Value = serde_json::from_str(line).unwrap();
        *keys.entry(key_of(&v)).or_default() += 1;
    }
    keys
}

/// Seeds the flows' checkpoints at `since` (the Tryton server is shared: read only what changed since).
async fn seed_checkpoints(ws: &Workspace, flows: &[&str], since: DateTime<Utc>) {
    for flow in flows {
        let store = ws.store();
        let run = store.begin_run(flow, "seed").await.unwrap();
        store.commit_batch(flow, run, BatchCommit { checkpoint: Some(json!({"since": since})), ..Default::default() }).await.unwrap();
        store.finish_run(run, "ok", None).await.unwrap();
    }
}

#[tokio::test]
async fn tryton_to_jsonl_converges_under_ten_percent_faults_with_every_record_once() {
    let erp = tryton(json!({}));
    let s = Setup(&erp);
    let u = uniq();
    let since = Utc::now() - chrono::Duration::seconds(1);
    let prefix = format!("TF-{u}-");
    let mut skus = BTreeSet::new();
    for i in 0..6 {
        let sku = format!("{prefix}{i}");
        let id = s.product(&sku, &format!("Transient product {u} {i}"), "10", "4", &[], &[""]).await[0];
        if i < 4 {
            s.stock(id, 3 + i).await;
        }
        skus.insert(sku);
    }
    let mut codes = BTreeSet::new();
    for i in 0..4 {
        let party = erp.rpc().create("party.party", vec![json!({"name": format!("Transient customer {u} {i}")})], &none()).await.unwrap()[0];
        codes.insert(s.read_one("party.party", party, &["code"]).await["code"].as_str().unwrap().to_owned());
    }

    let proxy = FaultProxy::start(&format!("http://127.0.0.1:{}", support::port()));
    proxy.set_hold(Duration::from_secs(4));
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        r#"
[state]
path = "{state}"
{erp}[connections.file]
type = "jsonl"
path = "out"
[flows.products]
source = "erp"
target = "file"
stream = "products"
mapping = {{ filter = '.sku | startswith("{prefix}")' }}
[flows.stock]
source = "erp"
target = "file"
stream = "stock"
mapping = {{ filter = '.sku | startswith("{prefix}")' }}
[flows.customers]
source = "erp"
target = "file"
stream = "customers"
mapping = {{ filter = '(.last_name // .company // "") | contains("Transient customer {u}")' }}
"#,
        state = dir.path().join("state.db").display(),
        // small pages: many requests, so 10 % of them is a real number of faults
        erp = support::connection_toml("erp", &proxy.url(), "warehouse = \"WH\"\ntimeout_seconds = 2\npage_size = 3"),
    );
    let config = Config::parse(&text, dir.path().to_owned()).unwrap_or_else(|e| panic!("{e}\n{text}"));
    let ws = Workspace::open(config, ferry_connectors::registry()).await.unwrap();
    seed_checkpoints(&ws, &["products", "stock", "customers"], since).await;

    proxy.set_random(0.10, &faults(), 0x5eed_0001);
    let mut runs = BTreeMap::new();
    for flow in ["products", "stock", "customers"] {
        let (started, before) = (Instant::now(), proxy.stats().requests);
        runs.insert(flow, converge(&ws, flow, 4).await.len());
        eprintln!("{flow}: {} requests in {:?}", proxy.stats().requests - before, started.elapsed());
    }
    let stats = proxy.stats();
    eprintln!("Tryton → JSONL under 10 % faults: runs per flow {runs:?}; proxy {stats:?}");
    assert!(stats.faults >= 8, "faults were injected: {stats:?}");

    let out = dir.path().join("out");
    let products = lines_per_key(&out.join("products.jsonl"), |v| v["sku"].as_str().unwrap().to_owned());
    assert_eq!(products.keys().cloned().collect::<BTreeSet<_>>(), skus);
    assert!(products.values().all(|n| *n == 1), "every product once: {products:?}");
    let stock = lines_per_key(&out.join("stock.jsonl"), |v| v["sku"].as_str().unwrap().to_owned());
    assert!(stock.len() >= 4 && stock.values().all(|n| *n == 1), "every stock level once: {stock:?}");
    let customers = lines_per_key(&out.join("customers.jsonl"), |v| v["code"].as_str().unwrap().to_owned());
    assert_eq!(customers.keys().cloned().collect::<BTreeSet<_>>(), codes);
    assert!(customers.values().all(|n| *n == 1), "every customer once: {customers:?}");
}

#[tokio::test]
async fn jsonl_to_vendure_converges_under_ten_percent_faults_with_every_record_once() {
    let peer = support::vendure();
    let u = uniq().to_lowercase();
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in");
    std::fs::create_dir_all(&input).unwrap();
    let prefix = format!("VF-{u}-");
    let products: Vec<Value> = (0..8)
        .map(|i| {
            // two products of two variants each, four single ones
            let group = if i < 4 { Some(format!("{prefix}G{}", i / 2)) } else { None };
            json!({"sku": format!("{prefix}{i}"), "group": group, "name": format!("Fault tee {u} {i}"),
                   "options": if i < 4 { json!({"Size": format!("S{}", i % 2)}) } else { json!({}) },
                   "price": {"amount": format!("{}.50", 10 + i), "currency": "AUD", "tax_inclusive": false}})
        })
        .collect();
    let stock: Vec<Value> = (0..8).map(|i| json!({"sku": format!("{prefix}{i}"), "location": "WH", "on_hand": format!("{}", 5 + i)})).collect();
    let customers: Vec<Value> = (0..5)
        .map(|i| json!({"code": format!("{prefix}C{i}"), "email": format!("fault-{u}-{i}@example.test"), "first_name": "Fault", "last_name": format!("{u}{i}")}))
        .collect();
    for (name, rows) in [("products", &products), ("stock", &stock), ("customers", &customers)] {
        let text: String = rows.iter().map(|r| format!("{r}\n")).collect();
        std::fs::write(input.join(format!("{name}.jsonl")), text).unwrap();
    }

    let proxy = FaultProxy::start(&peer.base_url);
    proxy.set_hold(Duration::from_secs(8));
    let text = format!(
        r#"
[state]
path = "{state}"
[connections.file]
type = "jsonl"
path = "in"
[connections.shop]
type = "vendure"
url = "{url}"
username = "{user}"
password = "{password}"
timeout_seconds = 5
stock_locations = {{ WH = "Default Stock Location" }}
[flows.products]
source = "file"
target = "shop"
stream = "products"
batch_size = 2
[flows.stock]
source = "file"
target = "shop"
stream = "stock"
batch_size = 2
[flows.customers]
source = "file"
target = "shop"
stream = "customers"
batch_size = 2
"#,
        state = dir.path().join("state.db").display(),
        url = proxy.url(),
        user = peer.username,
        password = peer.password,
    );
    let config = Config::parse(&text, dir.path().to_owned()).unwrap_or_else(|e| panic!("{e}\n{text}"));
    let ws = Workspace::open(config, ferry_connectors::registry()).await.unwrap();

    // besides the random faults, each stream's first write is applied by Vendure and its answer lost
    let lost = ["createProduct(", "updateProductVariants(", "createCustomer("];
    for needle in lost {
        proxy.fail_matching(needle, Fault::DropAfterForward, 1);
    }
    proxy.set_random(0.10, &faults(), 0x5eed_0002);
    let mut runs = BTreeMap::new();
    for flow in ["products", "stock", "customers"] {
        runs.insert(flow, converge(&ws, flow, 5).await.len());
    }
    let stats = proxy.stats();
    eprintln!("JSONL → Vendure under 10 % faults: runs per flow {runs:?}; proxy {stats:?}");
    assert!(stats.faults >= 8, "faults were injected: {stats:?}");
    for needle in lost {
        assert!(stats.faulted(needle) >= 1, "{needle} lost an answer: {stats:?}");
    }

    // what the shop has, read directly (not through the proxy)
    let admin = Api::admin().await;
    let data = admin
        .ok(
            "query($s:String!){ productVariants(options:{filter:{sku:{contains:$s}}, take:100}){ items { sku price stockOnHand product { id name } } } }",
            json!({"s": prefix}),
        )
        .await;
    let variants = data["productVariants"]["items"].as_array().unwrap();
    let mut per_sku: BTreeMap<String, usize> = BTreeMap::new();
    for v in variants {
        *per_sku.entry(v["sku"].as_str().unwrap().to_owned()).or_default() += 1;
    }
    assert_eq!(per_sku.len(), 8, "{variants:#?}");
    assert!(per_sku.values().all(|n| *n == 1), "every variant once: {per_sku:?}");
    for v in variants {
        let i: i64 = v["sku"].as_str().unwrap().trim_start_matches(&prefix).parse().unwrap();
        assert_eq!(v["price"].as_i64(), Some((10 + i) * 100 + 50), "{v}");
        assert_eq!(v["stockOnHand"].as_i64(), Some(5 + i), "{v}");
    }
    let product_ids: BTreeSet<&str> = variants.iter().map(|v| v["product"]["id"].as_str().unwrap()).collect();
    assert_eq!(product_ids.len(), 6, "two products of two variants and four single ones: {variants:#?}");
    let named = admin
        .ok("query($n:String!){ products(options:{filter:{name:{contains:$n}}, take:100}){ totalItems } }", json!({"n": format!("Fault tee {u}")}))
        .await;
    assert_eq!(named["products"]["totalItems"], 6, "no product created twice");
    let found = admin
        .ok("query($e:String!){ customers(options:{filter:{emailAddress:{contains:$e}}, take:100}){ items { emailAddress } } }", json!({"e": format!("fault-{u}-")}))
        .await;
    let emails: Vec<&str> = found["customers"]["items"].as_array().unwrap().iter().map(|c| c["emailAddress"].as_str().unwrap()).collect();
    assert_eq!(emails.len(), 5, "every customer once: {emails:?}");
}
