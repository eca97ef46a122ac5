//! The real `ferry serve` process: records pushed through the records API flow through durable jobs into
//! a JSONL catalogue and a CSV order import; `kill -9` of the server in the middle of a job, a restart,
//! and the job runs again after its lease — every record lands, no order twice.

#[path = "support/orders_csv.rs"]
mod support;
#[path = "support/serve_proc.rs"]
mod serve_proc;
use serve_proc::{Server, free_port, http};

use ferry_model::Stream;
use serde_json::{Value, json};
use std::process::Command;
use std::time::{Duration, Instant};

const WEBHOOK_SECRET: &str = "serve-test-hook-secret-7f3a";

/// Jobs without their key lists, for messages.
fn summary(jobs: &[Value]) -> Vec<String> {
    jobs.iter().map(|j| format!("job {} {} {} attempts={} error={}", j["id"], j["flow"], j["status"], j["attempts"], j["error"])).collect()
}

/// Amounts in their normalised form (no trailing zero), so they compare as text with what was written.
fn product(i: usize) -> Value {
    json!({"sku": format!("P-{i:05}"), "name": format!("Product {i}"),
           "price": {"amount": format!("{}.{}", 1 + i % 90, 1 + i % 9), "currency": "AUD", "tax_inclusive": true}})
}

fn order(i: usize) -> Value {
    json!({"number": format!("WEB-{i:05}"), "placed_at": "2026-11-20T10:00:00Z", "currency": "AUD",
           "prices_include_tax": true, "customer": {"email": format!("buyer{i}@example.com")},
           "lines": [{"sku": "A", "quantity": "2", "unit_price": "5.50", "total": "11"},
                     {"sku": "B", "quantity": "1", "unit_price": "20", "total": "20"}],
           "totals": {"subtotal": "31", "tax": "2.82", "total": "31"}})
}

