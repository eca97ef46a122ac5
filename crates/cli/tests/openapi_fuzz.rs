//! The OpenAPI document is true: schemathesis (PyPI, pinned in scripts/peers/schemathesis/install.sh,
//! installed into target/schemathesis on first use) generates requests from `/api/openapi.json` —
//! valid and invalid parameters, bodies and methods — against a running `ferry serve`, and fails on any
//! 5xx, any status, content type or body the document does not declare (every error answer must match
//! the shared `Error` schema), and any method the server takes that the document does not list.
//! Bounded: a fixed seed, few examples per operation, 30 s of generation.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().unwrap()
}

/// Installs (once) and returns the pinned `st`.
fn schemathesis() -> PathBuf {
    let target = Path::new(env!("CARGO_TARGET_TMPDIR")).parent().unwrap().to_path_buf();
    let out = Command::new(repo_root().join("scripts/peers/schemathesis/install.sh"))
        .arg(target.join("schemathesis"))
        .stderr(Stdio::inherit())
        .output()
        .expect("run scripts/peers/schemathesis/install.sh");
    assert!(out.status.success(), "installing schemathesis failed (needs python3 with venv and PyPI)");
    PathBuf::from(String::from_utf8(out.stdout).unwrap().lines().last().expect("install.sh prints the st path").trim())
}

struct Serve(Child);

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn ferry(config: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_ferry"));
    c.env_remove("FERRY_CONFIG").env("FERRY_LOG", "warn").arg("--config").arg(config);
    c
}

const CONFIG: &str = r#"
[server]
workers = 1

[connections.web]
type = "api"
collection = "in"
webhook_secret = "hook-secret"

[connections.shop]
type = "api"
collection = "out"

[flows.products]
source = "web"
target = "shop"
stream = "products"
"#;

#[test]
fn schemathesis_finds_no_server_error_and_no_answer_outside_the_openapi_document() {
    let st = schemathesis();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("ferry.toml");
    std::fs::write(&config, CONFIG).unwrap();
    let key = ferry(&config).args(["keys", "create", "--scope", "admin"]).output().unwrap();
    assert!(key.status.success());
    let token = String::from_utf8(key.stdout).unwrap().trim().to_owned();

    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let log = std::fs::File::create(dir.path().join("serve.log")).unwrap();
    let _serve = Serve(
        ferry(&config).args(["serve", "--listen", &format!("127.0.0.1:{port}")]).stdout(Stdio::null()).stderr(log).spawn().expect("start ferry serve"),
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "ferry serve did not listen within 30 s");
        std::thread::sleep(Duration::from_millis(50));
    }

    let started = Instant::now();
    let out = Command::new(&st)
        .current_dir(dir.path()) // its .hypothesis folder goes there
        .args(["run", &format!("http://127.0.0.1:{port}/api/openapi.json")])
        .args(["--header", &format!("Authorization: Bearer {token}")])
        .args(["--checks", "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance,unsupported_method"])
        .args(["--phases", "coverage,fuzzing", "--max-examples", "8", "--max-time", "30", "--seed", "20261202"])
        // One worker: CPython 3.11.7's parser is not thread-safe for hypothesis's lambda descriptions.
        .args(["--workers", "1", "--request-timeout", "10", "--output-truncate", "false"])
        .env("NO_COLOR", "1")
        .output()
        .expect("run schemathesis");
    let report = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    eprintln!("schemathesis took {:?}:\n{report}", started.elapsed());
    let serve_log = std::fs::read_to_string(dir.path().join("serve.log")).unwrap_or_default();
    assert!(out.status.success(), "schemathesis found answers outside the document:\n{report}\nserver log:\n{serve_log}");
    // "2460 generated, 2460 passed": the number before "generated" (a bare `contains("0 generated")` also
    // matched 2460; warnings say "rejected generated data").
    let generated: u64 = report
        .split_whitespace()
        .collect::<Vec<_>>()
        .windows(2)
        .filter(|w| w[1].starts_with("generated"))
        .find_map(|w| w[0].parse().ok())
        .unwrap_or(0);
    assert!(report.contains("passed") && generated > 0, "schemathesis ran no test case:\n{report}");
    assert!(!serve_log.contains("panicked"), "{serve_log}");
}
