//! `ferry secrets`: values sealed in the state store under a master key, referred to by name from the
//! config, rotated to a new key all at once; and no secret — a stored one or a password written into a
//! URL — in any output, log line, `--json` answer or stored run error.

use std::path::Path;
use std::process::{Command, Output, Stdio};

const STORED: &str = "pw-Stored-S3cret-77";
const IN_URL: &str = "hunter2";

fn ferry(dir: &Path, key_file: Option<&Path>) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_ferry"));
    c.current_dir(dir).env_remove("FERRY_CONFIG").env_remove("FERRY_MASTER_KEY").env_remove("FERRY_MASTER_KEY_FILE").env("FERRY_LOG", "trace");
    c.arg("--config").arg(dir.join("ferry.toml"));
    if let Some(k) = key_file {
        c.env("FERRY_MASTER_KEY_FILE", k);
    }
    c
}

fn run(mut c: Command, args: &[&str], stdin: Option<&str>) -> (Output, String) {
    c.args(args).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = c.spawn().expect("run ferry");
    if let Some(text) = stdin {
        use std::io::Write;
        child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    }
    drop(child.stdin.take());
    let out = child.wait_with_output().unwrap();
    let all = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    for secret in [STORED, IN_URL] {
        assert!(!all.contains(secret), "ferry {} printed the secret {secret}:\n{all}", args.join(" "));
    }
    (out, all)
}

const CONFIG: &str = r#"
[connections.erp]
type = "tryton"
url = "http://admin:hunter2@127.0.0.1:9/"
database = "ferry"
password = { secret = "tryton-admin" }

[connections.shop]
type = "jsonl"
path = "shop"

[flows.products]
source = "erp"
target = "shop"
stream = "products"
"#;

#[test]
fn secrets_are_sealed_in_the_store_resolved_by_name_rotated_and_never_shown() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("ferry.toml"), CONFIG).unwrap();
    let key = d.join("keys/master.key");
    std::fs::create_dir_all(d.join("keys")).unwrap();

    let (out, text) = run(ferry(d, None), &["secrets", "init", "--key-file", key.to_str().unwrap()], None);
    assert!(out.status.success(), "{text}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&key).unwrap().permissions().mode() & 0o777, 0o600);
    }

    // Without the key, nothing can be stored or resolved, and the error says what to set.
    let (out, text) = run(ferry(d, None), &["secrets", "set", "tryton-admin"], Some(STORED));
    assert!(!out.status.success() && text.contains("FERRY_MASTER_KEY_FILE"), "{text}");

    let (out, text) = run(ferry(d, Some(&key)), &["secrets", "set", "tryton-admin"], Some(&format!("{STORED}\n")));
    assert!(out.status.success(), "{text}");
    let (out, _) = run(ferry(d, Some(&key)), &["--json", "secrets", "list"], None);
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(list[0]["name"], "tryton-admin");
    // Only ciphertext on disk.
    for file in std::fs::read_dir(d).unwrap() {
        let path = file.unwrap().path();
        if path.is_file() {
            let bytes = std::fs::read(&path).unwrap();
            assert!(!bytes.windows(STORED.len()).any(|w| w == STORED.as_bytes()), "{} holds the secret in plain text", path.display());
        }
    }

    // Resolved by name: the connector gets the password (Tryton is not there: the call fails), and the
    // URL's credentials are shown redacted in the check, the run report, the stored run and the logs.
    let (out, text) = run(ferry(d, Some(&key)), &["check"], None);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("http://***@127.0.0.1:9/"), "{text}");
    let (out, text) = run(ferry(d, Some(&key)), &["--json", "sync", "products"], None);
    assert_eq!(out.status.code(), Some(1), "{text}");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(report["aborted"].as_str().unwrap().contains("***@127.0.0.1"), "{report}");
    let (_, text) = run(ferry(d, Some(&key)), &["--json", "status"], None);
    assert!(text.contains("***@127.0.0.1"), "{text}");

    // Rotation: everything re-sealed under the new key; the old key opens nothing any more.
    let new_key = d.join("keys/new.key");
    let (out, text) = run(ferry(d, Some(&key)), &["secrets", "rotate", "--new-key-file", new_key.to_str().unwrap()], None);
    assert!(out.status.success(), "{text}");
    let (_, text) = run(ferry(d, Some(&key)), &["check", "erp"], None);
    assert!(text.contains("sealed under master key"), "{text}");
    let (_, text) = run(ferry(d, Some(&new_key)), &["check", "erp"], None);
    assert!(text.contains("http://***@127.0.0.1:9/") && !text.contains("sealed under"), "{text}");

    // Removed: the config's reference now names what is missing.
    let (out, _) = run(ferry(d, Some(&new_key)), &["secrets", "rm", "tryton-admin"], None);
    assert!(out.status.success());
    let (out, text) = run(ferry(d, Some(&new_key)), &["check", "erp"], None);
    assert!(!out.status.success() && text.contains("ferry secrets set tryton-admin"), "{text}");
}

#[test]
fn a_plain_text_password_still_works_with_a_warning_that_shows_no_value() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("ferry.toml"), CONFIG.replace("password = { secret = \"tryton-admin\" }", &format!("password = \"{STORED}\""))).unwrap();
    let mut quiet = ferry(d, None);
    quiet.env("FERRY_LOG", "error");
    let (out, text) = run(quiet, &["check", "erp"], None);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("warning: connections.erp.password is a plain-text secret"), "shown without FERRY_LOG: {text}");
    assert!(text.contains("cannot connect"), "the plain password was used: {text}");
}

#[test]
fn secrets_belong_to_the_workspace_named() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("ferry.toml"), "[server]\nworkspaces = { acme = \"acme/ferry.toml\", beta = \"beta/ferry.toml\" }\n").unwrap();
    for ws in ["acme", "beta"] {
        std::fs::create_dir_all(d.join(ws)).unwrap();
        std::fs::write(d.join(ws).join("ferry.toml"), "[state]\npath = \"state.db\"\n").unwrap();
    }
    let key = d.join("master.key");
    assert!(run(ferry(d, None), &["secrets", "init", "--key-file", key.to_str().unwrap()], None).0.status.success());
    let (out, text) = run(ferry(d, Some(&key)), &["secrets", "set", "shop-pw"], Some(STORED));
    assert!(!out.status.success() && text.contains("--workspace"), "{text}");
    let (out, text) = run(ferry(d, Some(&key)), &["--workspace", "acme", "secrets", "set", "shop-pw"], Some(STORED));
    assert!(out.status.success(), "{text}");
    let list = |ws: &str| {
        let (out, _) = run(ferry(d, Some(&key)), &["--json", "--workspace", ws, "secrets", "list"], None);
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap().as_array().unwrap().len()
    };
    assert_eq!((list("acme"), list("beta")), (1, 0), "acme's secret is not beta's");
}
