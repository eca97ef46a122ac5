//! The `ferry` binary with the sql connector (examples/sql-legacy) against the machine's PostgreSQL, the
//! database URL kept as a secret in the state store: `check` and `sync --all` work, a second sync writes
//! nothing, and the URL's password shows up nowhere.

#[path = "../../connectors/tests/sqldb/mod.rs"]
mod sqldb;

use sqldb::{Server, TestDb};
use std::path::Path;
use std::process::{Command, Output, Stdio};

const PASSWORD: &str = "Sql-Url-S3cret-41";

fn ferry(dir: &Path, key: &Path, args: &[&str], stdin: Option<&str>) -> (Output, String) {
    let mut c = Command::new(env!("CARGO_BIN_EXE_ferry"));
    c.current_dir(dir)
        .env_remove("FERRY_CONFIG")
        .env_remove("FERRY_MASTER_KEY")
        .env("FERRY_MASTER_KEY_FILE", key)
        .env("FERRY_LOG", "debug")
        .arg("--config")
        .arg(dir.join("ferry.toml"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = c.spawn().expect("run ferry");
    if let Some(text) = stdin {
        use std::io::Write;
        child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    }
    drop(child.stdin.take());
    let out = child.wait_with_output().unwrap();
    let all = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(!all.contains(PASSWORD), "ferry {} printed the URL's password:\n{all}", args.join(" "));
    (out, all)
}

#[tokio::test]
async fn the_sql_legacy_example_runs_with_its_url_kept_as_a_secret() {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/sql-legacy");
    let db = TestDb::create(Server::Postgres, "cli").await;
    db.exec(&std::fs::read_to_string(example.join("schema.postgres.sql")).unwrap()).await;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::create_dir(d.join("shop")).unwrap();
    std::fs::copy(example.join("shop/orders.jsonl"), d.join("shop/orders.jsonl")).unwrap();
    let config = std::fs::read_to_string(example.join("ferry.toml")).unwrap().replace("url_env = \"LEGACY_DB_URL\"", "url = { secret = \"legacy-db\" }");
    std::fs::write(d.join("ferry.toml"), config).unwrap();
    // PostgreSQL's trust login ignores the password: it is there to be kept out of every output.
    let url = db.url.replacen("://postgres@", &format!("://postgres:{PASSWORD}@"), 1);
    assert!(url.contains(PASSWORD), "{url}");
    let key = d.join("master.key");

    let (out, text) = ferry(d, &key, &["secrets", "init", "--key-file", key.to_str().unwrap()], None);
    assert!(out.status.success(), "{text}");
    let (out, text) = ferry(d, &key, &["secrets", "set", "legacy-db"], Some(&format!("{url}\n")));
    assert!(out.status.success(), "{text}");
    let (out, text) = ferry(d, &key, &["check"], None);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(text.contains("postgres://***@127.0.0.1"), "the URL is named without its credentials: {text}");
    assert!(text.contains("webord_hdr"), "{text}");

    let (out, text) = ferry(d, &key, &["--json", "sync", "--all"], None);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert_eq!(db.scalar("SELECT CAST(COUNT(*) AS TEXT) FROM webord_lin").await, "3");
    assert_eq!(std::fs::read_to_string(d.join("shop/products.jsonl")).unwrap().lines().count(), 3);
    let (out, text) = ferry(d, &key, &["sync", "--all"], None);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert_eq!(db.scalar("SELECT CAST(COUNT(*) AS TEXT) FROM webord_hdr").await, "2");
    assert_eq!(std::fs::read_to_string(d.join("shop/products.jsonl")).unwrap().lines().count(), 3, "nothing written twice");
}
