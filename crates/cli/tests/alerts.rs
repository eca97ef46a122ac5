//! `ferry alerts test` sends a test message through a real SMTP server (aiosmtpd) and names a channel
//! that fails; `ferry alerts list` shows what `ferry serve` keeps open in the state store.

use ferry_engine::store::{AlertStore, SqliteStore};
use ferry_testkit::SmtpSink;
use std::path::Path;
use std::process::{Command, Output};

fn ferry(dir: &Path, args: &[&str]) -> (Output, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_ferry"))
        .current_dir(dir)
        .env_remove("FERRY_CONFIG")
        .env_remove("FERRY_MASTER_KEY")
        .env_remove("FERRY_MASTER_KEY_FILE")
        .arg("--config")
        .arg(dir.join("ferry.toml"))
        .args(args)
        .output()
        .expect("run ferry");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out, text)
}

#[tokio::test]
async fn alerts_test_reaches_each_channel_and_list_shows_open_alerts() {
    let dir = tempfile::tempdir().unwrap();
    let smtp = SmtpSink::start(Path::new(env!("CARGO_TARGET_TMPDIR")), dir.path());
    // nothing listens on the webhook's port: that channel fails, by name, without its URL
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let config = format!(
        r#"
[connections.feed]
type = "jsonl"
path = "feed"
[flows.products]
source = "feed"
target = "feed"
stream = "products"
[alerts.channels.mail]
type = "email"
host = "127.0.0.1"
port = {}
security = "none"
from = "ferry@example.com"
to = ["ops@example.com"]
[alerts.channels.chat]
type = "webhook"
url = "http://127.0.0.1:{closed}/hook-token-xyz"
[alerts.rules.failed]
kind = "flow_failed"
"#,
        smtp.port
    );
    std::fs::write(dir.path().join("ferry.toml"), config).unwrap();

    let (out, text) = ferry(dir.path(), &["alerts", "test", "--channel", "mail"]);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("mail: sent"), "{text}");
    assert_eq!(smtp.subjects(), ["[Ferry default] TEST mail"]);
    assert!(smtp.messages()[0].contains("Rules that send here: failed"), "{:?}", smtp.messages());

    let (out, text) = ferry(dir.path(), &["alerts", "test"]);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("chat: FAILED: POST") && !text.contains("hook-token-xyz"), "{text}");
    assert!(text.contains("warning: alerts.channels.chat.url is a plain-text secret"), "{text}");
    assert_eq!(smtp.subjects().len(), 2);

    let (out, text) = ferry(dir.path(), &["alerts", "list"]);
    assert!(out.status.success() && text.contains("no open alerts"), "{text}");
    let store = SqliteStore::open(&dir.path().join("ferry-state.db")).await.unwrap();
    let id = store.open_alert("failed", "products", "flow products: run 1 aborted", chrono::Utc::now()).await.unwrap().unwrap();
    store.record_delivery(id, "mail", false, chrono::Utc::now()).await.unwrap();
    let (_, text) = ferry(dir.path(), &["alerts", "list"]);
    assert!(text.contains("failed (products): open since") && text.contains("told: mail") && text.contains("flow products: run 1 aborted"), "{text}");
    let (_, text) = ferry(dir.path(), &["--json", "alerts", "list"]);
    let list: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(list[0]["rule"], "failed");
    assert_eq!(list[0]["told"], serde_json::json!(["mail"]));
}
