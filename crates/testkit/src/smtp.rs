//! [`SmtpSink`]: a real SMTP server for tests that send e-mail — aiosmtpd (PyPI, pinned and installed by
//! `scripts/peers/smtp/install.sh`) on a free 127.0.0.1 port, delivering every message into a Maildir.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

pub struct SmtpSink {
    child: Child,
    pub port: u16,
    maildir: PathBuf,
}

impl SmtpSink {
    /// Installs aiosmtpd on first use (into `<target>/smtp`, from a test's `env!("CARGO_TARGET_TMPDIR")`)
    /// and starts one writing into `dir/maildir`. Stopped when dropped.
    pub fn start(target_tmpdir: &Path, dir: &Path) -> SmtpSink {
        let install_dir = target_tmpdir.parent().unwrap_or(target_tmpdir).join("smtp");
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/peers/smtp/install.sh");
        let out = Command::new(&script).arg(&install_dir).stderr(Stdio::inherit()).output().expect("run scripts/peers/smtp/install.sh");
        assert!(out.status.success(), "installing aiosmtpd failed (needs python3 with venv and PyPI)");
        let python = String::from_utf8_lossy(&out.stdout).lines().last().expect("install.sh prints the python path").trim().to_owned();
        let port = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a free port").port();
        let maildir = dir.join("maildir");
        let child = Command::new(python)
            .args(["-m", "aiosmtpd", "-n", "-l", &format!("127.0.0.1:{port}"), "-c", "aiosmtpd.handlers.Mailbox"])
            .arg(&maildir)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start aiosmtpd");
        let sink = SmtpSink { child, port, maildir };
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "aiosmtpd did not listen on 127.0.0.1:{port}");
            std::thread::sleep(Duration::from_millis(50));
        }
        sink
    }

    /// Every message received (headers and body as sent), oldest first.
    pub fn messages(&self) -> Vec<String> {
        let mut mails: Vec<(SystemTime, String)> = std::fs::read_dir(self.maildir.join("new"))
            .map(|d| {
                d.filter_map(Result::ok)
                    .filter_map(|e| Some((e.metadata().ok()?.modified().ok()?, std::fs::read_to_string(e.path()).ok()?)))
                    .collect()
            })
            .unwrap_or_default();
        mails.sort();
        mails.into_iter().map(|(_, text)| text).collect()
    }

    /// The `Subject:` of each message, oldest first.
    pub fn subjects(&self) -> Vec<String> {
        self.messages().iter().map(|m| m.lines().find_map(|l| l.strip_prefix("Subject: ")).unwrap_or_default().to_owned()).collect()
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
