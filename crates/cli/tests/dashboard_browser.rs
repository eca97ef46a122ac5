//! The dashboard in a real browser: Debian's Chromium, headless, driven by Playwright (playwright-core
//! from npm; both installed by scripts/peers/chromium/install.sh) against a real `ferry serve` process
//! serving the quickstart's data with one bad CSV row. The script (tests/browser/dashboard.spec.mjs)
//! signs in, finds the failed record, fixes its payload, replays it and watches the failure go, finds an
//! order by its number, triggers a flow by keyboard, checks a read-only key's buttons are disabled, and
//! looks at the pages at 1280×800 and on a 390-px phone. Screenshots go to target/dashboard-screenshots.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().unwrap()
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| repo_root().join("target"))
}

/// Chromium and playwright-core, installed (or found installed) by the project's script.
fn playwright_dir() -> PathBuf {
    let out = Command::new(repo_root().join("scripts/peers/chromium/install.sh"))
        .arg(target_dir().join("chromium"))
        .stderr(Stdio::inherit())
        .output()
        .expect("run scripts/peers/chromium/install.sh");
    assert!(out.status.success(), "installing chromium / playwright-core failed (needs apt and npm)");
    PathBuf::from(String::from_utf8(out.stdout).unwrap().lines().last().expect("install.sh prints its folder").trim())
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn ferry(config: &Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_ferry")).env_remove("FERRY_CONFIG").arg("--config").arg(config).args(args).output().expect("run ferry")
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let dest = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &dest);
        } else {
            std::fs::copy(entry.path(), dest).unwrap();
        }
    }
}

struct Serve(Child);

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The quickstart (real ERP exports and web orders), with one product row whose price is not a number.
const BAD_ROW: &str = "BAD-9001;Broken Price Rake;;Garden > Tools > Rakes;Cyclone;9357123419999;abc;;0,9;Active;;;;;;2\n";

#[test]
fn the_dashboard_in_chromium_fixes_a_bad_row_finds_an_order_and_refuses_a_read_key() {
    let playwright = playwright_dir();
    let dir = tempfile::tempdir().unwrap();
    let work = dir.path().join("quickstart");
    copy_dir(&repo_root().join("examples/quickstart"), &work);
    let _ = std::fs::remove_file(work.join("ferry-state.db"));
    let products = work.join("erp/products.csv");
    let mut csv = std::fs::read_to_string(&products).unwrap();
    if !csv.ends_with('\n') {
        csv.push('\n');
    }
    csv.push_str(BAD_ROW);
    std::fs::write(&products, csv).unwrap();
    let port = free_port();
    let config = work.join("ferry.toml");
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str(&format!("\n[server]\nlisten = \"127.0.0.1:{port}\"\npoll_millis = 100\n"));
    std::fs::write(&config, text).unwrap();

    // Real data first: every flow once (the bad row is parked; orders land in the ERP's import file).
    let sync = ferry(&config, &["sync", "--all"]);
    assert_eq!(sync.status.code(), Some(2), "one record failed: {}", String::from_utf8_lossy(&sync.stderr));
    let key = |scope: &str| {
        let out = ferry(&config, &["keys", "create", "--scope", scope, "--name", &format!("browser-{scope}")]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    };
    let (write_key, read_key) = (key("read,write"), key("read"));

    let log = std::fs::File::create(dir.path().join("serve.log")).unwrap();
    let _serve = Serve(
        Command::new(env!("CARGO_BIN_EXE_ferry"))
            .env_remove("FERRY_CONFIG")
            .env("FERRY_LOG", "info")
            .arg("--config")
            .arg(&config)
            .arg("serve")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start ferry serve"),
    );
    let base = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "ferry serve did not listen within 30 s");
        std::thread::sleep(Duration::from_millis(50));
    }

    let shots = target_dir().join("dashboard-screenshots");
    std::fs::create_dir_all(&shots).unwrap();
    let started = Instant::now();
    let out = Command::new("node")
        .arg(repo_root().join("crates/cli/tests/browser/dashboard.spec.mjs"))
        .env("FERRY_URL", &base)
        .env("FERRY_WRITE_KEY", &write_key)
        .env("FERRY_READ_KEY", &read_key)
        .env("PLAYWRIGHT_DIR", &playwright)
        .env("SCREENSHOT_DIR", &shots)
        .env("USER_DATA_DIR", dir.path().join("chromium-profile"))
        .output()
        .expect("run node");
    let serve_log = std::fs::read_to_string(dir.path().join("serve.log")).unwrap_or_default();
    eprintln!("browser script ({:?}):\n{}{}", started.elapsed(), String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "the browser script failed (screenshots in {}); server log:\n{serve_log}", shots.display());
    let stdout = String::from_utf8_lossy(&out.stdout);
    for step in ["signed in", "failure fixed and gone", "order found", "flow triggered by keyboard", "read key refused", "phone fits"] {
        assert!(stdout.contains(&format!("ok: {step}")), "step {step:?} did not report: {stdout}");
    }
    for shot in ["overview-1280.png", "failure-1280.png", "overview-390.png", "failure-390.png"] {
        assert!(shots.join(shot).metadata().map(|m| m.len() > 1000).unwrap_or(false), "screenshot {shot} missing");
    }
}
