// Workspaces: one server, several businesses, each with its own connections, flows, state store and
// API keys. A key of one workspace never reads or changes another's records, flows, runs, failures,
// cross-reference or jobs; a webhook reaches only the workspace it names, checked with that
// workspace's secret; no connection secret leaves the server. Compiled twice: `tenancy_on_postgres.rs`
// includes this file, and there every workspace is a schema of one PostgreSQL database.

use async_trait::async_trait;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use ferry_engine::connector::*;
use ferry_engine::schedule::ManualClock;
use ferry_engine::store::keys::Scope;
use ferry_engine::Config;
use ferry_model::Stream;
use ferry_server::{AppState, Server, router_for, webhook, worker};
use futures::stream::BoxStream;
use http_body_util::BodyExt;
use serde_json::{Value, json};
use std::sync::Arc;
use tower::ServiceExt;

#[path = "support/stores.rs"]
mod stores;
use stores::Stores;

/// A source whose `check` echoes its configuration — password and URL with credentials — in its error,
/// as a careless connector might: the API must still never show them.
struct Leaky {
    password: String,
    url: String,
}

#[async_trait]
impl Connector for Leaky {
    fn describe(&self) -> Description {
        Description {
            name: "leaky",
            summary: "test source that echoes its secrets",
            config_schema: json!({}),
            streams: vec![StreamCapability { stream: Stream::Products, read: Some(ReadMode::Snapshot), write: None, find_by_key: false, retire: vec![] }],
            batch_size: 10,
            webhooks: true,
        }
    }
    async fn check(&self) -> Result<CheckReport, ConnectorError> {
        Err(ConnectorError::new(ErrorKind::Auth, &self.url, format!("login refused for password {:?}", self.password)))
    }
    fn read(&self, request: ReadRequest) -> BoxStream<'_, Result<ReadItem, ConnectorError>> {
        let keys = request.keys.unwrap_or_default();
        Box::pin(futures::stream::iter(keys.into_iter().map(|sku| Ok(ReadItem::Record(SourceRecord { position: sku.clone(), data: product(&sku, "3") })))))
    }
    fn webhook_signals(&self, body: &Value) -> Vec<(Stream, Vec<String>)> {
        let skus = body["skus"].as_array().map(|a| a.iter().filter_map(|s| s.as_str().map(String::from)).collect()).unwrap_or_default();
        vec![(Stream::Products, skus)]
    }
}

struct LeakyFactory;
impl ConnectorFactory for LeakyFactory {
    fn name(&self) -> &'static str {
        "leaky"
    }
    fn summary(&self) -> &'static str {
        "test"
    }
    fn build(&self, options: &Value, _: &BuildContext) -> Result<Arc<dyn Connector>, ConnectorError> {
        Ok(Arc::new(Leaky { password: options["password"].as_str().unwrap_or_default().into(), url: options["url"].as_str().unwrap_or_default().into() }))
    }
}

fn product(sku: &str, price: &str) -> Value {
    json!({"sku": sku, "name": format!("Product {sku}"), "price": {"amount": price, "currency": "AUD", "tax_inclusive": true}})
}

/// Every secret of both workspaces: none may appear in any API answer.
const SECRETS: [&str; 6] = ["acme-erp-password-1", "acme-url-pass", "acme-hook-secret", "beta-erp-password-2", "beta-url-pass", "beta-hook-secret"];

fn workspace_toml(name: &str, state: &str) -> String {
    format!(
        r#"
[state]
{state}

[connections.web]
type = "api"
collection = "in"
[connections.shop]
type = "api"
collection = "out"
[connections.erp]
type = "leaky"
url = "https://sync:{name}-url-pass@erp.{name}.example/rpc"
password = "{name}-erp-password-{n}"
webhook_secret = "{name}-hook-secret"

[flows.products]
source = "web"
target = "shop"
stream = "products"

[flows.hooked]
source = "erp"
target = "shop"
stream = "products"

[flows.{name}_only]
source = "web"
target = "shop"
stream = "stock"
"#,
        n = if name == "acme" { 1 } else { 2 }
    )
}

fn write_configs(stores: &Stores) -> Config {
    let dir = stores.dir.path();
    std::fs::create_dir_all(dir.join("ws")).unwrap();
    std::fs::write(dir.join("ws/acme.toml"), workspace_toml("acme", &stores.state("acme"))).unwrap();
    std::fs::write(dir.join("ws/beta.toml"), workspace_toml("beta", &stores.state("beta"))).unwrap();
    let top = "[server]\nworkspaces = { acme = \"ws/acme.toml\", beta = \"ws/beta.toml\" }\n";
    Config::parse(top, dir.to_path_buf()).unwrap()
}

