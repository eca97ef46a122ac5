//! One SSH connection to an SFTP server, made lazily and made again after it drops: host key
//! verification (known_hosts and/or a pinned fingerprint; an unknown host is refused), key or password
//! authentication, and the few file operations the file connectors need. Every operation is retried on a
//! fresh connection when the transport fails (a dropped connection, a timeout): reads and the
//! temp-then-rename upload are idempotent, so a repeat is harmless.

use super::location::Location;
use ferry_engine::{ConnectorError, ErrorKind};
use russh::keys::{HashAlg, PrivateKey, PrivateKeyWithHashAlg, PublicKey, PublicKeyOrCertificate};
use russh_sftp::client::SftpSession;
use russh_sftp::client::error::Error as SftpError;
use russh_sftp::client::rawsession::RawSftpSession;
use russh_sftp::protocol::{OpenFlags, StatusCode};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::Mutex;
use zeroize::Zeroizing;

/// Attempts of one operation when the transport fails (each on a fresh connection).
const ATTEMPTS: u32 = 3;
/// Bytes moved per SFTP request when copying a file.
const COPY_BUFFER: usize = 256 * 1024;

/// How Ferry proves who it is.
pub(crate) struct Credentials {
    pub(crate) key: Option<Arc<PrivateKey>>,
    pub(crate) password: Option<Zeroizing<String>>,
}

/// Which host keys are accepted. At least one of the two is always set (a default known_hosts file).
#[derive(Clone, Debug)]
pub(crate) struct HostKeyPolicy {
    pub(crate) known_hosts: Option<PathBuf>,
    /// `SHA256:…` as `ssh-keygen -lf` prints it.
    pub(crate) fingerprint: Option<String>,
}

impl HostKeyPolicy {
    /// `Ok` when the key is the expected one; otherwise why it is refused.
    pub(crate) fn verify(&self, host: &str, port: u16, key: &PublicKey) -> Result<(), String> {
        let shown = key.fingerprint(HashAlg::Sha256).to_string();
        let what = format!("host key of {host}:{port} ({} {shown})", key.algorithm().as_str());
        if let Some(pinned) = &self.fingerprint {
            let pinned = pinned.trim();
            let pinned_b64 = pinned.strip_prefix("SHA256:").unwrap_or(pinned);
            let shown_b64 = shown.strip_prefix("SHA256:").unwrap_or(&shown);
            if pinned_b64.trim_end_matches('=') != shown_b64.trim_end_matches('=') {
                return Err(format!("{what} does not match the pinned host_key_fingerprint {pinned}: refusing to connect"));
            }
        }
        if let Some(path) = &self.known_hosts {
            if !path.is_file() {
                return Err(format!(
                    "{what} refused: known_hosts {} does not exist (set known_hosts_path, or pin host_key_fingerprint = \"{shown}\" \
                     after checking it with the server's owner)",
                    path.display()
                ));
            }
            // russh's own check compares whole keys (comments included) and calls a host changed as soon as
            // one listed key of the same type differs; OpenSSH accepts any listed key that matches.
            let listed = russh::keys::known_hosts::known_host_keys_path(host, port, path)
                .map_err(|e| format!("{what} refused: cannot read known_hosts {}: {e}", path.display()))?;
            if listed.iter().any(|(_, k)| k.key_data() == key.key_data()) {
                return Ok(());
            }
            return Err(match listed.iter().find(|(_, k)| k.algorithm() == key.algorithm()) {
                Some((line, _)) => format!(
                    "{what} refused: known_hosts {} line {line} lists another {} key for this host (the server was re-installed, \
                     or someone is in between): check with the server's owner before replacing the line",
                    path.display(),
                    key.algorithm().as_str()
                ),
                None => format!(
                    "{what} is not in known_hosts {}: refusing an unknown host (add it, e.g. `ssh-keyscan -p {port} {host} >> {}` after \
                     checking the fingerprint with the server's owner, or pin it with host_key_fingerprint = \"{shown}\")",
                    path.display(),
                    path.display()
                ),
            });
        }
        Ok(())
    }
}

/// The russh handler: checks the server's host key against the policy and keeps the reason of a refusal.
struct Verifier {
    policy: HostKeyPolicy,
    host: String,
    port: u16,
    refusal: Arc<std::sync::Mutex<Option<String>>>,
}

impl russh::client::Handler for Verifier {
    type Error = russh::Error;

