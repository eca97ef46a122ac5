// Workspaces share no secret and no folder: two workspaces with a connection of the same name each
// verify webhooks with their own variable (`FERRY_WEBHOOK_SECRET_<WORKSPACE>_<CONNECTION>`), the
// process-wide `FERRY_WEBHOOK_SECRET_<CONNECTION>` is not used by either, connectors' env passwords are
// the workspace's own, and a workspace's file paths stay in its folder unless the operator allows it.
// `tenancy_secrets_on_postgres.rs` runs the same tests with the workspaces' stores on PostgreSQL.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use ferry_engine::Config;
use ferry_engine::schedule::SystemClock;
use ferry_server::{Server, router_for, webhook};
use std::path::Path;
use std::sync::Arc;
use tower::ServiceExt;

#[path = "support/stores.rs"]
mod stores;
use stores::Stores;

fn write(dir: &Path, file: &str, text: &str) {
    let p = dir.join(file);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, text).unwrap();
}

const SHOP: &str = "[connections.shop]\ntype = \"api\"\ncollection = \"in\"\n";

async fn hook(server: &Arc<Server>, path: &str, secret: &str) -> StatusCode {
    let body = br#"{"skus":["A"]}"#.to_vec();
    let req = Request::post(path)
        .header("x-ferry-signature", webhook::sign(secret, &body))
        .header("x-ferry-timestamp", chrono::Utc::now().timestamp().to_string())
        .body(Body::from(body))
        .unwrap();
    router_for(server.clone()).oneshot(req).await.unwrap().status()
}

#[tokio::test]
async fn two_workspaces_with_a_connection_of_the_same_name_do_not_share_its_webhook_secret() {
    let stores = Stores::new();
    let dir = &stores.dir;
    // Names used by this test alone (the environment is the process's).
    write(dir.path(), "wsacmeq/ferry.toml", &format!("[state]\n{}\n{SHOP}", stores.state("wsacmeq")));
    write(dir.path(), "wsbetaq/ferry.toml", &format!("[state]\n{}\n{SHOP}", stores.state("wsbetaq")));
    // SAFETY: set before the server starts; no other test reads these names.
    unsafe {
        std::env::set_var("FERRY_WEBHOOK_SECRET_WSACMEQ_SHOP", "acme-only-secret");
        std::env::set_var("FERRY_WEBHOOK_SECRET_WSBETAQ_SHOP", "beta-only-secret");
        std::env::set_var("FERRY_WEBHOOK_SECRET_SHOP", "process-wide-secret");
    }
    let top = Config::parse(
        "[server]\nworkspaces = { wsacmeq = \"wsacmeq/ferry.toml\", wsbetaq = \"wsbetaq/ferry.toml\" }\n",
        dir.path().to_path_buf(),
    )
    .unwrap();
    let server = Server::open(top, Arc::new(SystemClock)).await.unwrap();
    assert_eq!(hook(&server, "/hooks/wsacmeq/shop", "acme-only-secret").await, StatusCode::ACCEPTED);
    assert_eq!(hook(&server, "/hooks/wsbetaq/shop", "beta-only-secret").await, StatusCode::ACCEPTED);
    for (path, secret) in [
        ("/hooks/wsacmeq/shop", "beta-only-secret"),
        ("/hooks/wsbetaq/shop", "acme-only-secret"),
        ("/hooks/wsacmeq/shop", "process-wide-secret"),
        ("/hooks/wsbetaq/shop", "process-wide-secret"),
    ] {
        assert_eq!(hook(&server, path, secret).await, StatusCode::UNAUTHORIZED, "{path} took {secret}");
    }

    // A single config (no workspaces) keeps the short form.
    write(dir.path(), "single/ferry.toml", &format!("[state]\n{}\n{SHOP}", stores.state("single")));
    let single = Server::open(Config::load(&dir.path().join("single/ferry.toml")).unwrap(), Arc::new(SystemClock)).await.unwrap();
    assert_eq!(hook(&single, "/hooks/shop", "process-wide-secret").await, StatusCode::ACCEPTED);
}