async fn open(config: Config) -> anyhow::Result<Arc<Server>> {
    Server::open_with(config, Arc::new(ManualClock::new(chrono::Utc::now())), |r| {
        r.register(Box::new(LeakyFactory));
    })
    .await
}

async fn call(server: &Arc<Server>, method: &str, uri: &str, key: Option<&str>, body: Option<Value>) -> (StatusCode, Value) {
    let mut req = Request::builder().method(method).uri(uri);
    if let Some(k) = key {
        req = req.header("authorization", format!("Bearer {k}"));
    }
    let req = req.body(body.map(|b| Body::from(b.to_string())).unwrap_or_else(Body::empty)).unwrap();
    let resp = router_for(server.clone()).oneshot(req).await.unwrap();
    let status = resp.status();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    let text = String::from_utf8_lossy(&bytes).into_owned();
    for s in SECRETS {
        assert!(!text.contains(s), "{method} {uri} answered with the secret {s}: {text}");
    }
    (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

fn hook(uri: &str, body: &Value, secret: &str) -> Request<Body> {
    let raw = body.to_string();
    Request::builder()
        .method("POST")
        .uri(uri)
        .header("x-ferry-signature", webhook::sign(secret, raw.as_bytes()))
        .header("x-ferry-timestamp", chrono::Utc::now().timestamp().to_string())
        .body(Body::from(raw))
        .unwrap()
}

async fn drain(state: &Arc<AppState>) -> usize {
    let (_tx, mut rx) = tokio::sync::watch::channel(false);
    let mut n = 0;
    while let Some(job) = state.store.claim("test-worker", state.settings.lease, state.clock.now()).await.unwrap() {
        worker::execute(state, "test-worker", job, &mut rx).await;
        n += 1;
    }
    n
}

fn names(v: &Value, list: &str, field: &str) -> Vec<String> {
    v[list].as_array().unwrap_or_else(|| panic!("{list} in {v}")).iter().map(|x| x[field].as_str().unwrap().to_owned()).collect()
}

#[tokio::test]
async fn a_key_of_one_workspace_never_reaches_another_workspaces_data() {
    let stores = Stores::new();
    let server = open(write_configs(&stores)).await.unwrap();
    let acme = server.workspace("acme").unwrap().clone();
    let beta = server.workspace("beta").unwrap().clone();
    let (_, acme_rw) = acme.store.create_key("acme app", &[Scope::Read, Scope::Write]).await.unwrap();
    let (_, acme_admin) = acme.store.create_key("acme ops", &[Scope::Admin]).await.unwrap();
    let (_, beta_rw) = beta.store.create_key("beta app", &[Scope::Read, Scope::Write]).await.unwrap();
    let (_, beta_admin) = beta.store.create_key("beta ops", &[Scope::Admin]).await.unwrap();

    // Records: each workspace pushes into a collection of the same name; neither sees the other's.
    let (status, pushed) = call(&server, "POST", "/api/v1/records/products?collection=in", Some(&acme_rw), Some(json!([product("T-1", "10"), product("T-2", "11")]))).await;
    assert_eq!((status, pushed["accepted"].as_u64()), (StatusCode::OK, Some(2)), "{pushed}");
    let (_, pushed) = call(&server, "POST", "/api/v1/records/products?collection=in", Some(&beta_rw), Some(json!([product("B-1", "5")]))).await;
    assert_eq!(pushed["accepted"].as_u64(), Some(1), "{pushed}");
    assert_eq!(drain(&acme).await, 1);
    assert_eq!(drain(&beta).await, 1);
    for (key, coll, expected) in [
        (&acme_rw, "in", vec!["T-1", "T-2"]),
        (&acme_rw, "out", vec!["T-1", "T-2"]),
        (&beta_rw, "in", vec!["B-1"]),
        (&beta_rw, "out", vec!["B-1"]),
    ] {
        let (status, page) = call(&server, "GET", &format!("/api/v1/records/products?collection={coll}"), Some(key), None).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(names(&page, "records", "key"), expected, "{coll}: {page}");
    }

    // Flows: each key lists its own; another workspace's flow does not exist for it.
    let (_, flows) = call(&server, "GET", "/api/v1/flows", Some(&acme_rw), None).await;
    assert_eq!(names(&flows, "flows", "name"), ["acme_only", "hooked", "products"]);
    let (_, flows) = call(&server, "GET", "/api/v1/flows", Some(&beta_rw), None).await;
    assert_eq!(names(&flows, "flows", "name"), ["beta_only", "hooked", "products"]);
    let (status, e) = call(&server, "GET", "/api/v1/flows/acme_only", Some(&beta_rw), None).await;
    assert_eq!((status, e["error"]["code"].as_str()), (StatusCode::NOT_FOUND, Some("unknown_flow")));
    let (status, _) = call(&server, "POST", "/api/v1/flows/acme_only/trigger", Some(&beta_rw), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    // Same flow name in both: each sees its own runs only.
    let (_, acme_products) = call(&server, "GET", "/api/v1/flows/products", Some(&acme_rw), None).await;
    let (_, beta_products) = call(&server, "GET", "/api/v1/flows/products", Some(&beta_rw), None).await;
    assert_eq!(acme_products["runs"][0]["counts"]["created"], 2, "{acme_products}");
    assert_eq!(beta_products["runs"][0]["counts"]["created"], 1, "{beta_products}");

    // Jobs: acme has a second job; beta's key cannot see it by id or in lists.
    let (status, trig) = call(&server, "POST", "/api/v1/flows/acme_only/trigger", Some(&acme_rw), None).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let acme_job = trig["job"]["id"].as_i64().unwrap();
    assert_eq!(beta.store.job(acme_job).await.unwrap().map(|j| j.id), None, "ids are per workspace: beta has no job {acme_job}");
    let (status, e) = call(&server, "GET", &format!("/api/v1/jobs/{acme_job}"), Some(&beta_rw), None).await;
    assert_eq!((status, e["error"]["code"].as_str()), (StatusCode::NOT_FOUND, Some("not_found")));
    let (_, jobs) = call(&server, "GET", "/api/v1/jobs", Some(&beta_rw), None).await;
    assert_eq!(names(&jobs, "jobs", "flow"), ["products"], "{jobs}");
    assert_eq!(jobs["jobs"][0]["keys"], json!(["B-1"]));
    let (_, jobs) = call(&server, "GET", "/api/v1/jobs", Some(&acme_rw), None).await;
    assert_eq!(names(&jobs, "jobs", "flow"), ["acme_only", "products"], "{jobs}");

    // Runs and their per-record outcomes.
    let (_, runs) = call(&server, "GET", "/api/v1/runs", Some(&acme_rw), None).await;
    let acme_run = runs["runs"][0]["id"].as_i64().unwrap();
    let (_, recs) = call(&server, "GET", &format!("/api/v1/runs/{acme_run}/records"), Some(&acme_rw), None).await;
    assert_eq!(names(&recs, "records", "key"), ["T-1", "T-2"]);
    let (_, recs) = call(&server, "GET", &format!("/api/v1/runs/{acme_run}/records"), Some(&beta_rw), None).await;
    assert!(!recs.to_string().contains("T-1"), "beta reads acme's run records: {recs}");

    // Failures: parked in acme; beta can neither list, retry nor drop it.
    let run = acme.store.begin_run("products", "incremental").await.unwrap();
    let mut batch = ferry_engine::store::BatchCommit::default();
    batch.failed.push(ferry_engine::store::NewFailure {
        key: "T-BAD".into(),
        position: None,
        stage: ferry_engine::store::Stage::Write,
        field: None,
        message: "refused".into(),
        retryable: false,
        source: product("T-BAD", "1"),
    });
    acme.store.commit_batch("products", run, batch).await.unwrap();
    let (_, failures) = call(&server, "GET", "/api/v1/failures", Some(&acme_rw), None).await;
    let failure = failures["failures"][0]["id"].as_i64().unwrap();
    let (_, failures) = call(&server, "GET", "/api/v1/failures", Some(&beta_rw), None).await;
    assert_eq!(failures["failures"], json!([]));
    let (status, _) = call(&server, "POST", &format!("/api/v1/failures/{failure}/retry"), Some(&beta_rw), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = call(&server, "DELETE", &format!("/api/v1/failures/{failure}"), Some(&beta_rw), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(acme.store.failures(None, None).await.unwrap().len(), 1, "acme's failure is still there");

    // Cross-reference.
    let (status, x) = call(&server, "GET", "/api/v1/xref/T-1", Some(&acme_rw), None).await;
    assert_eq!((status, x["xref"][0]["flow"].as_str()), (StatusCode::OK, Some("products")));
    let (status, _) = call(&server, "GET", "/api/v1/xref/T-1", Some(&beta_rw), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // Connections: each admin sees its own, secrets redacted (and `call` asserts no secret in any answer).
    let (status, conns) = call(&server, "GET", "/api/v1/connections", Some(&acme_admin), None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(names(&conns, "connections", "name"), ["erp", "shop", "web"]);
    let erp = &conns["connections"][0];
    assert_eq!(erp["options"]["password"], "***", "{erp}");
    assert_eq!(erp["options"]["url"], "https://***@erp.acme.example/rpc", "{erp}");
    assert_eq!(erp["webhook_secret"], true);
    assert_eq!(erp["ok"], false);
    assert!(erp["error"]["message"].as_str().unwrap().contains("login refused for password"), "the connector's message is kept, scrubbed: {erp}");
    let (_, conns) = call(&server, "POST", "/api/v1/connections/erp/check", Some(&beta_admin), None).await;
    assert!(conns["options"]["url"].as_str().unwrap().contains("erp.beta.example"), "{conns}");
    // A write key is no admin key, in its own workspace or another.
    let (status, _) = call(&server, "GET", "/api/v1/connections", Some(&beta_rw), None).await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    // Webhooks name their workspace and are checked with that workspace's secret.
    let body = json!({"skus": ["W-1"]});
    let send = |req: Request<Body>| {
        let server = server.clone();
        async move { router_for(server).oneshot(req).await.unwrap().status() }
    };
    assert_eq!(send(hook("/hooks/beta/erp", &body, "acme-hook-secret")).await, StatusCode::UNAUTHORIZED);
    assert_eq!(send(hook("/hooks/erp", &body, "acme-hook-secret")).await, StatusCode::NOT_FOUND, "ambiguous with several workspaces");
    assert_eq!(send(hook("/hooks/gamma/erp", &body, "acme-hook-secret")).await, StatusCode::NOT_FOUND);
    assert_eq!(send(hook("/hooks/acme/erp", &body, "acme-hook-secret")).await, StatusCode::ACCEPTED);
    assert_eq!(drain(&beta).await, 0, "nothing reached beta");
    assert_eq!(drain(&acme).await, 2, "acme_only trigger and the webhook's targeted sync");
    let (_, out) = call(&server, "GET", "/api/v1/records/products?collection=out", Some(&acme_rw), None).await;
    assert_eq!(names(&out, "records", "key"), ["T-1", "T-2", "W-1"]);
    let (_, out) = call(&server, "GET", "/api/v1/records/products?collection=out", Some(&beta_rw), None).await;
    assert_eq!(names(&out, "records", "key"), ["B-1"]);

    // Unknown keys reach nothing; metrics tell workspaces apart.
    let (status, _) = call(&server, "GET", "/api/v1/flows", Some("fy_0000000000000000_00"), None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = call(&server, "GET", "/metrics", None, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "metrics name every workspace's flows: not without a key");
    // A workspace's key sees its own metrics only.
    let (_, metrics) = call(&server, "GET", "/metrics", Some(&acme_rw), None).await;
    let text = metrics.as_str().unwrap();
    assert!(text.contains("workspace=\"acme\"") && !text.contains("beta"), "{text}");
    // The operator's metrics token sees all of them.
    let operator = Arc::new(Server {
        workspaces: server.workspaces.clone(),
        multi: true,
        settings: ferry_server::ServerSettings { metrics_token: Some(ferry_server::Secret::new("ops-token-1")), ..server.settings.clone() },
        dashboard: Default::default(),
    });
    let (status, _) = call(&operator, "GET", "/metrics", Some("ops-token-2"), None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (_, metrics) = call(&operator, "GET", "/metrics", Some("ops-token-1"), None).await;
    let text = metrics.as_str().unwrap();
    assert!(text.contains("ferry_records_synced_total{workspace=\"acme\",flow=\"products\"} 2"), "{text}");
    assert!(text.contains("ferry_records_synced_total{workspace=\"beta\",flow=\"products\"} 1"), "{text}");
    assert_eq!(text.matches("# TYPE ferry_queue_jobs gauge").count(), 1, "one family header for all workspaces");
}

#[tokio::test]
async fn workspaces_must_not_share_a_state_store_and_the_server_config_holds_no_flows() {
    let stores = Stores::new();
    let dir = &stores.dir;
    write_configs(&stores);
    std::fs::write(dir.path().join("ws/beta.toml"), workspace_toml("beta", &stores.state("acme"))).unwrap();
    let top = Config::parse("[server]\nworkspaces = { acme = \"ws/acme.toml\", beta = \"ws/beta.toml\" }\n", dir.path().to_path_buf()).unwrap();
    let err = open(top).await.err().expect("shared store refused").to_string();
    assert!(err.contains("same state store"), "{err}");

    let top = Config::parse(
        "[server]\nworkspaces = { acme = \"ws/acme.toml\" }\n[connections.x]\ntype = \"api\"\n",
        dir.path().to_path_buf(),
    )
    .unwrap();
    let err = open(top).await.err().expect("connections in the server config refused").to_string();
    assert!(err.contains("no connections or flows of its own"), "{err}");

    let err = Config::parse("[server]\nworkspaces = { \"Acme Co\" = \"ws/acme.toml\" }\n", dir.path().to_path_buf())
        .map_err(|e| e.to_string())
        .and_then(|c| ferry_server::ServerSettings::from_config(&c))
        .err()
        .unwrap();
    assert!(err.contains("lowercase"), "{err}");
}