    async fn check_server_key(&mut self, key: &PublicKeyOrCertificate) -> Result<bool, Self::Error> {
        let verdict = match key {
            PublicKeyOrCertificate::PublicKey { key, .. } => self.policy.verify(&self.host, self.port, key),
            // Host certificates would need a trusted CA; Ferry pins keys.
            PublicKeyOrCertificate::Certificate(_) => Err(format!(
                "{}:{} presented a host certificate; Ferry verifies plain host keys (known_hosts or host_key_fingerprint)",
                self.host, self.port
            )),
        };
        match verdict {
            Ok(()) => Ok(true),
            Err(reason) => {
                tracing::error!(host = %self.host, port = self.port, "{reason}");
                *self.refusal.lock().unwrap_or_else(|p| p.into_inner()) = Some(reason);
                Ok(false)
            }
        }
    }
}

/// A live connection: the SSH session and two SFTP channels (the high-level one for files, a raw one for
/// OpenSSH's `posix-rename` extension, which the high-level session does not offer).
struct Connection {
    ssh: russh::client::Handle<Verifier>,
    sftp: SftpSession,
    raw: RawSftpSession,
}

/// Size and modification time of a remote file: what "unchanged" means for a file on the server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Stamp {
    pub(crate) size: u64,
    pub(crate) mtime: u32,
}

/// Why an operation failed, before it becomes a [`ConnectorError`].
enum Failure {
    /// The transport failed: worth a fresh connection and another attempt.
    Transport(String),
    /// The server answered: not found, permission denied, …
    Refused(ErrorKind, String),
}

fn classify(e: SftpError) -> Failure {
    match e {
        SftpError::Status(status) => {
            let kind = match status.status_code {
                StatusCode::NoSuchFile | StatusCode::PermissionDenied => ErrorKind::Config,
                _ => ErrorKind::Permanent,
            };
            Failure::Refused(kind, format!("{} ({:?})", status.error_message, status.status_code))
        }
        other => Failure::Transport(other.to_string()),
    }
}

fn not_found(e: &SftpError) -> bool {
    matches!(e, SftpError::Status(s) if s.status_code == StatusCode::NoSuchFile)
}

/// An SFTP server reached as one user, with one connection at a time (made on first use).
pub(crate) struct SftpClient {
    location: Location,
    credentials: Credentials,
    host_keys: HostKeyPolicy,
    timeout: Duration,
    connection: Mutex<Option<Arc<Connection>>>,
    /// Names temporary files uniquely within this process.
    temp_counter: AtomicU64,
}

impl SftpClient {
    pub(crate) fn new(location: Location, credentials: Credentials, host_keys: HostKeyPolicy, timeout: Duration) -> Self {
        SftpClient { location, credentials, host_keys, timeout, connection: Mutex::new(None), temp_counter: AtomicU64::new(0) }
    }

    pub(crate) fn location(&self) -> &Location {
        &self.location
    }

    fn err(&self, kind: ErrorKind, path: &str, message: impl Into<String>) -> ConnectorError {
        ConnectorError::new(kind, self.location.url_of(path), message)
    }

    /// The current connection, or a new one (host key checked, authenticated, SFTP channels open).
    async fn connection(&self) -> Result<Arc<Connection>, ConnectorError> {
        let mut slot = self.connection.lock().await;
        if let Some(c) = slot.as_ref()
            && !c.ssh.is_closed()
        {
            return Ok(c.clone());
        }
        *slot = None;
        let c = Arc::new(self.connect().await?);
        *slot = Some(c.clone());
        Ok(c)
    }

    /// Forgets a connection that failed, so the next operation makes a new one.
    async fn drop_connection(&self, failed: &Arc<Connection>) {
        let mut slot = self.connection.lock().await;
        if slot.as_ref().is_some_and(|c| Arc::ptr_eq(c, failed)) {
            *slot = None;
        }
    }

    /// A new connection, given up on (transiently) when the whole handshake, login and channel set-up
    /// take longer than twice the timeout: a connection dropped half-way must not hang a run.
    async fn connect(&self) -> Result<Connection, ConnectorError> {
        match tokio::time::timeout(self.timeout * 2, self.try_connect()).await {
            Ok(result) => result,
            Err(_) => Err(ConnectorError::transient(
                self.location.url_of(""),
                format!("no SSH session within {} s (handshake, login, sftp channel)", (self.timeout * 2).as_secs()),
            )),
        }
    }