#[tokio::test]
async fn connector_passwords_from_the_environment_are_the_workspaces_own() {
    let stores = Stores::new();
    let dir = &stores.dir;
    let erp = "[connections.erp]\ntype = \"tryton\"\nurl = \"http://127.0.0.1:9/\"\ndatabase = \"x\"\n";
    write(dir.path(), "wspwa/ferry.toml", &format!("[state]\n{}\n{erp}", stores.state("wspwa")));
    write(dir.path(), "wspwb/ferry.toml", &format!("[state]\n{}\n{erp}", stores.state("wspwb")));
    // SAFETY: names used by this test alone.
    unsafe { std::env::set_var("FERRY_PASSWORD_WSPWA_ERP", "pw-of-a") };
    let top = Config::parse("[server]\nworkspaces = { wspwa = \"wspwa/ferry.toml\", wspwb = \"wspwb/ferry.toml\" }\n", dir.path().to_path_buf()).unwrap();
    let server = Server::open(top, Arc::new(SystemClock)).await.unwrap();
    let a = &server.workspace("wspwa").unwrap().workspace.config.connections["erp"].options;
    assert_eq!(a["password"].as_str(), Some("pw-of-a"));
    let b = &server.workspace("wspwb").unwrap().workspace.config.connections["erp"].options;
    assert!(b.get("password").is_none(), "a's password is not b's");
    // b's connector reads b's own variable, never the process-wide TRYTON_PASSWORD.
    assert_eq!(b["password_env"].as_str(), Some("FERRY_PASSWORD_WSPWB_ERP"));
    let err = server.workspace("wspwb").unwrap().workspace.connection("erp").err().unwrap().to_string();
    assert!(err.contains("FERRY_PASSWORD_WSPWB_ERP"), "{err}");

    // Two workspaces naming the same variable explicitly: refused at start.
    let shared = format!("{erp}password_env = \"SHARED_PW\"\n");
    write(dir.path(), "wspwa/ferry.toml", &format!("[state]\n{}\n{shared}", stores.state("wspwa")));
    write(dir.path(), "wspwb/ferry.toml", &format!("[state]\n{}\n{shared}", stores.state("wspwb")));
    let top = Config::parse("[server]\nworkspaces = { wspwa = \"wspwa/ferry.toml\", wspwb = \"wspwb/ferry.toml\" }\n", dir.path().to_path_buf()).unwrap();
    let err = Server::open(top, Arc::new(SystemClock)).await.err().unwrap().to_string();
    assert!(err.contains("SHARED_PW") && err.contains("give each workspace its own"), "{err}");
}

#[tokio::test]
async fn a_workspaces_file_connectors_stay_in_its_folder_unless_the_operator_allows_otherwise() {
    let stores = Stores::new();
    let dir = &stores.dir;
    write(dir.path(), "beta/secret-export/products.csv", "sku,name\nB-1,Beta's\n");
    write(dir.path(), "acme/ferry.toml", &format!("[state]\n{}\n[connections.erp]\ntype = \"csv\"\npath = \"../beta/secret-export\"\n", stores.state("acme")));
    let top = |extra: &str| Config::parse(&format!("[server]\nworkspaces = {{ acme = \"acme/ferry.toml\" }}\n{extra}"), dir.path().to_path_buf()).unwrap();
    let err = Server::open(top(""), Arc::new(SystemClock)).await.err().unwrap().to_string();
    assert!(err.contains("workspace acme") && err.contains("connections.erp.path") && err.contains("outside the workspace's folder"), "{err}");
    assert!(Server::open(top("allow_paths_outside_workspace = true"), Arc::new(SystemClock)).await.is_ok());
    // Inside its folder: fine.
    write(dir.path(), "acme/ferry.toml", &format!("[state]\n{}\n[connections.erp]\ntype = \"csv\"\npath = \"exports\"\n", stores.state("acme")));
    assert!(Server::open(top(""), Arc::new(SystemClock)).await.is_ok());
}

