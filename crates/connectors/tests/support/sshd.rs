//! Brings up the project's own OpenSSH server (scripts/peers/sshd/up.sh) once per test process and hands
//! out fresh folders on it. up.sh holds a flock for its whole run, so parallel test processes share one
//! server; each test works in a folder of its own under the server's data folder.

use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The test server's port: 18302, or `FERRY_TEST_SSHD_PORT`.
pub fn port() -> u16 {
    ferry_testkit::peer_port("FERRY_TEST_SSHD_PORT", 18302)
}

/// `<peers dir>/sshd`.
pub fn peer_dir() -> PathBuf {
    ferry_testkit::peers_dir().join("sshd")
}

fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().expect("workspace root")
}

/// Runs up.sh once per process; panics with its output when the bring-up fails.
pub fn ensure_up() {
    static UP: OnceLock<()> = OnceLock::new();
    UP.get_or_init(|| {
        let script = workspace().join("scripts/peers/sshd/up.sh");
        let out = Command::new("bash").arg(&script).arg(peer_dir()).arg(port().to_string()).output().expect("run scripts/peers/sshd/up.sh");
        assert!(
            out.status.success(),
            "{} failed:\n{}\n{}",
            script.display(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    });
}

/// The SFTP login (the user sshd runs as).
pub fn user() -> String {
    std::fs::read_to_string(peer_dir().join("user")).expect("up.sh writes the user").trim().to_owned()
}

fn uid() -> u32 {
    std::fs::read_to_string(peer_dir().join("uid")).expect("up.sh writes the uid").trim().parse().expect("a uid")
}

/// The server's host key fingerprint, `SHA256:…` (as `ssh-keygen -l` prints it).
pub fn host_fingerprint() -> String {
    let out = Command::new("ssh-keygen").arg("-lf").arg(peer_dir().join("host_ed25519.pub")).output().expect("ssh-keygen");
    String::from_utf8_lossy(&out.stdout).split_whitespace().nth(1).expect("a fingerprint").to_owned()
}

/// A fresh folder on the server: its local path (to put files in and look at) and its `sftp://` URL.
pub struct Folder {
    pub local: PathBuf,
    pub url: String,
}

impl Folder {
    /// Writes a file into the folder the way the other side of an SFTP exchange would find it.
    pub fn put(&self, name: &str, text: &str) {
        let path = self.local.join(name);
        std::fs::write(&path, text).unwrap();
        give(&path);
    }

    /// The connection's options: the folder, the test user's key and the server's known_hosts entry.
    pub fn options(&self, extra: Value) -> Value {
        let mut v = json!({
            "path": self.url,
            "key_path": peer_dir().join("user_ed25519"),
            "known_hosts_path": peer_dir().join("known_hosts"),
        });
        for (k, x) in extra.as_object().cloned().unwrap_or_default() {
            v[k] = x;
        }
        v
    }

    /// The same options as TOML lines, for a config.
    pub fn toml(&self, extra: &str) -> String {
        format!(
            "path = \"{}\"\nkey_path = \"{}\"\nknown_hosts_path = \"{}\"\n{extra}\n",
            self.url,
            peer_dir().join("user_ed25519").display(),
            peer_dir().join("known_hosts").display()
        )
    }

    /// Names in the folder (or one of its subfolders), sorted.
    pub fn names(&self, sub: &str) -> Vec<String> {
        let mut names: Vec<String> = match std::fs::read_dir(self.local.join(sub)) {
            Ok(entries) => entries.map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect(),
            Err(_) => Vec::new(),
        };
        names.sort();
        names
    }
}

/// The server's data folder does not fill up with test folders: each goes when its test is done.
impl Drop for Folder {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.local);
    }
}

/// Hands a file or folder to the SFTP user, so the server may rename and replace it.
pub fn give(path: &Path) {
    if let Err(e) = std::os::unix::fs::chown(path, Some(uid()), None) {
        // Not root: the tests and sshd run as the same user, who owns it already.
        assert_eq!(e.kind(), std::io::ErrorKind::PermissionDenied, "chown {}: {e}", path.display());
    }
}

/// A new folder on the server, named `prefix-<random>`.
pub fn folder(prefix: &str) -> Folder {
    ensure_up();
    let name = format!("{prefix}-{:016x}", rand::random::<u64>());
    let local = peer_dir().join("data").join(&name);
    std::fs::create_dir_all(&local).unwrap();
    give(&local);
    let url = format!("sftp://{}@127.0.0.1:{}{}", user(), port(), local.display());
    Folder { local, url }
}