    async fn try_connect(&self) -> Result<Connection, ConnectorError> {
        let l = &self.location;
        let endpoint = l.url_of("");
        let transient = |m: String| ConnectorError::transient(endpoint.clone(), m);
        let config = Arc::new(russh::client::Config {
            inactivity_timeout: Some(self.timeout * 4),
            keepalive_interval: Some(Duration::from_secs(15)),
            ..Default::default()
        });
        let refusal = Arc::new(std::sync::Mutex::new(None));
        let verifier = Verifier { policy: self.host_keys.clone(), host: l.host.clone(), port: l.port, refusal: refusal.clone() };
        let connecting = russh::client::connect(config, (l.host.as_str(), l.port), verifier);
        let mut ssh = match tokio::time::timeout(self.timeout, connecting).await {
            Err(_) => return Err(transient(format!("no SSH handshake within {} s", self.timeout.as_secs()))),
            Ok(Err(e)) => {
                if let Some(reason) = refusal.lock().unwrap_or_else(|p| p.into_inner()).take() {
                    // A wrong host key is never retried: it is an attack or a re-installed server a person must confirm.
                    return Err(ConnectorError::new(ErrorKind::Auth, endpoint, reason));
                }
                return Err(transient(format!("cannot connect: {e}")));
            }
            Ok(Ok(ssh)) => ssh,
        };
        let mut tried = Vec::new();
        let mut authenticated = false;
        if let Some(key) = &self.credentials.key {
            let hash = match key.algorithm() {
                russh::keys::Algorithm::Rsa { .. } => ssh.best_supported_rsa_hash().await.ok().flatten().flatten(),
                _ => None,
            };
            let with_hash = PrivateKeyWithHashAlg::new(key.clone(), hash);
            let result = ssh.authenticate_publickey(&l.user, with_hash).await.map_err(|e| transient(format!("key authentication: {e}")))?;
            authenticated = result.success();
            tried.push(format!("key {}", key.public_key().fingerprint(HashAlg::Sha256)));
        }
        if !authenticated && let Some(password) = &self.credentials.password {
            let result =
                ssh.authenticate_password(&l.user, password.as_str()).await.map_err(|e| transient(format!("password authentication: {e}")))?;
            authenticated = result.success();
            tried.push("password".to_owned());
        }
        if !authenticated {
            return Err(ConnectorError::new(
                ErrorKind::Auth,
                endpoint,
                format!("the server refused user {:?} ({} tried)", l.user, tried.join(", ")),
            ));
        }
        let secs = self.timeout.as_secs().max(1);
        let channel = ssh.channel_open_session().await.map_err(|e| transient(format!("cannot open a channel: {e}")))?;
        channel.request_subsystem(true, "sftp").await.map_err(|e| transient(format!("no sftp subsystem: {e}")))?;
        let sftp_config = russh_sftp::client::Config { request_timeout_secs: secs, ..Default::default() };
        let sftp = SftpSession::new_with_config(channel.into_stream(), sftp_config).await.map_err(|e| transient(format!("sftp start: {e}")))?;
        let channel = ssh.channel_open_session().await.map_err(|e| transient(format!("cannot open a channel: {e}")))?;
        channel.request_subsystem(true, "sftp").await.map_err(|e| transient(format!("no sftp subsystem: {e}")))?;
        let raw = RawSftpSession::new(channel.into_stream());
        raw.set_timeout(secs);
        raw.init().await.map_err(|e| transient(format!("sftp start: {e}")))?;
        tracing::debug!(server = %endpoint, "SFTP connected");
        Ok(Connection { ssh, sftp, raw })
    }

