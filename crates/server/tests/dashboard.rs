//! The dashboard over a real socket, with reqwest: sign-in (API key, admin password), the session
//! cookie's attributes, CSRF on every form, per-workspace views, read-scope keys refused, and the
//! failures console fixing a bad CSV row and replaying it through the real workers.

use ferry_engine::Config;
use ferry_engine::schedule::SystemClock;
use ferry_engine::store::keys::Scope;
use ferry_engine::store::jobs::JobFilter;
use ferry_server::{Secret, Server};
use reqwest::StatusCode;
use reqwest::redirect::Policy;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

const PRODUCTS: &str = "sku,name,price\nA-1,Spade,49.95\nA-2,Rake,abc\nA-3,Hoe,12.00\n";

fn workspace_config(dir: &Path) -> String {
    std::fs::create_dir_all(dir.join("erp")).unwrap();
    std::fs::create_dir_all(dir.join("shop")).unwrap();
    std::fs::write(dir.join("erp/products.csv"), PRODUCTS).unwrap();
    r#"
[defaults]
timezone = "Australia/Sydney"
[connections.erp]
type = "csv"
path = "erp"
[connections.shop]
type = "jsonl"
path = "shop"
[flows.products]
source = "erp"
target = "shop"
stream = "products"
schedule = "0 3 * * *"
[flows.products.mapping]
rename = { "price" = "price.amount" }
set = { "price.currency" = "AUD", "price.tax_inclusive" = true }
"#
    .to_owned()
}

