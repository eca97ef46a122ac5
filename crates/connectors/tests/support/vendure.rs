//! Live peers for integration tests, started through the project's own scripts under scripts/peers/.
//!
//! Vendure: `scripts/peers/vendure/up.sh <target dir>/peers/vendure 18300`, once per test process
//! (nextest runs every test in its own process; up.sh serialises them with a flock and returns at once
//! when the server is already up). The server is never reset: tests create uniquely named data.

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

pub const VENDURE_PORT: u16 = 18300;
/// The Vendure peer POSTs its events here (fixed at server start, so a fixed port). scripts/test.sh starts
/// the peer with the same URL. The path is `ferry serve`'s webhook route for a connection named `shop`
/// (crates/cli/tests/webhook_live.rs runs the server there); tests that listen themselves take any path.
pub const WEBHOOK_PORT: u16 = 18301;
pub const WEBHOOK_PATH: &str = "/hooks/shop";
pub const WEBHOOK_SECRET: &str = "ferry-test-webhook-secret";

pub struct VendurePeer {
    pub base_url: String,
    pub admin_api: String,
    pub shop_api: String,
    pub username: String,
    pub password: String,
}

fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().expect("workspace root")
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| workspace_root().join("target"))
}

/// Starts (or finds running) the Vendure peer; panics with the script's output when it cannot.
pub fn vendure() -> &'static VendurePeer {
    static PEER: OnceLock<VendurePeer> = OnceLock::new();
    PEER.get_or_init(|| {
        let script = workspace_root().join("scripts/peers/vendure/up.sh");
        let dir = target_dir().join("peers/vendure");
        let out = Command::new("bash")
            .arg(&script)
            .arg(&dir)
            .arg(VENDURE_PORT.to_string())
            .env("WEBHOOK_URL", format!("http://127.0.0.1:{WEBHOOK_PORT}{WEBHOOK_PATH}"))
            .env("WEBHOOK_SECRET", WEBHOOK_SECRET)
            .output()
            .unwrap_or_else(|e| panic!("running {}: {e}", script.display()));
        assert!(
            out.status.success(),
            "{} {} {VENDURE_PORT} failed:\n{}{}",
            script.display(),
            dir.display(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let base_url = format!("http://127.0.0.1:{VENDURE_PORT}");
        VendurePeer {
            admin_api: format!("{base_url}/admin-api"),
            shop_api: format!("{base_url}/shop-api"),
            base_url,
            username: "superadmin".into(),
            password: "superadmin".into(),
        }
    })
}

/// A short random suffix for unique test data.
pub fn unique() -> String {
    use rand::Rng;
    let n: u64 = rand::rng().random();
    format!("{:x}", n & 0xff_ffff_ffff)
}