    /// Runs `op` on a connection, again on a fresh one while the transport fails (up to [`ATTEMPTS`]).
    async fn with_retry<T, F, Fut>(&self, path: &str, action: &str, mut op: F) -> Result<T, ConnectorError>
    where
        F: FnMut(Arc<Connection>) -> Fut,
        Fut: std::future::Future<Output = Result<T, Failure>>,
    {
        let mut last = String::new();
        for attempt in 1..=ATTEMPTS {
            if attempt > 1 {
                tokio::time::sleep(Duration::from_millis(250 << (attempt - 2))).await;
            }
            let conn = match self.connection().await {
                Ok(c) => c,
                Err(e) if e.is_transient() => {
                    last = e.message;
                    continue;
                }
                Err(e) => return Err(e),
            };
            match op(conn.clone()).await {
                Ok(v) => return Ok(v),
                Err(Failure::Refused(kind, m)) => return Err(self.err(kind, path, format!("cannot {action}: {m}"))),
                Err(Failure::Transport(m)) => {
                    tracing::warn!(file = %self.location.url_of(path), attempt, "SFTP {action} failed: {m}; reconnecting");
                    self.drop_connection(&conn).await;
                    last = m;
                }
            }
        }
        Err(self.err(ErrorKind::Transient, path, format!("cannot {action}: the connection failed {ATTEMPTS} times (last: {last})")))
    }

    /// Size and modification time of `path`, or `None` when there is no such file.
    pub(crate) async fn stat(&self, path: &str) -> Result<Option<Stamp>, ConnectorError> {
        self.with_retry(path, "look at the file", |c| async move {
            match c.sftp.metadata(path).await {
                Ok(m) => Ok(Some(Stamp { size: m.size.unwrap_or(0), mtime: m.mtime.unwrap_or(0) })),
                Err(e) if not_found(&e) => Ok(None),
                Err(e) => Err(classify(e)),
            }
        })
        .await
    }

    /// Copies `path` into the local file `to` (replacing it) and returns the stamp the file had before and
    /// after: a caller compares them to know the copy is of one unchanged file.
    pub(crate) async fn download(&self, path: &str, to: &Path) -> Result<(Stamp, Stamp), ConnectorError> {
        let t = self.timeout;
        self.with_retry(path, "read the file", |c| async move {
            let before = c.sftp.metadata(path).await.map_err(classify)?;
            let mut remote = c.sftp.open(path).await.map_err(classify)?;
            let local_err = |e: std::io::Error| Failure::Refused(ErrorKind::Permanent, format!("local copy {}: {e}", to.display()));
            let mut local = tokio::fs::File::create(to).await.map_err(local_err)?;
            let mut buf = vec![0u8; COPY_BUFFER];
            loop {
                let n = within(t, "reading", remote.read(&mut buf)).await?;
                if n == 0 {
                    break;
                }
                local.write_all(&buf[..n]).await.map_err(local_err)?;
            }
            local.flush().await.map_err(local_err)?;
            drop(remote);
            let after = c.sftp.metadata(path).await.map_err(classify)?;
            let stamp = |m: &russh_sftp::client::fs::Metadata| Stamp { size: m.size.unwrap_or(0), mtime: m.mtime.unwrap_or(0) };
            let copied = local.metadata().await.map_err(local_err)?.len();
            let (before, after) = (stamp(&before), stamp(&after));
            if before == after && copied != after.size {
                return Err(Failure::Transport(format!("copied {copied} of {} bytes", after.size)));
            }
            Ok((before, after))
        })
        .await
    }

    /// Uploads the local file `from` to `path` the way a reader on the server never sees it half-written:
    /// into a temporary name beside it (a dot file ending in `.part`), fsynced, then renamed over `path`
    /// atomically (OpenSSH's `posix-rename`). Returns the new file's stamp.
    pub(crate) async fn upload_replace(&self, from: &Path, path: &str) -> Result<Stamp, ConnectorError> {
        let t = self.timeout;
        let (dir, name) = split_dir(path);
        let n = self.temp_counter.fetch_add(1, Ordering::Relaxed);
        let temp = join(dir, &format!(".{name}.ferry-{}-{n}.part", std::process::id()));
        let temp = temp.as_str();
        let result = self
            .with_retry(path, "write the file", |c| async move {
                let local_err = |e: std::io::Error| Failure::Refused(ErrorKind::Permanent, format!("local copy {}: {e}", from.display()));
                let mut local = tokio::fs::File::open(from).await.map_err(local_err)?;
                let flags = OpenFlags::CREATE | OpenFlags::TRUNCATE | OpenFlags::WRITE;
                let mut remote = c.sftp.open_with_flags(temp, flags).await.map_err(classify)?;
                let mut buf = vec![0u8; COPY_BUFFER];
                loop {
                    let n = local.read(&mut buf).await.map_err(local_err)?;
                    if n == 0 {
                        break;
                    }
                    within(t, "writing", remote.write_all(&buf[..n])).await?;
                }
                within(t, "writing", remote.flush()).await?;
                // Durable before it gets its name: a crash of the server must not leave an empty file there.
                if let Err(Failure::Transport(e)) = within(t, "fsync", remote.sync_all()).await {
                    tracing::debug!("fsync@openssh.com failed or not available: {e}");
                }
                within(t, "closing", remote.shutdown()).await?;
                drop(remote);
                posix_rename(&c.raw, temp, path).await?;
                let m = c.sftp.metadata(path).await.map_err(classify)?;
                Ok(Stamp { size: m.size.unwrap_or(0), mtime: m.mtime.unwrap_or(0) })
            })
            .await;
        if result.is_err()
            && let Ok(c) = self.connection().await
        {
            let _ = c.sftp.remove_file(temp).await;
        }
        result
    }