/// A connector whose check echoes its password and URL, as a careless one might.
struct Echo {
    password: String,
    url: String,
}

#[async_trait::async_trait]
impl ferry_engine::Connector for Echo {
    fn describe(&self) -> ferry_engine::Description {
        ferry_engine::Description {
            name: "echo",
            summary: "test",
            config_schema: serde_json::json!({}),
            streams: vec![],
            batch_size: 1,
            webhooks: false,
        }
    }
    async fn check(&self) -> Result<ferry_engine::CheckReport, ferry_engine::ConnectorError> {
        Ok(ferry_engine::CheckReport { ok: false, details: vec![format!("logged in to {} with {}", self.url, self.password)] })
    }
    fn read(&self, _: ferry_engine::ReadRequest) -> futures::stream::BoxStream<'_, Result<ferry_engine::ReadItem, ferry_engine::ConnectorError>> {
        Box::pin(futures::stream::empty())
    }
}

struct EchoFactory;
impl ferry_engine::ConnectorFactory for EchoFactory {
    fn name(&self) -> &'static str {
        "echo"
    }
    fn summary(&self) -> &'static str {
        "test"
    }
    fn build(&self, options: &serde_json::Value, _: &ferry_engine::BuildContext) -> Result<Arc<dyn ferry_engine::Connector>, ferry_engine::ConnectorError> {
        Ok(Arc::new(Echo { password: options["password"].as_str().unwrap_or_default().into(), url: options["url"].as_str().unwrap_or_default().into() }))
    }
}

#[tokio::test]
async fn a_stored_secret_reaches_the_connector_and_never_an_api_answer() {
    use ferry_engine::secrets::MasterKey;
    let stores = Stores::new();
    let dir = &stores.dir;
    let key = MasterKey::generate();
    let ws_toml = format!(
        "[state]\n{}\n[connections.erp]\ntype = \"echo\"\npassword = {{ secret = \"erp-pw\" }}\nurl = {{ secret = \"erp-url\" }}\n",
        stores.state("wsstore")
    );
    write(dir.path(), "wsstore/ferry.toml", &ws_toml);
    {
        let ws_config = Config::load(&dir.path().join("wsstore/ferry.toml")).unwrap();
        let store = ferry_engine::store::open_configured(&ws_config).await.unwrap();
        store.put_secret(key.seal("erp-pw", "stored-Pw-4711")).await.unwrap();
        store.put_secret(key.seal("erp-url", "http://admin:url-Pw-815@erp.invalid/")).await.unwrap();
    }
    // SAFETY: FERRY_MASTER_KEY is read by no other test of this binary.
    unsafe { std::env::set_var(ferry_engine::secrets::MASTER_KEY_ENV, key.to_hex().as_str()) };
    let top = Config::parse("[server]\nworkspaces = { wsstore = \"wsstore/ferry.toml\" }\n", dir.path().to_path_buf()).unwrap();
    let server = Server::open_with(top, Arc::new(SystemClock), |r| {
        r.register(Box::new(EchoFactory));
    })
    .await
    .unwrap();
    let state = server.workspace("wsstore").unwrap();
    let (_, admin) = state.store.create_key("admin", &[ferry_engine::store::keys::Scope::Admin]).await.unwrap();
    for uri in ["/api/v1/connections", "/api/v1/connections/erp/check"] {
        let method = if uri.ends_with("check") { "POST" } else { "GET" };
        let req = Request::builder().method(method).uri(uri).header("authorization", format!("Bearer {admin}")).body(Body::empty()).unwrap();
        let resp = router_for(server.clone()).oneshot(req).await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        let text = String::from_utf8(http_body_util::BodyExt::collect(resp.into_body()).await.unwrap().to_bytes().to_vec()).unwrap();
        assert!(text.contains("logged in to"), "the connector ran with the resolved options: {text}");
        for secret in ["stored-Pw-4711", "url-Pw-815"] {
            assert!(!text.contains(secret), "{uri} showed {secret}: {text}");
        }
    }
}
