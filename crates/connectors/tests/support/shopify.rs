//! The project's Shopify emulator (scripts/peers/shopify/up.sh: the Admin GraphQL API 2026-10 on Shopify's
//! official schema) for the live tests: started once per test process on `FERRY_TEST_SHOPIFY_PORT`
//! (default 18400) in `<peers dir>/shopify`; up.sh holds a flock and returns at once when it already runs.
//! The shop lives in memory and is shared by every test process: tests never reset it, they create
//! uniquely named data (SKUs, e-mails) and place their own orders.

use ferry_connectors::shopify::{Options, Shopify};
use serde_json::{Value, json};
use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

pub const SHOPIFY_TOKEN: &str = "ferry-test-token";
pub const SHOPIFY_WEBHOOK_SECRET: &str = "ferry-test-shopify-secret";

pub fn shopify_port() -> u16 {
    ferry_testkit::peer_port("FERRY_TEST_SHOPIFY_PORT", 18400)
}

pub fn shopify_base() -> String {
    format!("http://127.0.0.1:{}", shopify_port())
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().expect("workspace root")
}

/// `<peers dir>/shopify`, or `FERRY_TEST_SHOPIFY_DIR` (an emulator of one's own next to a shared Tryton).
pub fn shopify_dir() -> PathBuf {
    std::env::var_os("FERRY_TEST_SHOPIFY_DIR").filter(|d| !d.is_empty()).map(PathBuf::from).unwrap_or_else(|| ferry_testkit::peers_dir().join("shopify"))
}

/// Starts (or finds running) the emulator; panics with the script's output when it cannot.
pub fn shopify_up() -> String {
    static UP: OnceLock<String> = OnceLock::new();
    UP.get_or_init(|| start(&shopify_dir(), shopify_port())).clone()
}

/// A second emulator of the tests' own (the port after the shared one's, its own directory) for tests
/// that change the whole shop's state, e.g. drain the rate bucket, which would disturb tests running in
/// parallel on the shared one.
pub fn shopify_private_up() -> String {
    static UP: OnceLock<String> = OnceLock::new();
    UP.get_or_init(|| {
        let mut dir = shopify_dir().into_os_string();
        dir.push("-private");
        start(&PathBuf::from(dir), shopify_port() + 1)
    })
    .clone()
}

fn start(dir: &std::path::Path, port: u16) -> String {
    let script = root().join("scripts/peers/shopify/up.sh");
    let out = Command::new("bash")
        .arg(&script)
        .arg(dir)
        .arg(port.to_string())
        .env("SHOPIFY_ACCESS_TOKEN", SHOPIFY_TOKEN)
        .output()
        .unwrap_or_else(|e| panic!("running {}: {e}", script.display()));
    assert!(out.status.success(), "{} failed:\n{}{}", script.display(), String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    format!("http://127.0.0.1:{port}")
}

/// Connector options for the emulator, `extra` merged in.
pub fn shopify_options(extra: Value) -> Options {
    let mut v = json!({"shop": "ferry-test.myshopify.com", "base_url": shopify_up(), "access_token": SHOPIFY_TOKEN, "bulk_poll_seconds": 1});
    for (k, x) in extra.as_object().cloned().unwrap_or_default() {
        v[k] = x;
    }
    serde_json::from_value(v).expect("valid test options")
}

pub fn shopify(extra: Value) -> Shopify {
    Shopify::new(shopify_options(extra), "shop").expect("connector")
}

/// `[connections.NAME]` of a Shopify connection to the emulator.
pub fn shopify_connection_toml(name: &str, extra: &str) -> String {
    format!(
        "[connections.{name}]\ntype = \"shopify\"\nshop = \"ferry-test.myshopify.com\"\nbase_url = \"{}\"\naccess_token = \"{SHOPIFY_TOKEN}\"\nbulk_poll_seconds = 1\n{extra}\n",
        shopify_up()
    )
}

/// A test control (`/_emulator/...`): POST `body`, or GET when `body` is null; the JSON answer.
pub async fn emulator(path: &str, body: Value) -> Value {
    emulator_at(&shopify_up(), path, body).await
}

/// A test control of the emulator at `base`.
pub async fn emulator_at(base: &str, path: &str, body: Value) -> Value {
    let url = format!("{base}{path}");
    let http = reqwest::Client::new();
    let req = if body.is_null() { http.get(&url) } else { http.post(&url).json(&body) };
    let resp = req.send().await.unwrap_or_else(|e| panic!("{url}: {e}"));
    let status = resp.status();
    let v: Value = resp.json().await.unwrap_or_else(|e| panic!("{url}: {e}"));
    assert!(status.is_success(), "{url}: HTTP {status}: {v}");
    v
}

/// The emulator's state dump (products by handle, inventory levels, orders, fulfillments…).
pub async fn emulator_state() -> Value {
    emulator("/_emulator/state", Value::Null).await
}

/// The order number (`N` of gid://shopify/Order/N) of an emulator order id.
pub fn order_number(gid: &str) -> u64 {
    gid.rsplit('/').next().unwrap().parse().unwrap()
}