    /// Renames `from` to `to`, which must not exist (a plain SFTP rename: archive moves never overwrite).
    pub(crate) async fn rename(&self, from: &str, to: &str) -> Result<(), ConnectorError> {
        self.with_retry(from, &format!("move the file to {to}"), |c| async move { c.sftp.rename(from, to).await.map_err(classify) }).await
    }

    /// Creates `dir` (and its missing parents, inside the connection's folder) when it does not exist.
    pub(crate) async fn create_dir_all(&self, dir: &str) -> Result<(), ConnectorError> {
        self.with_retry(dir, "create the folder", |c| async move {
            let mut path = String::new();
            for (i, part) in dir.split('/').enumerate() {
                if i > 0 {
                    path.push('/');
                }
                path.push_str(part);
                if part.is_empty() || part == "~" {
                    continue;
                }
                match c.sftp.metadata(path.as_str()).await {
                    Ok(_) => {}
                    Err(e) if not_found(&e) => c.sftp.create_dir(path.as_str()).await.map_err(classify)?,
                    Err(e) => return Err(classify(e)),
                }
            }
            Ok(())
        })
        .await
    }

    /// File names in `dir` with their stamps (folders left out).
    pub(crate) async fn list(&self, dir: &str) -> Result<Vec<(String, Stamp)>, ConnectorError> {
        self.with_retry(dir, "list the folder", |c| async move {
            let entries = c.sftp.read_dir(dir).await.map_err(classify)?;
            Ok(entries
                .filter(|e| !e.file_type().is_dir())
                .map(|e| {
                    let m = e.metadata();
                    (e.file_name(), Stamp { size: m.size.unwrap_or(0), mtime: m.mtime.unwrap_or(0) })
                })
                .collect())
        })
        .await
    }

    /// Removes a file; a file already gone is fine.
    pub(crate) async fn remove(&self, path: &str) -> Result<(), ConnectorError> {
        self.with_retry(path, "remove the file", |c| async move {
            match c.sftp.remove_file(path).await {
                Ok(()) => Ok(()),
                Err(e) if not_found(&e) => Ok(()),
                Err(e) => Err(classify(e)),
            }
        })
        .await
    }
}

/// One step of a transfer that must make progress within `t` (a write waiting for a window a dead
/// connection never opens would otherwise wait forever).
async fn within<T, E: std::fmt::Display>(t: Duration, what: &str, step: impl std::future::Future<Output = Result<T, E>>) -> Result<T, Failure> {
    match tokio::time::timeout(t, step).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(Failure::Transport(format!("{what}: {e}"))),
        Err(_) => Err(Failure::Transport(format!("{what}: no progress within {} s", t.as_secs()))),
    }
}

/// OpenSSH's `posix-rename@openssh.com`: rename over an existing file atomically (a plain SFTP v3 rename
/// refuses an existing target).
async fn posix_rename(raw: &RawSftpSession, from: &str, to: &str) -> Result<(), Failure> {
    let mut data = Vec::with_capacity(8 + from.len() + to.len());
    for s in [from, to] {
        data.extend_from_slice(&(s.len() as u32).to_be_bytes());
        data.extend_from_slice(s.as_bytes());
    }
    match raw.extended("posix-rename@openssh.com", data).await {
        Ok(russh_sftp::protocol::Packet::Status(s)) if s.status_code == StatusCode::Ok => Ok(()),
        Ok(russh_sftp::protocol::Packet::Status(s)) => Err(Failure::Refused(
            ErrorKind::Permanent,
            format!("the server refused to rename {from} to {to}: {} ({:?}); it needs OpenSSH's posix-rename extension", s.error_message, s.status_code),
        )),
        Ok(other) => Err(Failure::Transport(format!("unexpected answer to posix-rename: {other:?}"))),
        Err(e) => Err(classify(e)),
    }
}

