//! A real `ferry serve` process for tests, and plain HTTP/1.1 to it.
#![allow(dead_code)]

use serde_json::Value;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// One HTTP/1.1 request over a fresh connection (`Connection: close`): status and JSON body.
pub fn http(port: u16, method: &str, path: &str, token: Option<&str>, body: Option<&Value>) -> std::io::Result<(u16, Value)> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(60)))?;
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let auth = token.map(|t| format!("authorization: Bearer {t}\r\n")).unwrap_or_default();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nhost: 127.0.0.1\r\nconnection: close\r\ncontent-type: application/json\r\n{auth}content-length: {}\r\n\r\n{body}",
        body.len()
    )?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw);
    let (head, payload) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    assert!(!head.to_ascii_lowercase().contains("transfer-encoding: chunked"), "unexpected chunked answer: {head}");
    let status: u16 = head.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    Ok((status, serde_json::from_str(payload).unwrap_or(Value::String(payload.to_owned()))))
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

pub struct Server {
    pub child: Child,
    pub port: u16,
}

impl Server {
    pub fn start(config: &Path, port: u16, log: &Path) -> Server {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(log).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_ferry"))
            .env_remove("FERRY_CONFIG")
            .env("FERRY_LOG", "info")
            .arg("--config")
            .arg(config)
            .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start ferry serve");
        let server = Server { child, port };
        let deadline = Instant::now() + Duration::from_secs(30);
        while http(port, "GET", "/healthz", None, None).map(|(s, _)| s).ok() != Some(200) {
            assert!(Instant::now() < deadline, "ferry serve did not answer /healthz within 30 s");
            std::thread::sleep(Duration::from_millis(50));
        }
        server
    }

    pub fn get(&self, path: &str, token: &str) -> Value {
        let (status, v) = http(self.port, "GET", path, Some(token), None).unwrap();
        assert_eq!(status, 200, "GET {path}: {v}");
        v
    }

    /// SIGKILL: no shutdown code runs, the running job keeps its lease, nothing is released.
    pub fn kill_9(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
