//! Folders on an SFTP server for the csv and jsonl connectors (`path = "sftp://user@host:port/dir"`),
//! with the semantics of a local folder:
//!
//! - **Reading** a file copies it to a private local folder first (so the connectors' own readers run on
//!   it unchanged), and only once the other side has finished writing it ([`Pickup`]): its size and
//!   modification time held still for `settle_seconds` (default), a done-marker file beside it
//!   (`products.csv.done`), or nothing at all when the other side writes a temporary name and renames.
//!   A file that changes while it is copied is copied again.
//! - **Archiving** (`archive = "processed"`): each file is a delivery, read once. A complete file is
//!   renamed to a unique in-flight name (`.products.csv.ferry-reading-<time>`) and read; the run commits
//!   its records (or parks them) with a checkpoint naming the in-flight file; the next run moves that
//!   file into the archive folder, then looks for a new delivery. A run killed midway therefore reads the
//!   in-flight file again rather than losing it, and a new delivery under the same name is never taken
//!   for the old one. Streams read this way are incremental: a missing file is "nothing new", never
//!   "everything was deleted".
//! - **Writing** (csv orders, jsonl targets) keeps a local copy of the remote file ([`Mirror`]): it is
//!   refreshed from the server before each batch when the server's file changed, the batch is written
//!   to it as to a local file, and the whole file is uploaded to a temporary name beside the target,
//!   fsynced and renamed over it (OpenSSH's `posix-rename`), so a reader on the server sees the old file
//!   or the new one, never a half-written one.
//! - **Host keys** are verified against a known_hosts file (default `~/.ssh/known_hosts`) and/or a pinned
//!   `host_key_fingerprint`; an unknown or changed key is refused.

mod client;
mod location;

pub(crate) use client::Stamp;
pub(crate) use location::is_remote;

use client::{Credentials, HostKeyPolicy, SftpClient, join};
use ferry_engine::connector::parse_options;
use ferry_engine::{BuildContext, CheckReport, ConnectorError, ReadMode};
use location::Location;
use serde::Deserialize;
use serde_json::{Value, json};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use zeroize::Zeroizing;

/// The options a connection with an `sftp://` path may carry besides its connector's own.
pub(crate) const OPTIONS: [&str; 11] = [
    "password",
    "private_key",
    "key_path",
    "passphrase",
    "known_hosts_path",
    "host_key_fingerprint",
    "pickup",
    "settle_seconds",
    "done_suffix",
    "archive",
    "timeout_seconds",
];

/// Rounds of "is it complete? copy it" before a file still changing is given up on for this run.
const ROUNDS: u32 = 3;
/// Marks the in-flight name of a delivery being read: `.products.csv.ferry-reading-<time>`.
const IN_FLIGHT: &str = ".ferry-reading-";

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Options {
    password: Option<String>,
    private_key: Option<String>,
    key_path: Option<String>,
    passphrase: Option<String>,
    known_hosts_path: Option<String>,
    host_key_fingerprint: Option<String>,
    #[serde(default)]
    pickup: PickupOption,
    #[serde(default = "default_settle")]
    settle_seconds: u64,
    #[serde(default = "default_done_suffix")]
    done_suffix: String,
    archive: Option<String>,
    #[serde(default = "default_timeout")]
    timeout_seconds: u64,
}

fn default_settle() -> u64 {
    5
}
fn default_done_suffix() -> String {
    ".done".into()
}
fn default_timeout() -> u64 {
    30
}

#[derive(Deserialize, Default, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
enum PickupOption {
    #[default]
    Settle,
    DoneMarker,
    Rename,
}

/// When a file on the server is complete enough to read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Pickup {
    /// Its size and modification time did not change for this long.
    Settle(Duration),
    /// A marker file named the file's name plus this suffix exists (the other side writes it last).
    DoneMarker(String),
    /// The other side writes a temporary name and renames: a file under its real name is complete.
    Rename,
}