/// A running `ferry serve` (in process, real socket, real workers) and its keys.
struct Rig {
    _dir: tempfile::TempDir,
    base: String,
    server: Arc<Server>,
    read: String,
    write: String,
    admin: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Drop for Rig {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

async fn start(server: Arc<Server>) -> (String, tokio::sync::oneshot::Sender<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(ferry_server::serve_all(server, listener, async move {
        let _ = rx.await;
    }));
    (base, tx)
}

async fn rig() -> Rig {
    let dir = tempfile::tempdir().unwrap();
    let mut text = workspace_config(dir.path());
    text.push_str("[server]\npoll_millis = 50\n");
    let config = Config::parse(&text, dir.path().to_path_buf()).unwrap();
    let opened = Server::open(config, Arc::new(SystemClock)).await.unwrap();
    let server = Arc::new(Server {
        workspaces: opened.workspaces.clone(),
        multi: false,
        settings: ferry_server::ServerSettings { admin_password: Some(Secret::new("correct horse")), ..opened.settings.clone() },
        dashboard: Default::default(),
    });
    let store = &server.workspaces["default"].store;
    let (_, read) = store.create_key("reader", &[Scope::Read]).await.unwrap();
    let (_, write) = store.create_key("writer", &[Scope::Read, Scope::Write]).await.unwrap();
    let (_, admin) = store.create_key("admin", &[Scope::Admin]).await.unwrap();
    let (base, stop) = start(server.clone()).await;
    Rig { _dir: dir, base, server, read, write, admin, stop: Some(stop) }
}

/// A browser without JavaScript: no redirects followed, cookies kept by hand.
struct Browser {
    http: reqwest::Client,
    base: String,
    session: Option<String>,
}

fn set_cookies(r: &reqwest::Response) -> Vec<String> {
    r.headers().get_all("set-cookie").iter().map(|v| v.to_str().unwrap().to_owned()).collect()
}

fn cookie_value(set: &[String], name: &str) -> Option<String> {
    set.iter().find_map(|c| c.strip_prefix(&format!("{name}="))).map(|c| c.split(';').next().unwrap().to_owned()).filter(|v| !v.is_empty())
}

/// The value of the first `name="csrf" value="…"` on a page.
fn csrf_of(html: &str) -> String {
    let at = html.find(r#"name="csrf" value=""#).unwrap_or_else(|| panic!("no csrf field in {html}"));
    html[at + 19..].split('"').next().unwrap().to_owned()
}

impl Browser {
    fn new(base: &str) -> Browser {
        Browser { http: reqwest::Client::builder().redirect(Policy::none()).build().unwrap(), base: base.to_owned(), session: None }
    }

    async fn get(&self, path: &str) -> (StatusCode, String) {
        let mut req = self.http.get(format!("{}{path}", self.base));
        if let Some(s) = &self.session {
            req = req.header("cookie", format!("ferry_session={s}"));
        }
        let r = req.send().await.unwrap();
        (r.status(), r.text().await.unwrap())
    }

    async fn post(&self, path: &str, form: &[(&str, &str)]) -> reqwest::Response {
        let mut req = self.http.post(format!("{}{path}", self.base)).form(form);
        if let Some(s) = &self.session {
            req = req.header("cookie", format!("ferry_session={s}"));
        }
        req.send().await.unwrap()
    }

    /// Signs in through the form (with its double-submit token); returns the answer's Set-Cookie headers.
    async fn sign_in(&mut self, fields: &[(&str, &str)], extra_header: Option<(&str, &str)>) -> (StatusCode, Vec<String>) {
        let page = self.http.get(format!("{}/signin", self.base)).send().await.unwrap();
        let pre = cookie_value(&set_cookies(&page), "ferry_signin").expect("the sign-in form sets its token cookie");
        let csrf = csrf_of(&page.text().await.unwrap());
        assert_eq!(pre, csrf);
        let mut form: Vec<(&str, &str)> = vec![("csrf", &csrf)];
        form.extend_from_slice(fields);
        let mut req = self.http.post(format!("{}/signin", self.base)).header("cookie", format!("ferry_signin={pre}")).form(&form);
        if let Some((k, v)) = extra_header {
            req = req.header(k, v);
        }
        let r = req.send().await.unwrap();
        let set = set_cookies(&r);
        if let Some(s) = cookie_value(&set, "ferry_session") {
            self.session = Some(s);
        }
        (r.status(), set)
    }

    async fn csrf(&self) -> String {
        let (status, html) = self.get("/").await;
        assert_eq!(status, StatusCode::OK, "{html}");
        csrf_of(&html)
    }
}

async fn wait_for<F: Fn() -> Fut, Fut: Future<Output = bool>>(what: &str, check: F) {
    for _ in 0..200 {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for {what}");
}

/// Waits for the triggered run to park the bad row; on timeout, says what the queue holds.
async fn wait_for_run(state: &ferry_server::AppState) {
    for _ in 0..600 {
        if !state.store.failures(None, None).await.unwrap().is_empty() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let jobs = state.store.jobs(&JobFilter { flow: None, status: None, limit: 10 }).await.unwrap();
    let runs = state.store.runs(None, 10).await.unwrap();
    panic!("the triggered run parked nothing within 30 s; jobs: {jobs:?}; runs: {runs:?}");
}

#[tokio::test]
async fn a_key_signs_in_to_a_strict_http_only_session_and_secure_behind_tls() {
    let r = rig().await;
    let mut b = Browser::new(&r.base);
    let (status, _) = b.get("/").await;
    assert_eq!(status, StatusCode::SEE_OTHER, "no session: to the sign-in page");
    let (status, _) = b.sign_in(&[("key", "fy_0000000000000000_00")], None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(b.session.is_none());
    let (status, set) = b.sign_in(&[("key", &r.read)], None).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let session = set.iter().find(|c| c.starts_with("ferry_session=")).unwrap();
    assert!(session.contains("HttpOnly") && session.contains("SameSite=Strict") && session.contains("Path=/"), "{session}");
    assert!(!session.contains("Secure"), "plain HTTP: a Secure cookie would never come back: {session}");
    let (status, html) = b.get("/").await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains("products") && html.contains("Workspace"), "{html}");

    let mut tls = Browser::new(&r.base);
    let (_, set) = tls.sign_in(&[("key", &r.read)], Some(("x-forwarded-proto", "https"))).await;
    assert!(set.iter().any(|c| c.starts_with("ferry_session=") && c.contains("; Secure")), "{set:?}");

    // A sign-in form posted without its own token cookie (another site's form) is refused.
    let forged = reqwest::Client::builder().redirect(Policy::none()).build().unwrap();
    let r2 = forged.post(format!("{}/signin", r.base)).form(&[("csrf", "x"), ("key", r.read.as_str())]).send().await.unwrap();
    assert_eq!(r2.status(), StatusCode::UNAUTHORIZED);
    assert!(cookie_value(&set_cookies(&r2), "ferry_session").is_none());
}

#[tokio::test]
async fn every_form_needs_the_sessions_csrf_token() {
    let r = rig().await;
    let mut b = Browser::new(&r.base);
    b.sign_in(&[("key", &r.write)], None).await;
    let state = &r.server.workspaces["default"];
    let jobs = || async { state.store.jobs(&JobFilter { flow: None, status: None, limit: 100 }).await.unwrap().len() };
    assert_eq!(b.post("/flows/products/trigger", &[("mode", "incremental")]).await.status(), StatusCode::FORBIDDEN);
    assert_eq!(b.post("/flows/products/trigger", &[("mode", "incremental"), ("csrf", "0000")]).await.status(), StatusCode::FORBIDDEN);
    // Another session's token is no good either.
    let mut other = Browser::new(&r.base);
    other.sign_in(&[("key", &r.write)], None).await;
    let foreign = other.csrf().await;
    assert_eq!(b.post("/flows/products/trigger", &[("mode", "incremental"), ("csrf", &foreign)]).await.status(), StatusCode::FORBIDDEN);
    assert_eq!(jobs().await, 0, "nothing was enqueued by refused forms");
    let csrf = b.csrf().await;
    let ok = b.post("/flows/products/trigger", &[("mode", "incremental"), ("csrf", &csrf)]).await;
    assert_eq!(ok.status(), StatusCode::SEE_OTHER);
    assert_eq!(jobs().await, 1);
    // Sign-out needs it too, and ends the session.
    assert_eq!(b.post("/signout", &[]).await.status(), StatusCode::FORBIDDEN);
    assert_eq!(b.post("/signout", &[("csrf", &csrf)]).await.status(), StatusCode::SEE_OTHER);
    assert_eq!(b.get("/").await.0, StatusCode::SEE_OTHER);
}

#[tokio::test]
async fn a_read_key_sees_everything_but_its_buttons_are_disabled_and_refused() {
    let r = rig().await;
    let mut b = Browser::new(&r.base);
    b.sign_in(&[("key", &r.read)], None).await;
    for path in ["/", "/flows/products", "/failures", "/find?q=A-1", "/connections", "/schedules", "/webhooks", "/keys"] {
        let (status, html) = b.get(path).await;
        assert_eq!(status, StatusCode::OK, "{path}: {html}");
    }
    let (_, html) = b.get("/flows/products").await;
    assert!(html.contains(r#"disabled title="Needs the write scope">Run now"#), "{html}");
    let (_, html) = b.get("/keys").await;
    assert!(html.contains(r#"disabled title="Needs the admin scope">Create key"#), "{html}");
    let csrf = b.csrf().await;
    for (path, form) in [
        ("/flows/products/trigger", vec![("mode", "full")]),
        ("/flows/products/dry-run", vec![]),
        ("/failures/group/retry", vec![("flow", "products"), ("stage", "validate"), ("field", "price.amount")]),
        ("/connections/erp/check", vec![]),
        ("/keys", vec![("name", "sneaky"), ("admin", "on")]),
    ] {
        let mut form = form.clone();
        form.push(("csrf", &csrf));
        let resp = b.post(path, &form).await;
        assert_eq!(resp.status(), StatusCode::FORBIDDEN, "{path}");
        assert!(resp.text().await.unwrap().contains("scope"), "{path}: the page says why");
    }
    let state = &r.server.workspaces["default"];
    assert!(state.store.jobs(&JobFilter { flow: None, status: None, limit: 10 }).await.unwrap().is_empty());
    assert_eq!(state.store.list_keys().await.unwrap().len(), 3, "no key was created");
}

#[tokio::test]
async fn an_admin_key_creates_a_key_shown_once_and_a_revoked_keys_session_ends() {
    let r = rig().await;
    let mut admin = Browser::new(&r.base);
    admin.sign_in(&[("key", &r.admin)], None).await;
    let mut reader = Browser::new(&r.base);
    reader.sign_in(&[("key", &r.read)], None).await;
    let csrf = admin.csrf().await;
    let created = admin.post("/keys", &[("csrf", &csrf), ("name", "website"), ("read", "on"), ("write", "on")]).await;
    assert_eq!(created.status(), StatusCode::OK);
    let html = created.text().await.unwrap();
    let token = html.split(r#"id="new-token" type="text" readonly value=""#).nth(1).unwrap().split('"').next().unwrap().to_owned();
    assert!(token.starts_with("fy_"));
    let (_, list) = admin.get("/keys").await;
    assert!(list.contains("website") && !list.contains(&token), "the token is shown once, never listed");
    let mut website = Browser::new(&r.base);
    assert_eq!(website.sign_in(&[("key", &token)], None).await.0, StatusCode::SEE_OTHER);

    // Admin checks a connection; the overview shows its health from then on.
    assert_eq!(admin.post("/connections/erp/check", &[("csrf", &csrf)]).await.status(), StatusCode::SEE_OTHER);
    let (_, connections) = admin.get("/connections").await;
    assert!(connections.contains("erp: ok") && connections.contains("check passed"), "{connections}");
    let (_, overview) = admin.get("/").await;
    assert!(overview.contains("erp: ok") && overview.contains("shop: unchecked"), "{overview}");

    let state = &r.server.workspaces["default"];
    let read_id = state.store.list_keys().await.unwrap().into_iter().find(|k| k.name == "reader").unwrap().id;
    assert_eq!(admin.post(&format!("/keys/{read_id}/revoke"), &[("csrf", &csrf)]).await.status(), StatusCode::SEE_OTHER);
    assert_eq!(reader.get("/").await.0, StatusCode::SEE_OTHER, "a revoked key's session ends at its next click");
}

#[tokio::test]
async fn the_admin_password_opens_every_workspace_and_a_key_only_its_own() {
    let dir = tempfile::tempdir().unwrap();
    let mut server_text = "[server]\npoll_millis = 50\n[server.workspaces]\n".to_owned();
    for name in ["acme", "beta"] {
        let ws = dir.path().join(name);
        let mut text = workspace_config(&ws);
        text = text.replace("[flows.products]", &format!("[flows.{name}-products]")).replace("[flows.products.mapping]", &format!("[flows.{name}-products.mapping]"));
        std::fs::write(ws.join("ferry.toml"), text).unwrap();
        server_text.push_str(&format!("{name} = \"{name}/ferry.toml\"\n"));
    }
    let config = Config::parse(&server_text, dir.path().to_path_buf()).unwrap();
    let opened = Server::open(config, Arc::new(SystemClock)).await.unwrap();
    let server = Arc::new(Server {
        workspaces: opened.workspaces.clone(),
        multi: true,
        settings: ferry_server::ServerSettings { admin_password: Some(Secret::new("correct horse")), ..opened.settings.clone() },
        dashboard: Default::default(),
    });
    let (_, beta_key) = server.workspaces["beta"].store.create_key("beta reader", &[Scope::Read]).await.unwrap();
    let (base, _stop) = start(server.clone()).await;

    let mut wrong = Browser::new(&base);
    assert_eq!(wrong.sign_in(&[("password", "battery staple"), ("workspace", "acme")], None).await.0, StatusCode::UNAUTHORIZED);
    let mut op = Browser::new(&base);
    assert_eq!(op.sign_in(&[("password", "correct horse"), ("workspace", "acme")], None).await.0, StatusCode::SEE_OTHER);
    let (_, html) = op.get("/").await;
    assert!(html.contains("acme-products") && !html.contains("beta-products"), "one workspace at a time: {html}");
    let csrf = op.csrf().await;
    assert_eq!(op.post("/workspace", &[("csrf", &csrf), ("workspace", "beta")]).await.status(), StatusCode::SEE_OTHER);
    let (_, html) = op.get("/").await;
    assert!(html.contains("beta-products") && !html.contains("acme-products"), "{html}");

    let mut key = Browser::new(&base);
    key.sign_in(&[("key", &beta_key)], None).await;
    let (_, html) = key.get("/").await;
    assert!(html.contains("beta-products") && !html.contains("acme-products"), "{html}");
    let csrf = key.csrf().await;
    assert_eq!(key.post("/workspace", &[("csrf", &csrf), ("workspace", "acme")]).await.status(), StatusCode::FORBIDDEN);
    assert_eq!(key.get("/flows/acme-products").await.0, StatusCode::NOT_FOUND, "another workspace's flow does not exist here");
}

#[tokio::test]
async fn a_bad_csv_row_is_fixed_in_the_console_replayed_and_found() {
    let r = rig().await;
    let state = r.server.workspaces["default"].clone();
    let mut b = Browser::new(&r.base);
    b.sign_in(&[("key", &r.write)], None).await;
    let csrf = b.csrf().await;
    assert_eq!(b.post("/flows/products/trigger", &[("mode", "incremental"), ("csrf", &csrf)]).await.status(), StatusCode::SEE_OTHER);
    wait_for_run(&state).await;

    let (_, groups) = b.get("/failures").await;
    assert!(groups.contains("price.amount") && groups.contains("Retry all 1"), "{groups}");
    let failure = state.store.failures(None, None).await.unwrap().remove(0);
    assert_eq!(failure.key, "A-2");
    let (_, group) = b.get("/failures/group?flow=products&stage=validate&field=price.amount").await;
    assert!(group.contains(&format!(r#"<a href="/failures/{}">A-2</a>"#, failure.id)), "{group}");
    let (_, detail) = b.get(&format!("/failures/{}", failure.id)).await;
    assert!(detail.contains("abc") && detail.contains("products.csv line 3"), "{detail}");

    // Not JSON, then JSON the model refuses: not saved, and the page says which field.
    let bad = b.post(&format!("/failures/{}/payload", failure.id), &[("csrf", &csrf), ("payload", "{\"sku\": ")]).await;
    assert_eq!(bad.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(bad.text().await.unwrap().contains("not valid JSON"));
    let still_bad = serde_json::json!({"sku": "A-2", "name": "Rake", "price": "twelve"}).to_string();
    let bad = b.post(&format!("/failures/{}/payload", failure.id), &[("csrf", &csrf), ("payload", &still_bad)]).await;
    assert_eq!(bad.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(bad.text().await.unwrap().contains("price.amount"));
    assert_eq!(state.store.failure(failure.id).await.unwrap().unwrap().source["price"], "abc");

    let fixed = serde_json::json!({"sku": "A-2", "name": "Rake", "price": "27.95"}).to_string();
    assert_eq!(b.post(&format!("/failures/{}/payload", failure.id), &[("csrf", &csrf), ("payload", &fixed)]).await.status(), StatusCode::SEE_OTHER);
    assert_eq!(b.post(&format!("/failures/{}/replay", failure.id), &[("csrf", &csrf)]).await.status(), StatusCode::SEE_OTHER);
    wait_for("the replay", || async { state.store.failures(None, None).await.unwrap().is_empty() }).await;
    let (_, groups) = b.get("/failures").await;
    assert!(groups.contains("No open failures"), "{groups}");

    let (_, found) = b.get("/find?q=A-2").await;
    assert!(found.contains("Synced") && found.contains("Runs that touched it") && found.contains("created"), "{found}");
    // The replay's run lists the record with its fields, all new.
    let replay_run = state.store.runs(Some("products"), 1).await.unwrap().remove(0);
    let (_, run) = b.get(&format!("/runs/{}", replay_run.id)).await;
    assert!(run.contains("price.amount") && run.contains("27.95"), "{run}");
    let (_, flow) = b.get("/flows/products").await;
    assert!(flow.contains("<svg class=\"runs\"") && flow.contains("run 1:"), "{flow}");
}

#[tokio::test]
async fn the_webhook_log_shows_refused_deliveries_and_why() {
    let r = rig().await;
    let http = reqwest::Client::new();
    let resp = http.post(format!("{}/hooks/erp", r.base)).body("{}").send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED, "erp has no webhook secret");
    let _ = http.post(format!("{}/hooks/nowhere", r.base)).body("{}").send().await.unwrap();
    let mut b = Browser::new(&r.base);
    b.sign_in(&[("key", &r.read)], None).await;
    let (_, html) = b.get("/webhooks").await;
    assert!(html.contains("no_webhook_secret") && html.contains("rejected"), "{html}");
    assert!(!html.contains("nowhere"), "unknown connections are not logged (anyone can send those)");
}

#[tokio::test]
async fn the_dry_run_shows_planned_writes_field_by_field() {
    let r = rig().await;
    let mut b = Browser::new(&r.base);
    b.sign_in(&[("key", &r.write)], None).await;
    let csrf = b.csrf().await;
    let resp = b.post("/flows/products/dry-run", &[("csrf", &csrf)]).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let html = resp.text().await.unwrap();
    assert!(html.contains("Planned writes") && html.contains("A-1") && html.contains("Would fail") && html.contains("A-2"), "{html}");
    let state = &r.server.workspaces["default"];
    assert!(state.store.failures(None, None).await.unwrap().is_empty(), "a dry run parks nothing");
}

#[tokio::test]
async fn a_failure_is_dropped_only_with_a_reason_which_is_kept() {
    let r = rig().await;
    let state = r.server.workspaces["default"].clone();
    let mut b = Browser::new(&r.base);
    b.sign_in(&[("key", &r.write)], None).await;
    let csrf = b.csrf().await;
    assert_eq!(b.post("/flows/products/trigger", &[("mode", "incremental"), ("csrf", &csrf)]).await.status(), StatusCode::SEE_OTHER);
    wait_for_run(&state).await;
    let failure = state.store.failures(None, None).await.unwrap().remove(0);
    let path = format!("/failures/{}/drop", failure.id);
    assert_eq!(b.post(&path, &[("csrf", &csrf), ("reason", "  ")]).await.status(), StatusCode::BAD_REQUEST);
    assert!(state.store.failure(failure.id).await.unwrap().is_some(), "no reason, not dropped");
    assert_eq!(b.post(&path, &[("csrf", &csrf), ("reason", "rake discontinued")]).await.status(), StatusCode::SEE_OTHER);
    assert!(state.store.failure(failure.id).await.unwrap().is_none());
    let (_, page) = b.get(&format!("/failures/{}", failure.id)).await;
    assert!(page.contains("no open failure"), "{page}");
    let (_, groups) = b.get("/failures").await;
    assert!(groups.contains("No open failures"), "{groups}");
}