#[test]
fn kill_9_of_ferry_serve_mid_job_then_restart_reruns_the_job_after_its_lease_and_delivers_each_record_once() {
    const PRODUCTS: usize = 20_000;
    const ORDERS: usize = 1_500;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::create_dir_all(d.join("shop1/erp")).unwrap();
    std::fs::create_dir_all(d.join("shop1/catalog")).unwrap();
    // One server config serving one workspace (keys are created per workspace through the CLI).
    std::fs::write(d.join("server.toml"), "[server]\nworkers = 2\nlease_seconds = 5\npoll_millis = 100\nworkspaces = { shop1 = \"shop1/ferry.toml\" }\n").unwrap();
    std::fs::write(
        d.join("shop1/ferry.toml"),
        format!(
            r#"
[state]
path = "state.db"
[connections.web]
type = "api"
collection = "web"
webhook_secret = "{WEBHOOK_SECRET}"
[connections.catalog]
type = "jsonl"
path = "catalog"
[connections.erp]
type = "csv"
path = "erp"
[flows.products]
source = "web"
target = "catalog"
stream = "products"
batch_size = 100
[flows.orders]
source = "web"
target = "erp"
stream = "orders"
batch_size = 20
"#
        ),
    )
    .unwrap();
    let config = d.join("server.toml");
    let out = Command::new(env!("CARGO_BIN_EXE_ferry"))
        .env_remove("FERRY_CONFIG")
        .arg("--config")
        .arg(&config)
        .args(["keys", "create", "--workspace", "shop1", "--scope", "read,write", "--name", "test"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let token = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    assert!(token.starts_with("fy_"), "{token}");

    let port = free_port();
    let log = d.join("serve.log");
    let server = Server::start(&config, port, &log);

    // Push everything: each request enqueues one targeted job per flow reading that stream.
    let mut jobs = 0;
    for chunk in (0..PRODUCTS).collect::<Vec<_>>().chunks(5_000) {
        let batch = Value::Array(chunk.iter().map(|i| product(*i)).collect());
        let (status, r) = http(port, "POST", "/api/v1/records/products?collection=web", Some(&token), Some(&batch)).unwrap();
        assert_eq!((status, r["accepted"].as_u64()), (200, Some(chunk.len() as u64)), "{r}");
        jobs += r["jobs"].as_array().unwrap().len();
    }
    for chunk in (0..ORDERS).collect::<Vec<_>>().chunks(500) {
        let batch = Value::Array(chunk.iter().map(|i| order(*i)).collect());
        let (status, r) = http(port, "POST", "/api/v1/records/orders?collection=web", Some(&token), Some(&batch)).unwrap();
        assert_eq!((status, r["accepted"].as_u64()), (200, Some(chunk.len() as u64)), "{r}");
        jobs += r["jobs"].as_array().unwrap().len();
    }
    assert_eq!(jobs, 4 + 3);

    // Kill the server while jobs of both flows run (or, failing that within 20 s, while any job runs).
    let deadline = Instant::now() + Duration::from_secs(20);
    let running = loop {
        let r = server.get("/api/v1/jobs?status=running", &token);
        let running: Vec<(i64, String)> =
            r["jobs"].as_array().unwrap().iter().map(|j| (j["id"].as_i64().unwrap(), j["flow"].as_str().unwrap().to_owned())).collect();
        let flows: std::collections::BTreeSet<&str> = running.iter().map(|(_, f)| f.as_str()).collect();
        if flows.len() == 2 || (!running.is_empty() && Instant::now() > deadline) {
            break running;
        }
        assert!(Instant::now() < deadline + Duration::from_secs(10), "no job seen running");
        std::thread::sleep(Duration::from_millis(20));
    };
    server.kill_9();
    let killed_at = Instant::now();
    eprintln!("killed ferry serve with jobs {running:?} running");
    let products_before = ferry_connectors::jsonl::materialize(&d.join("shop1/catalog/products.jsonl"), Stream::Products).map(|m| m.len()).unwrap_or(0);
    assert!(products_before < PRODUCTS, "the kill landed before every product was written ({products_before})");

    // Restart on the same port: the killed jobs are still `running` with a lease nobody renews; once it
    // passes, the new process claims them again.
    let server = Server::start(&config, port, &log);
    let deadline = Instant::now() + Duration::from_secs(240);
    let all = loop {
        let all = server.get("/api/v1/jobs?limit=100", &token)["jobs"].as_array().unwrap().clone();
        if all.iter().all(|j| j["status"] == "succeeded") {
            break all;
        }
        assert!(all.iter().all(|j| j["status"] != "failed"), "a job failed: {:?}", summary(&all));
        assert!(Instant::now() < deadline, "jobs not done within 240 s: {:?}", summary(&all));
        std::thread::sleep(Duration::from_millis(200));
    };
    eprintln!("all {} jobs done {:?} after the kill", all.len(), killed_at.elapsed());
    assert_eq!(all.len(), jobs);
    for (id, flow) in &running {
        let job = all.iter().find(|j| j["id"] == *id).unwrap();
        assert_eq!(job["attempts"], 2, "job {id} ({flow}) was killed mid-run and re-run once: {job}");
    }
    // Every product exactly as pushed, once per key.
    let catalog = ferry_connectors::jsonl::materialize(&d.join("shop1/catalog/products.jsonl"), Stream::Products).unwrap();
    assert_eq!(catalog.len(), PRODUCTS);
    for i in [0, 1, 4_999, 5_000, 12_345, PRODUCTS - 1] {
        let p = product(i);
        let got = &catalog[p["sku"].as_str().unwrap()];
        assert_eq!((&got["name"], &got["price"]["amount"]), (&p["name"], &p["price"]["amount"]), "{got}");
    }
    // Every line of every order in the import file, no order twice.
    let lines = support::assert_each_order_line_once(&d.join("shop1/erp/orders.csv"));
    assert_eq!(lines, 2 * ORDERS, "every line of every order arrived exactly once");

    // The state agrees: a full re-run of both flows writes nothing.
    for flow in ["products", "orders"] {
        let (status, r) = http(port, "POST", &format!("/api/v1/flows/{flow}/trigger"), Some(&token), Some(&json!({"full": true}))).unwrap();
        assert_eq!(status, 202, "{r}");
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let runs = server.get("/api/v1/runs?limit=2", &token)["runs"].as_array().unwrap().clone();
        if runs.len() == 2 && runs.iter().all(|r| r["mode"] == "full" && r["finished_at"].is_string()) {
            for r in &runs {
                let c = &r["counts"];
                assert_eq!((c["created"].as_u64(), c["updated"].as_u64(), c["failed"].as_u64()), (Some(0), Some(0), Some(0)), "{r}");
            }
            break;
        }
        assert!(Instant::now() < deadline, "full re-runs not done: {runs:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
    drop(server);

    // Neither the webhook secret nor the API token was ever logged.
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(logged.contains("job started"), "the log is the server's: {}", &logged[..logged.len().min(2000)]);
    assert!(!logged.contains(WEBHOOK_SECRET) && !logged.contains(&token), "a secret in the server log");
}

/// `ferry sync FLOW --server URL`: the flow runs as a manual job on the running server, and the command
/// reports the job's outcome; a wrong key is refused with the API's own error.
#[test]
fn ferry_sync_against_a_running_server_runs_the_flow_there_and_reports_the_job() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::create_dir_all(d.join("source")).unwrap();
    let products: String = (0..50).map(|i| format!("{}\n", product(i))).collect();
    std::fs::write(d.join("source/products.jsonl"), products).unwrap();
    std::fs::write(
        d.join("ferry.toml"),
        "[server]\npoll_millis = 100\n[state]\npath = \"state.db\"\n[connections.source]\ntype = \"jsonl\"\npath = \"source\"\n\
         [connections.shop]\ntype = \"jsonl\"\npath = \"shop\"\n[flows.products]\nsource = \"source\"\ntarget = \"shop\"\nstream = \"products\"\n",
    )
    .unwrap();
    let config = d.join("ferry.toml");
    let ferry = |args: &[&str], env: &[(&str, &str)]| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_ferry"));
        c.env_remove("FERRY_CONFIG").env_remove("FERRY_SERVER").env_remove("FERRY_API_KEY").arg("--config").arg(&config).args(args);
        for (k, v) in env {
            c.env(k, v);
        }
        c.output().unwrap()
    };
    let out = ferry(&["keys", "create", "--scope", "read,write", "--name", "cli"], &[]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let token = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    let port = free_port();
    let _server = Server::start(&config, port, &d.join("serve.log"));
    let url = format!("http://127.0.0.1:{port}");

    let out = ferry(&["sync", "products", "--server", &url], &[("FERRY_API_KEY", &token)]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("of flow products succeeded") && text.contains("run #"), "{text}");
    let shop = ferry_connectors::jsonl::materialize(&d.join("shop/products.jsonl"), Stream::Products).unwrap();
    assert_eq!(shop.len(), 50, "the server ran the flow");

    let out = ferry(&["sync", "products", "--server", &url, "--api-key", "fy_wrong_key"], &[]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("401"), "{err}");
}