/// JSON Schema of one SFTP option, for the connectors' `describe`.
pub(crate) fn option_schema(name: &str) -> Value {
    let (kind, text) = match name {
        "password" => ("string", "sftp://: login password ({ secret = \"NAME\" })"),
        "private_key" => ("string", "sftp://: OpenSSH private key text ({ secret = \"NAME\" })"),
        "key_path" => ("string", "sftp://: private key file"),
        "passphrase" => ("string", "sftp://: passphrase of the private key ({ secret = \"NAME\" })"),
        "known_hosts_path" => ("string", "sftp://: known_hosts file the server's host key must be in (default ~/.ssh/known_hosts)"),
        "host_key_fingerprint" => ("string", "sftp://: the server's host key, SHA256:… as ssh-keygen -l prints it"),
        "pickup" => ("string", "sftp://: when a file is complete: settle (default), done_marker or rename"),
        "settle_seconds" => ("integer", "sftp://: pickup = settle: seconds a file's size and time must hold still (default 5)"),
        "done_suffix" => ("string", "sftp://: pickup = done_marker: the marker is the file name plus this (default .done)"),
        "archive" => ("string", "sftp://: move read files into this folder (then streams are read as deliveries)"),
        _ => ("integer", "sftp://: seconds before a connection or request is given up (default 30)"),
    };
    if name == "pickup" {
        return json!({"type": kind, "enum": ["settle", "done_marker", "rename"], "description": text});
    }
    json!({"type": kind, "description": text})
}

/// Splits a connection's options into the connector's own and the SFTP ones ([`OPTIONS`]).
pub(crate) fn split_options(options: &Value) -> (Value, Value) {
    let mut own = options.clone();
    let mut remote = serde_json::Map::new();
    if let Some(map) = own.as_object_mut() {
        for name in OPTIONS {
            if let Some(v) = map.remove(name) {
                remote.insert(name.to_owned(), v);
            }
        }
    }
    (own, Value::Object(remote))
}

/// What one read of a file found.
pub(crate) enum Fetched {
    /// A complete copy, and the checkpoint to emit after its records (archiving connections).
    File { local: tempfile::TempPath, checkpoint: Option<Value> },
    /// Nothing to read this time, with a warning for the run when a person should know why.
    Nothing(Option<String>),
}

/// A folder on an SFTP server, as one connection sees it.
pub(crate) struct RemoteFolder {
    client: SftpClient,
    pickup: Pickup,
    /// Archive folder, relative to the folder (or absolute).
    archive: Option<String>,
    /// Local copies of remote files: read copies (deleted after the read) and write mirrors.
    scratch: tempfile::TempDir,
}