/// `dir/name` → (`dir`, `name`); a bare name → (``, name).
pub(crate) fn split_dir(path: &str) -> (&str, &str) {
    match path.rsplit_once('/') {
        Some((dir, name)) => (dir, name),
        None => ("", path),
    }
}

/// Joins a remote folder and a name with `/` (remote paths are always `/`-separated).
pub(crate) fn join(dir: &str, name: &str) -> String {
    match dir {
        "" => name.to_owned(),
        d if d.ends_with('/') => format!("{d}{name}"),
        d => format!("{d}/{name}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY_A: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGrOkY98CSv3LUMOG0SOQceoi1wegJnT07JDpZwjHMU3 a";
    const KEY_A_FINGERPRINT: &str = "SHA256:nTLWr+mUYiSvFsDVdtlJ+ohWs83+S8BVqK+87d1fvjY";
    const KEY_B: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGSLuyt++CUBrJWBDiuUdKr1b55muLA5KL5P5+ZHEZFg b";

    fn key(text: &str) -> PublicKey {
        PublicKey::from_openssh(text).unwrap()
    }

    fn known_hosts(lines: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("known_hosts");
        std::fs::write(&path, lines).unwrap();
        (dir, path)
    }

    #[test]
    fn a_pinned_fingerprint_must_be_the_servers_with_or_without_prefix_and_padding() {
        let pin = |f: &str| HostKeyPolicy { known_hosts: None, fingerprint: Some(f.to_owned()) };
        assert_eq!(pin(KEY_A_FINGERPRINT).verify("h", 22, &key(KEY_A)), Ok(()));
        assert_eq!(pin(KEY_A_FINGERPRINT.trim_start_matches("SHA256:")).verify("h", 22, &key(KEY_A)), Ok(()));
        assert_eq!(pin(&format!("{KEY_A_FINGERPRINT}=")).verify("h", 22, &key(KEY_A)), Ok(()));
        let refused = pin(KEY_A_FINGERPRINT).verify("h", 2222, &key(KEY_B)).unwrap_err();
        assert!(refused.contains("host key of h:2222 (ssh-ed25519 SHA256:") && refused.contains("does not match the pinned"), "{refused}");
    }

    #[test]
    fn known_hosts_accepts_the_listed_key_and_refuses_an_unknown_host_or_another_key() {
        let (_dir, path) = known_hosts(&format!("[files.example]:2222 {KEY_A}\nother.example {KEY_B}\n"));
        let policy = HostKeyPolicy { known_hosts: Some(path), fingerprint: None };
        assert_eq!(policy.verify("files.example", 2222, &key(KEY_A)), Ok(()));
        let unknown = policy.verify("new.example", 22, &key(KEY_A)).unwrap_err();
        assert!(unknown.contains("not in known_hosts") && unknown.contains(KEY_A_FINGERPRINT), "{unknown}");
        let changed = policy.verify("files.example", 2222, &key(KEY_B)).unwrap_err();
        assert!(changed.contains("refused"), "{changed}");
        // The port is part of the host's name: the same host on 22 is another, unknown host.
        assert!(policy.verify("files.example", 22, &key(KEY_A)).is_err());
    }

    #[test]
    fn with_known_hosts_and_a_pin_both_must_agree() {
        let (_dir, path) = known_hosts(&format!("h {KEY_B}\n"));
        let policy = HostKeyPolicy { known_hosts: Some(path), fingerprint: Some(KEY_A_FINGERPRINT.into()) };
        assert!(policy.verify("h", 22, &key(KEY_B)).unwrap_err().contains("pinned"));
        assert!(policy.verify("h", 22, &key(KEY_A)).unwrap_err().contains("refused"));
    }

    #[test]
    fn remote_paths_split_and_join_with_slashes() {
        assert_eq!(split_dir("/srv/erp/orders.csv"), ("/srv/erp", "orders.csv"));
        assert_eq!(split_dir("orders.csv"), ("", "orders.csv"));
        assert_eq!(join("/srv/erp", "x"), "/srv/erp/x");
        assert_eq!(join("/", "x"), "/x");
        assert_eq!(join("", "x"), "x");
    }
}
