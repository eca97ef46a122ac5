//! The tests' Medusa 2 peer: `scripts/peers/medusa/up.sh <peers dir>/medusa 18500`, once per test
//! process (up.sh serialises callers with a flock and returns at once when the server is up). The server
//! is never reset: tests create uniquely named data. Its subscriber POSTs signed events to
//! `http://127.0.0.1:18501/hooks/shop` (fixed at server start; `ferry serve`'s route for a connection
//! named `shop`).

use serde_json::{Value, json};
use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

/// 18500, or `FERRY_TEST_MEDUSA_PORT`.
pub fn medusa_port() -> u16 {
    ferry_testkit::peer_port("FERRY_TEST_MEDUSA_PORT", 18500)
}
/// 18501, or `FERRY_TEST_MEDUSA_WEBHOOK_PORT`.
pub fn medusa_webhook_port() -> u16 {
    ferry_testkit::peer_port("FERRY_TEST_MEDUSA_WEBHOOK_PORT", 18501)
}
pub const MEDUSA_WEBHOOK_PATH: &str = "/hooks/shop";
pub const MEDUSA_WEBHOOK_SECRET: &str = "ferry-test-webhook-secret";

pub struct MedusaPeer {
    pub dir: PathBuf,
    pub base_url: String,
    /// The secret Admin API key (`sk_…`) the peer made.
    pub api_key: String,
    /// Ids the peer seeded (region, sales channel, stock location, shipping option, …).
    pub seed: Value,
}

fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().expect("workspace root")
}

/// Starts (or finds running) the tests' Medusa; panics with the script's output when it cannot.
pub fn medusa() -> &'static MedusaPeer {
    static PEER: OnceLock<MedusaPeer> = OnceLock::new();
    PEER.get_or_init(|| {
        // FERRY_TEST_MEDUSA_DIR: a Medusa of one's own while the other peers come from a shared peers dir.
        let dir = std::env::var_os("FERRY_TEST_MEDUSA_DIR").map(PathBuf::from).unwrap_or_else(|| ferry_testkit::peers_dir().join("medusa"));
        let port = medusa_port();
        let script = workspace_root().join("scripts/peers/medusa/up.sh");
        let webhook_url = format!("http://127.0.0.1:{}{MEDUSA_WEBHOOK_PATH}", medusa_webhook_port());
        let out = Command::new("bash")
            .arg(&script)
            .arg(&dir)
            .arg(port.to_string())
            .env("WEBHOOK_URL", webhook_url)
            .env("WEBHOOK_SECRET", MEDUSA_WEBHOOK_SECRET)
            .output()
            .unwrap_or_else(|e| panic!("running {}: {e}", script.display()));
        assert!(out.status.success(), "{} failed:\n{}{}", script.display(), String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        let api_key = std::fs::read_to_string(dir.join("admin-api-key")).expect("admin-api-key").trim().to_owned();
        let seed: Value = serde_json::from_str(&std::fs::read_to_string(dir.join("seed.json")).expect("seed.json")).expect("seed.json is JSON");
        MedusaPeer { dir, base_url: format!("http://127.0.0.1:{port}"), api_key, seed }
    })
}

/// Places an order through Medusa's Store API as a checkout does (scripts/peers/medusa/place-order.mjs):
/// `items` as `(sku, quantity)`; returns the order as the Store API answers it.
pub fn place_medusa_order(items: &[(&str, i64)], email: &str) -> Value {
    let peer = medusa();
    let script = workspace_root().join("scripts/peers/medusa/place-order.mjs");
    let mut cmd = Command::new("node");
    cmd.arg(&script).arg(&peer.dir);
    for (sku, qty) in items {
        cmd.arg(format!("sku:{sku}={qty}"));
    }
    cmd.arg("--email").arg(email);
    let out = cmd.output().unwrap_or_else(|e| panic!("running {}: {e}", script.display()));
    assert!(out.status.success(), "place-order failed:\n{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("place-order printed no JSON ({e}): {}", String::from_utf8_lossy(&out.stdout)))
}

/// A bare Admin API client to look at Medusa independently of the connector.
pub struct MedusaAdmin {
    http: reqwest::Client,
    base: String,
    key: String,
}

impl MedusaAdmin {
    pub fn new() -> Self {
        let peer = medusa();
        MedusaAdmin { http: reqwest::Client::new(), base: peer.base_url.clone(), key: peer.api_key.clone() }
    }

    pub async fn get(&self, path_and_query: &str) -> Value {
        let resp = self.http.get(format!("{}{path_and_query}", self.base)).basic_auth(&self.key, Some("")).send().await.expect("GET");
        let status = resp.status();
        let body: Value = resp.json().await.expect("JSON");
        assert!(status.is_success(), "GET {path_and_query}: {status} {body}");
        body
    }

    pub async fn post(&self, path: &str, body: Value) -> Value {
        let resp = self.http.post(format!("{}{path}", self.base)).basic_auth(&self.key, Some("")).json(&body).send().await.expect("POST");
        let status = resp.status();
        let answer: Value = resp.json().await.unwrap_or(json!(null));
        assert!(status.is_success(), "POST {path}: {status} {answer}");
        answer
    }
}

/// A short random suffix for unique test data (upper-case: SKUs and handles are made from it).
pub fn unique() -> String {
    use rand::Rng;
    let n: u64 = rand::rng().random();
    format!("{:X}", n & 0xff_ffff_ffff)
}