impl RemoteFolder {
    /// Builds the client from the options (keys are loaded here: a bad key is a config error at once).
    pub(crate) fn build(path: &str, remote: &Value, ctx: &BuildContext) -> Result<RemoteFolder, ConnectorError> {
        let endpoint = format!("connection {}", ctx.connection);
        let bad = |option: &str, msg: String| ConnectorError::config(endpoint.clone(), format!("option {option}: {msg}"));
        let location = Location::parse(path).map_err(|m| bad("path", m))?;
        let o: Options = parse_options(remote, ctx)?;
        let passphrase = o.passphrase.map(Zeroizing::new);
        let key = match (&o.private_key, &o.key_path) {
            (Some(_), Some(_)) => return Err(bad("private_key", "give private_key or key_path, not both".into())),
            (Some(text), None) => Some(
                russh::keys::decode_secret_key(text, passphrase.as_deref().map(String::as_str))
                    .map_err(|e| bad("private_key", format!("not a usable OpenSSH private key: {e}")))?,
            ),
            (None, Some(p)) => {
                let p = ctx.resolve(p);
                Some(
                    russh::keys::load_secret_key(&p, passphrase.as_deref().map(String::as_str))
                        .map_err(|e| bad("key_path", format!("{}: {e}", p.display())))?,
                )
            }
            (None, None) => None,
        };
        if key.is_none() && o.password.is_none() {
            return Err(bad("path", "an sftp:// folder needs private_key, key_path or password (as { secret = \"NAME\" })".into()));
        }
        let known_hosts = match (&o.known_hosts_path, &o.host_key_fingerprint) {
            (Some(p), _) => Some(ctx.resolve(p)),
            (None, Some(_)) => None,
            (None, None) => {
                let home = std::env::var_os("HOME").filter(|h| !h.is_empty()).ok_or_else(|| {
                    bad("known_hosts_path", "HOME is not set: give known_hosts_path or host_key_fingerprint".into())
                })?;
                Some(PathBuf::from(home).join(".ssh/known_hosts"))
            }
        };
        let pickup = match o.pickup {
            PickupOption::Settle => Pickup::Settle(Duration::from_secs(o.settle_seconds)),
            PickupOption::DoneMarker => {
                if o.done_suffix.is_empty() || o.done_suffix.contains('/') {
                    return Err(bad("done_suffix", format!("{:?} must be a file name suffix such as \".done\"", o.done_suffix)));
                }
                Pickup::DoneMarker(o.done_suffix)
            }
            PickupOption::Rename => Pickup::Rename,
        };
        if let Some(a) = &o.archive
            && (a.trim().is_empty() || a.split('/').any(|part| part == ".."))
        {
            return Err(bad("archive", format!("{a:?} must name a folder inside the connection's folder")));
        }
        if o.timeout_seconds == 0 {
            return Err(bad("timeout_seconds", "must be at least 1".into()));
        }
        let credentials = Credentials { key: key.map(Arc::new), password: o.password.map(Zeroizing::new) };
        let host_keys = HostKeyPolicy { known_hosts, fingerprint: o.host_key_fingerprint };
        let client = SftpClient::new(location, credentials, host_keys, Duration::from_secs(o.timeout_seconds));
        let scratch = tempfile::Builder::new()
            .prefix("ferry-sftp-")
            .tempdir()
            .map_err(|e| ConnectorError::permanent(endpoint.clone(), format!("cannot create a local folder for copies: {e}")))?;
        Ok(RemoteFolder { client, pickup, archive: o.archive, scratch })
    }

    /// How a file of the folder is named in messages (`sftp://user@host:22/dir/products.csv`).
    pub(crate) fn url(&self, name: &str) -> String {
        let l = self.client.location();
        l.url_of(&l.path_of(name))
    }

    /// Archiving folders deliver changes (incremental); the others hold whole exports (snapshots).
    pub(crate) fn read_mode(&self) -> ReadMode {
        if self.archive.is_some() { ReadMode::Incremental } else { ReadMode::Snapshot }
    }

    /// A local path for the write mirror of `name`.
    pub(crate) fn mirror_path(&self, name: &str) -> PathBuf {
        self.scratch.path().join("mirror").join(name)
    }

    fn path(&self, name: &str) -> String {
        self.client.location().path_of(name)
    }

    /// Copies `name` for reading once it is complete (see [`Pickup`]). An archiving folder first settles
    /// the file taken by an earlier run (see [`RemoteFolder::fetch_delivery`]).
    pub(crate) async fn fetch(&self, name: &str, checkpoint: Option<&Value>) -> Result<Fetched, ConnectorError> {
        if self.archive.is_some() {
            return self.fetch_delivery(name, checkpoint).await;
        }
        let path = self.path(name);
        if self.client.stat(&path).await?.is_none() {
            // As for a local folder: a missing export is an error, not an empty snapshot (which would retire everything).
            return Err(ConnectorError::config(self.url(name), "file not found"));
        }
        let mut why_not = String::new();
        for _ in 0..ROUNDS {
            if let Some(reason) = self.not_ready(name, &path).await? {
                why_not = reason;
                if matches!(self.pickup, Pickup::DoneMarker(_)) {
                    break;
                }
                continue;
            }
            let local = self.local_copy(name)?;
            let (before, after) = self.client.download(&path, &local).await?;
            if before == after {
                return Ok(Fetched::File { local, checkpoint: None });
            }
            why_not = format!("{name} changed while it was copied ({} → {} bytes)", before.size, after.size);
        }
        Err(ConnectorError::transient(self.url(name), format!("{why_not}: not read now, so as never to read a half-written file")))
    }

    /// An archiving folder: each file is a delivery, read once.
    ///
    /// A complete file is first *taken*: renamed to a unique in-flight name beside it
    /// (`.products.csv.ferry-reading-<time>`), so a new delivery under the same name can never be mistaken
    /// for it. Its records are followed by a checkpoint naming the in-flight file. A later read that finds
    /// the in-flight file named by the committed checkpoint moves it to the archive folder; one that finds
    /// it without (the run that took it was killed before committing) reads it again.
    async fn fetch_delivery(&self, name: &str, checkpoint: Option<&Value>) -> Result<Fetched, ConnectorError> {
        let prefix = format!(".{name}{IN_FLIGHT}");
        let dir = self.client.location().dir.clone();
        let mut taken: Vec<String> = self.client.list(&dir).await?.into_iter().map(|(n, _)| n).filter(|n| n.starts_with(&prefix)).collect();
        taken.sort();
        for inflight in taken {
            let committed = checkpoint.and_then(|c| c.get("file")).and_then(Value::as_str) == Some(inflight.as_str());
            if !committed {
                tracing::info!(file = %self.url(&inflight), "a delivery taken by an earlier run that did not commit it: reading it again");
                return self.copy_delivery(&inflight).await;
            }
            let to = self.archive_delivery(name, &inflight).await?;
            tracing::info!(file = %self.url(name), archived = %to, "read and committed by the previous run: archived");
        }
        let path = self.path(name);
        if self.client.stat(&path).await?.is_none() {
            return Ok(Fetched::Nothing(None));
        }
        if let Some(why_not) = self.not_ready(name, &path).await? {
            let message = format!("{why_not}: not read now, so as never to read a half-written file; the next run looks again");
            return Ok(Fetched::Nothing(Some(format!("{}: {message}", self.url(name)))));
        }
        let inflight = format!("{prefix}{}", chrono::Utc::now().format("%Y%m%dT%H%M%S%.3fZ"));
        self.client.rename(&path, &self.path(&inflight)).await?;
        if let Pickup::DoneMarker(suffix) = &self.pickup {
            self.client.remove(&self.path(&format!("{name}{suffix}"))).await?;
        }
        self.copy_delivery(&inflight).await
    }

    async fn copy_delivery(&self, inflight: &str) -> Result<Fetched, ConnectorError> {
        let local = self.local_copy(inflight)?;
        self.client.download(&self.path(inflight), &local).await?;
        Ok(Fetched::File { local, checkpoint: Some(json!({ "file": inflight })) })
    }

    fn local_copy(&self, name: &str) -> Result<tempfile::TempPath, ConnectorError> {
        Ok(tempfile::Builder::new()
            .prefix("read-")
            .tempfile_in(self.scratch.path())
            .map_err(|e| ConnectorError::permanent(self.url(name), format!("cannot create a local copy: {e}")))?
            .into_temp_path())
    }

    /// `None` when the file may be read; otherwise why not.
    async fn not_ready(&self, name: &str, path: &str) -> Result<Option<String>, ConnectorError> {
        match &self.pickup {
            Pickup::Rename => Ok(None),
            Pickup::DoneMarker(suffix) => {
                let marker = format!("{name}{suffix}");
                Ok(match self.client.stat(&self.path(&marker)).await? {
                    Some(_) => None,
                    None => Some(format!("{name} has no done marker {marker} yet")),
                })
            }
            Pickup::Settle(settle) => {
                let first = self.client.stat(path).await?;
                tokio::time::sleep(*settle).await;
                let second = self.client.stat(path).await?;
                Ok(match (first, second) {
                    (Some(a), Some(b)) if a == b => None,
                    (Some(a), Some(b)) => Some(format!(
                        "{name} is still being written (size {} → {} bytes within {} s; settle_seconds)",
                        a.size,
                        b.size,
                        settle.as_secs()
                    )),
                    _ => Some(format!("{name} disappeared while Ferry waited for it to settle")),
                })
            }
        }
    }

    /// Moves a delivery read and committed into the archive folder, as `<stem>-<time taken><ext>`.
    /// Returns where it went.
    async fn archive_delivery(&self, name: &str, inflight: &str) -> Result<String, ConnectorError> {
        let archive = self.archive.as_deref().expect("archive_delivery is only called when archiving");
        let dir = self.path(archive.trim_end_matches('/'));
        self.client.create_dir_all(&dir).await?;
        let taken_at = inflight.rsplit(IN_FLIGHT).next().unwrap_or_default();
        let (stem, ext) = match name.rsplit_once('.') {
            Some((s, e)) if !s.is_empty() => (s, format!(".{e}")),
            _ => (name, String::new()),
        };
        let to = join(&dir, &format!("{stem}-{taken_at}{ext}"));
        self.client.rename(&self.path(inflight), &to).await?;
        Ok(self.client.location().url_of(&to))
    }

    /// Connects (host key, login), lists the folder and sizes the files a sync would read, and writes and
    /// removes a probe file where files would be written.
    pub(crate) async fn check(&self, reads: &[String], writes: bool) -> CheckReport {
        let mut details = Vec::new();
        let dir = self.client.location().dir.clone();
        let listing = match self.client.list(&dir).await {
            Ok(l) => l,
            Err(e) => return CheckReport { ok: false, details: vec![format!("{}: {}", e.endpoint, e.message)] },
        };
        details.push(format!("{} reachable (host key verified, logged in), {} file(s)", self.url(""), listing.len()));
        for name in reads {
            match listing.iter().find(|(n, _)| n == name) {
                Some((_, stamp)) => details.push(format!("{name} present ({} bytes)", stamp.size)),
                None => details.push(format!("{name} not present")),
            }
        }
        let mut ok = true;
        if writes {
            let probe_local = self.scratch.path().join(".ferry-check");
            let probe = format!(".ferry-check-{}", std::process::id());
            let written = match std::fs::write(&probe_local, b"") {
                Ok(()) => self.client.upload_replace(&probe_local, &self.path(&probe)).await,
                Err(e) => Err(ConnectorError::permanent(probe_local.display().to_string(), e.to_string())),
            };
            match written {
                Ok(_) => {
                    let _ = self.client.remove(&self.path(&probe)).await;
                    details.push("folder writable (temporary file written, renamed and removed)".into());
                }
                Err(e) => {
                    ok = false;
                    details.push(format!("folder not writable: {}", e.message));
                }
            }
        }
        CheckReport { ok, details }
    }
}

/// The local copy of one remote file that a connector writes to (see the module docs).
pub(crate) struct Mirror {
    folder: Arc<RemoteFolder>,
    name: String,
    pub(crate) local: PathBuf,
    /// The remote file's stamp when the local copy was last equal to it (`None`: no remote file).
    known: Option<Stamp>,
    synced: bool,
}

impl Mirror {
    pub(crate) fn new(folder: Arc<RemoteFolder>, name: &str) -> Mirror {
        let local = folder.mirror_path(name);
        Mirror { folder, name: name.to_owned(), local, known: None, synced: false }
    }

    fn path(&self) -> String {
        self.folder.path(&self.name)
    }

    /// Brings the local copy up to the server's file. `true` when the copy was replaced: open handles
    /// and key sets built from the old copy are stale.
    pub(crate) async fn pull(&mut self) -> Result<bool, ConnectorError> {
        let client = &self.folder.client;
        let path = self.path();
        let remote = client.stat(&path).await?;
        if self.synced && remote == self.known {
            return Ok(false);
        }
        let folder = self.local.parent().expect("mirrors live in a folder");
        let local_err = |e: std::io::Error| ConnectorError::permanent(self.local.display().to_string(), format!("local copy: {e}"));
        std::fs::create_dir_all(folder).map_err(local_err)?;
        self.known = match remote {
            None => {
                match std::fs::remove_file(&self.local) {
                    Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(local_err(e)),
                    _ => {}
                }
                None
            }
            Some(_) => {
                let fresh = self.local.with_extension("pulling");
                let (before, after) = client.download(&path, &fresh).await?;
                if before != after {
                    return Err(ConnectorError::transient(
                        self.folder.url(&self.name),
                        "the file is being changed on the server by someone else; trying again later",
                    ));
                }
                std::fs::rename(&fresh, &self.local).map_err(local_err)?;
                Some(after)
            }
        };
        self.synced = true;
        Ok(true)
    }

    /// Publishes the local copy (temporary name, fsync, rename over the target). Refuses when the server's
    /// file changed since [`Mirror::pull`]: writing over it would lose what someone else put there.
    pub(crate) async fn push(&mut self) -> Result<(), ConnectorError> {
        let client = &self.folder.client;
        let path = self.path();
        let remote = client.stat(&path).await?;
        if remote != self.known {
            self.synced = false;
            return Err(ConnectorError::transient(
                self.folder.url(&self.name),
                "the file changed on the server while Ferry was writing to it; the batch is written again after reading it anew",
            ));
        }
        match client.upload_replace(&self.local, &path).await {
            Ok(stamp) => {
                self.known = Some(stamp);
                Ok(())
            }
            Err(e) => {
                self.synced = false;
                Err(e)
            }
        }
    }

    /// After a failed write: the next [`Mirror::pull`] reads the server's file again.
    pub(crate) fn invalidate(&mut self) {
        self.synced = false;
    }

    /// Bytes in the local copy (0 when there is none): a change means something must be uploaded.
    pub(crate) fn local_len(&self) -> u64 {
        std::fs::metadata(&self.local).map(|m| m.len()).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx() -> BuildContext {
        BuildContext::new("erp", "/tmp")
    }

    #[test]
    fn sftp_options_are_split_from_the_connectors_own() {
        let (own, remote) = split_options(&json!({"path": "sftp://a@b/c", "delimiter": ";", "password": "x", "archive": "done"}));
        assert_eq!(own, json!({"path": "sftp://a@b/c", "delimiter": ";"}));
        assert_eq!(remote, json!({"password": "x", "archive": "done"}));
    }

    #[test]
    fn a_remote_folder_needs_credentials_and_refuses_an_archive_outside_it() {
        let err = RemoteFolder::build("sftp://erp@host/x", &json!({"host_key_fingerprint": "SHA256:x"}), &ctx()).err().unwrap();
        assert!(err.message.contains("private_key, key_path or password"), "{err}");
        let err = RemoteFolder::build("sftp://erp@host/x", &json!({"password": "pw", "host_key_fingerprint": "SHA256:x", "archive": "../up"}), &ctx())
            .err()
            .unwrap();
        assert!(err.message.contains("option archive"), "{err}");
        let err = RemoteFolder::build("sftp://erp@host/x", &json!({"password": "pw", "host_key_fingerprint": "SHA256:x", "pickup": "sometimes"}), &ctx())
            .err()
            .unwrap();
        assert!(err.message.contains("pickup"), "{err}");
        let ok = RemoteFolder::build("sftp://erp@host/x", &json!({"password": "pw", "host_key_fingerprint": "SHA256:x", "archive": "done"}), &ctx()).unwrap();
        assert_eq!(ok.read_mode(), ReadMode::Incremental);
        assert_eq!(ok.pickup, Pickup::Settle(Duration::from_secs(5)));
        assert_eq!(ok.url("products.csv"), "sftp://erp@host:22/x/products.csv");
    }
}
