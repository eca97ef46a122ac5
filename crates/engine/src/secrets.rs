//! Connection secrets: encrypted at rest in the workspace's state store, resolved into a config's
//! connection options before connectors are built, and resolved per workspace from the environment.
//!
//! - **At rest**: `ferry secrets set NAME` seals the value with XChaCha20-Poly1305 under the master key
//!   (`FERRY_MASTER_KEY`: 64 hex characters, or `FERRY_MASTER_KEY_FILE`: a file holding them, mode 0600),
//!   with the secret's name as associated data. The store holds nonce + ciphertext and the key's id (a
//!   hash), never the key. A config refers to a secret by name: `password = { secret = "tryton-admin" }`.
//! - **Per workspace**: each workspace has its own store, so its own secrets. Secrets read from the
//!   environment are named after the workspace too: `FERRY_<OPTION>_<WORKSPACE>_<CONNECTION>` (e.g.
//!   `FERRY_PASSWORD_ACME_ERP`, `FERRY_WEBHOOK_SECRET_ACME_SHOP`); a single config (no workspaces) uses
//!   `FERRY_<OPTION>_<CONNECTION>`, and its connectors' own variables (`password_env`) as before.
//! - **Plain text** in the config still works, with a warning naming the option.

use crate::config::{Config, is_secret_option};
use crate::store::StoreError;
use crate::store::secrets::{SealedSecret, SecretStore};
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use rand::RngCore;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use zeroize::Zeroizing;

pub const MASTER_KEY_ENV: &str = "FERRY_MASTER_KEY";
pub const MASTER_KEY_FILE_ENV: &str = "FERRY_MASTER_KEY_FILE";

#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("{0}")]
    Key(String),
    #[error("{0}")]
    Missing(String),
    #[error("secret {name}: {message}")]
    Decrypt { name: String, message: String },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The 256-bit key secrets are sealed under. Never printed; zeroed when dropped.
pub struct MasterKey(Zeroizing<[u8; 32]>);

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "MasterKey({})", self.id())
    }
}

impl MasterKey {
    pub fn generate() -> MasterKey {
        let mut k = Zeroizing::new([0u8; 32]);
        rand::rng().fill_bytes(k.as_mut());
        MasterKey(k)
    }

    /// 64 hex characters (surrounding whitespace ignored).
    pub fn from_hex(text: &str) -> Result<MasterKey, SecretError> {
        let bad = || SecretError::Key("a master key is 64 hex characters (256 bits); create one with `ferry secrets init`".into());
        let bytes = Zeroizing::new(hex::decode(text.trim()).map_err(|_| bad())?);
        let mut k = Zeroizing::new([0u8; 32]);
        if bytes.len() != 32 {
            return Err(bad());
        }
        k.copy_from_slice(&bytes);
        Ok(MasterKey(k))
    }

    pub fn to_hex(&self) -> Zeroizing<String> {
        Zeroizing::new(hex::encode(self.0.as_ref()))
    }

    /// Reads a key file, refusing one that others may read (it unlocks every secret).
    pub fn from_file(path: &Path) -> Result<MasterKey, SecretError> {
        let text = Zeroizing::new(
            std::fs::read_to_string(path).map_err(|e| SecretError::Key(format!("master key file {}: {e}", path.display())))?,
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(path).map(|m| m.permissions().mode()).unwrap_or(0);
            if mode & 0o077 != 0 {
                return Err(SecretError::Key(format!(
                    "master key file {} is readable by others (mode {:o}): chmod 600 it",
                    path.display(),
                    mode & 0o777
                )));
            }
        }
        Self::from_hex(&text).map_err(|e| SecretError::Key(format!("master key file {}: {e}", path.display())))
    }

    /// `FERRY_MASTER_KEY` (hex) or `FERRY_MASTER_KEY_FILE`; `None` when neither is set.
    pub fn from_env() -> Result<Option<MasterKey>, SecretError> {
        if let Ok(hex) = std::env::var(MASTER_KEY_ENV).map(Zeroizing::new)
            && !hex.trim().is_empty()
        {
            return Self::from_hex(&hex).map(Some).map_err(|e| SecretError::Key(format!("{MASTER_KEY_ENV}: {e}")));
        }
        match std::env::var_os(MASTER_KEY_FILE_ENV) {
            Some(p) if !p.is_empty() => Self::from_file(&PathBuf::from(p)).map(Some),
            _ => Ok(None),
        }
    }

    /// Writes a new key file with mode 0600; refuses to overwrite one.
    pub fn create_file(path: &Path) -> Result<MasterKey, SecretError> {
        let key = MasterKey::generate();
        let io = |e: std::io::Error| SecretError::Key(format!("master key file {}: {e}", path.display()));
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let mut file = options.open(path).map_err(io)?;
        use std::io::Write;
        file.write_all(format!("{}\n", key.to_hex().as_str()).as_bytes()).map_err(io)?;
        file.sync_all().map_err(io)?;
        Ok(key)
    }

    /// Names the key (in the store and messages) without revealing it.
    pub fn id(&self) -> String {
        let mut h = Sha256::new();
        h.update(b"ferry master key id v1\0");
        h.update(self.0.as_ref());
        hex::encode(&h.finalize()[..8])
    }

    pub fn seal(&self, name: &str, value: &str) -> SealedSecret {
        let cipher = XChaCha20Poly1305::new(self.0.as_ref().into());
        let mut nonce = [0u8; 24];
        rand::rng().fill_bytes(&mut nonce);
        let ciphertext = cipher
            .encrypt(XNonce::from_slice(&nonce), Payload { msg: value.as_bytes(), aad: name.as_bytes() })
            .expect("XChaCha20-Poly1305 encrypts any message shorter than 256 GiB");
        SealedSecret { name: name.to_owned(), key_id: self.id(), nonce: nonce.to_vec(), ciphertext }
    }

    pub fn open(&self, sealed: &SealedSecret) -> Result<Zeroizing<String>, SecretError> {
        let fail = |message: String| SecretError::Decrypt { name: sealed.name.clone(), message };
        if sealed.key_id != self.id() {
            return Err(fail(format!(
                "sealed under master key {}, not the one given ({}): set the key it was stored with, or `ferry secrets rotate` from it",
                sealed.key_id,
                self.id()
            )));
        }
        if sealed.nonce.len() != 24 {
            return Err(fail("stored nonce is not 24 bytes (corrupt row)".into()));
        }
        let cipher = XChaCha20Poly1305::new(self.0.as_ref().into());
        let plain = Zeroizing::new(
            cipher
                .decrypt(XNonce::from_slice(&sealed.nonce), Payload { msg: &sealed.ciphertext, aad: sealed.name.as_bytes() })
                .map_err(|_| fail("does not decrypt under this master key (corrupt or moved to another name)".into()))?,
        );
        String::from_utf8(plain.to_vec()).map(Zeroizing::new).map_err(|_| fail("not UTF-8 text".into()))
    }
}

/// Every URL's credentials in `text` replaced: `http://admin:hunter2@host/x` → `http://***@host/x`.
/// Applied to every connector error (endpoint and message), so a password written into a URL never
/// reaches a log line, an error message, a run's stored error, `--json` output or an API answer.
pub fn redact_url_credentials(text: &str) -> String {
    if !text.contains("://") {
        return text.to_owned();
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("://") {
        let (head, tail) = rest.split_at(i + 3);
        out.push_str(head);
        let end = tail.find(|c: char| matches!(c, '/' | '?' | '#' | '"' | '\'' | '<' | '>' | '`') || c.is_whitespace()).unwrap_or(tail.len());
        match tail[..end].rfind('@') {
            Some(at) => {
                out.push_str("***");
                out.push_str(&tail[at..end]);
            }
            None => out.push_str(&tail[..end]),
        }
        rest = &tail[end..];
    }
    out.push_str(rest);
    out
}

/// Secret names: what a config refers to and `ferry secrets` manages.
pub fn valid_secret_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= 64 && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// `{ secret = "NAME" }`: a reference to a stored secret.
fn secret_ref(v: &toml::Value) -> Option<&str> {
    let t = v.as_table()?;
    if t.len() != 1 {
        return None;
    }
    t.get("secret")?.as_str()
}

/// The environment variable a workspace's connection reads `option` from:
/// `FERRY_<OPTION>_<WORKSPACE>_<CONNECTION>`, or without a workspace `FERRY_<OPTION>_<CONNECTION>`
/// (upper case, other characters `_`).
pub fn secret_env_name(option: &str, workspace: Option<&str>, connection: &str) -> String {
    let up = |s: &str| -> String { s.chars().map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_uppercase() } else { '_' }).collect() };
    match workspace {
        Some(w) => format!("FERRY_{}_{}_{}", up(option), up(w), up(connection)),
        None => format!("FERRY_{}_{}", up(option), up(connection)),
    }
}

/// What resolving a config's secrets found.
#[derive(Debug, Default)]
pub struct Resolved {
    /// Secret values now in the options (to scrub from messages that might echo them).
    pub values: Vec<Zeroizing<String>>,
    /// People should hear about these (plain-text secrets in the config).
    pub warnings: Vec<String>,
}

/// Where a config is being resolved: the workspace it belongs to (`None` for a single config) and,
/// per connection type, which secret options its connector can read from an environment variable
/// (`("password", "password_env")`).
pub struct SecretScope<'a> {
    pub workspace: Option<&'a str>,
    pub env_options: &'a dyn Fn(&str) -> &'static [(&'static str, &'static str)],
}

/// Replaces every `{ secret = "NAME" }` in connection options with the stored value; fills secret
/// options the config leaves out from the workspace's environment variables; warns about plain-text
/// secrets. In a workspace, a connector's process-wide default variable (`TRYTON_PASSWORD`) is never
/// read: the option is pointed at the workspace's own variable instead.
pub async fn resolve(config: &mut Config, store: &dyn SecretStore, key: Option<&MasterKey>, scope: &SecretScope<'_>) -> Result<Resolved, SecretError> {
    let mut out = Resolved::default();
    for (conn_name, conn) in config.connections.iter_mut() {
        for (k, v) in &conn.options {
            if is_secret_option(k) && v.is_str() {
                out.warnings.push(format!(
                    "connections.{conn_name}.{k} is a plain-text secret in the config: store it encrypted with `ferry secrets set NAME` and write `{k} = {{ secret = \"NAME\" }}`"
                ));
            }
        }
        let mut refs = Vec::new();
        collect_refs(&conn.options, String::new(), &mut refs);
        for (path, name) in refs {
            let where_ = format!("connections.{conn_name}.{path}");
            let key = key.ok_or_else(|| {
                SecretError::Key(format!(
                    "{where_} refers to secret {name:?}: set {MASTER_KEY_FILE_ENV} (or {MASTER_KEY_ENV}) to the master key it was stored with"
                ))
            })?;
            let sealed = store.get_secret(&name).await?.ok_or_else(|| {
                SecretError::Missing(format!("{where_} refers to secret {name:?}, which this workspace's store does not hold (`ferry secrets set {name}`)"))
            })?;
            let value = key.open(&sealed)?;
            set_path(&mut conn.options, &path, toml::Value::String(value.to_string()));
            out.values.push(value);
        }
        for (option, env_option) in (scope.env_options)(&conn.kind) {
            if conn.options.contains_key(*option) {
                continue;
            }
            let var = secret_env_name(option, scope.workspace, conn_name);
            if let Ok(value) = std::env::var(&var)
                && !value.is_empty()
            {
                out.values.push(Zeroizing::new(value.clone()));
                conn.options.insert((*option).to_owned(), toml::Value::String(value));
            } else if scope.workspace.is_some() && !conn.options.contains_key(*env_option) {
                // The connector would fall back to a process-wide variable every workspace shares.
                conn.options.insert((*env_option).to_owned(), toml::Value::String(var));
            }
        }
    }
    out.values.retain(|v| v.len() >= 4);
    Ok(out)
}

fn collect_refs(table: &toml::Table, prefix: String, out: &mut Vec<(String, String)>) {
    for (k, v) in table {
        let path = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
        if let Some(name) = secret_ref(v) {
            out.push((path, name.to_owned()));
        } else if let Some(t) = v.as_table() {
            collect_refs(t, path, out);
        }
    }
}

fn set_path(table: &mut toml::Table, path: &str, value: toml::Value) {
    match path.split_once('.') {
        None => {
            table.insert(path.to_owned(), value);
        }
        Some((head, rest)) => {
            if let Some(toml::Value::Table(t)) = table.get_mut(head) {
                set_path(t, rest, value);
            }
        }
    }
}

/// Env variables holding secrets that a config's connections name explicitly (`*_env` options), for
/// the server's check that no two workspaces share one.
pub fn named_env_vars(config: &Config) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (conn, c) in &config.connections {
        for (k, v) in &c.options {
            if k.ends_with("_env")
                && let Some(var) = v.as_str()
            {
                out.push((format!("connections.{conn}.{k}"), var.to_owned()));
            }
        }
    }
    out
}

/// Confines `path` options of a workspace's connections to its folder (`config.base_dir`): a tenant's
/// config must not read or write another tenant's (or the server's) files. Symlinks in the existing part
/// of a path are followed before comparing.
pub fn confine_paths(config: &Config) -> Result<(), String> {
    let root = normalize(&std::fs::canonicalize(&config.base_dir).unwrap_or_else(|_| config.base_dir.clone()));
    for (name, conn) in &config.connections {
        for (k, v) in &conn.options {
            if !(k == "path" || k.ends_with("_path") || k == "folder" || k == "dir") {
                continue;
            }
            let Some(p) = v.as_str() else { continue };
            // A folder on another server (`sftp://user@host/dir`) is no file of this machine.
            if p.trim_start().to_ascii_lowercase().starts_with("sftp://") {
                continue;
            }
            let joined = if Path::new(p).is_absolute() { PathBuf::from(p) } else { config.base_dir.join(p) };
            let real = normalize(&canonical_prefix(&normalize(&joined)));
            if !real.starts_with(&root) {
                return Err(format!(
                    "connections.{name}.{k} = {p:?} is outside the workspace's folder {}; keep a workspace's files in its folder, or set [server] allow_paths_outside_workspace = true",
                    root.display()
                ));
            }
        }
    }
    Ok(())
}

/// Removes `.` and resolves `..` lexically.
fn normalize(p: &Path) -> PathBuf {
    use std::path::Component;
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other.as_os_str()),
        }
    }
    out
}

/// The path with its longest existing ancestor canonicalized (symlinks resolved); the rest appended.
fn canonical_prefix(p: &Path) -> PathBuf {
    let mut existing = p.to_path_buf();
    let mut rest = Vec::new();
    loop {
        if let Ok(c) = std::fs::canonicalize(&existing) {
            let mut out = c;
            for part in rest.iter().rev() {
                out.push(part);
            }
            return out;
        }
        match (existing.file_name().map(|f| f.to_owned()), existing.parent().map(Path::to_path_buf)) {
            (Some(f), Some(parent)) => {
                rest.push(f);
                existing = parent;
            }
            _ => return p.to_path_buf(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::SqliteStore;

    #[test]
    fn url_credentials_are_redacted_wherever_they_appear() {
        assert_eq!(
            redact_url_credentials("tryton http://admin:hunter2@127.0.0.1:9/x/rpc/: refused (see https://u:p@h.example?q) and ftp://plain/x"),
            "tryton http://***@127.0.0.1:9/x/rpc/: refused (see https://***@h.example?q) and ftp://plain/x"
        );
        assert_eq!(redact_url_credentials("\"http://a:b@c\""), "\"http://***@c\"");
        assert_eq!(redact_url_credentials("no url: a@b"), "no url: a@b");
        assert_eq!(redact_url_credentials("x://"), "x://");
        let e = crate::ConnectorError::transient("tryton http://admin:hunter2@h/", "GET http://admin:hunter2@h/rpc failed");
        assert!(!format!("{e} {e:?}").contains("hunter2"), "{e}");
    }

    proptest::proptest! {
        /// Whatever surrounds it, a URL's password never survives redaction, and text without a URL
        /// is left alone.
        #[test]
        fn no_url_password_survives_redaction(
            before in "[ -~]{0,20}",
            user in "[a-z]{1,8}",
            password in "[A-Za-z0-9!$%&*+,;=~-]{6,16}",
            host in "[a-z]{1,10}(\\.[a-z]{2,5})?(:[0-9]{2,5})?",
            after in "(/[ -~]{0,20})?",
        ) {
            let text = format!("{before} https://{user}:{password}@{host}{after}");
            let redacted = redact_url_credentials(&text);
            proptest::prop_assert!(!redacted.contains(&format!(":{password}@")), "{redacted}");
            proptest::prop_assert!(redacted.contains(&format!("https://***@{host}")), "{redacted}");
            let plain = before.replace("://", "");
            proptest::prop_assert_eq!(redact_url_credentials(&plain), plain.clone());
        }
    }

    #[test]
    fn sealed_secrets_open_only_under_their_key_and_name() {
        let key = MasterKey::generate();
        let sealed = key.seal("tryton-admin", "hunter2");
        assert!(!sealed.ciphertext.windows(7).any(|w| w == b"hunter2"), "ciphertext holds the plain text");
        assert_eq!(key.open(&sealed).unwrap().as_str(), "hunter2");
        // Same value sealed twice: different nonces, different ciphertexts.
        assert_ne!(key.seal("tryton-admin", "hunter2").ciphertext, sealed.ciphertext);
        let other = MasterKey::generate();
        let e = other.open(&sealed).unwrap_err().to_string();
        assert!(e.contains("sealed under master key") && !e.contains("hunter2"), "{e}");
        // Moved to another name (associated data): refused.
        let moved = SealedSecret { name: "shop".into(), ..sealed.clone() };
        assert!(key.open(&moved).is_err());
        let mut tampered = sealed.clone();
        tampered.ciphertext[0] ^= 1;
        assert!(key.open(&tampered).is_err());
        assert!(!format!("{key:?}").contains(key.to_hex().as_str()));
    }

    #[test]
    fn key_files_are_created_private_and_refused_when_readable_by_others() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("master.key");
        let key = MasterKey::create_file(&path).unwrap();
        assert_eq!(MasterKey::from_file(&path).unwrap().id(), key.id());
        assert!(MasterKey::create_file(&path).is_err(), "never overwrites a key");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
            assert!(MasterKey::from_file(&path).unwrap_err().to_string().contains("chmod 600"));
        }
        assert!(MasterKey::from_hex("abcd").is_err());
    }

    fn config(text: &str, dir: &Path) -> Config {
        Config::parse(text, dir.to_path_buf()).unwrap()
    }

    fn no_env(_: &str) -> &'static [(&'static str, &'static str)] {
        &[]
    }
    fn password_env(kind: &str) -> &'static [(&'static str, &'static str)] {
        if kind == "tryton" { &[("password", "password_env")] } else { &[] }
    }

    #[tokio::test]
    async fn references_resolve_from_the_store_and_plain_text_warns() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("s.db")).await.unwrap();
        let key = MasterKey::generate();
        store.put_secret(key.seal("erp-pw", "s3cret-pw")).await.unwrap();
        let text = r#"
            [connections.erp]
            type = "tryton"
            url = "http://x"
            password = { secret = "erp-pw" }
            [connections.shop]
            type = "tryton"
            url = "http://y"
            password = "plain-pw"
        "#;
        let mut c = config(text, dir.path());
        let scope = SecretScope { workspace: None, env_options: &no_env };
        let r = resolve(&mut c, &store, Some(&key), &scope).await.unwrap();
        assert_eq!(c.connections["erp"].options["password"].as_str(), Some("s3cret-pw"));
        assert_eq!(r.values.iter().map(|v| v.as_str()).collect::<Vec<_>>(), ["s3cret-pw"]);
        assert_eq!(r.warnings.len(), 1, "{:?}", r.warnings);
        assert!(r.warnings[0].contains("connections.shop.password") && !r.warnings[0].contains("plain-pw"));

        // No key, unknown secret: errors name the option and the secret, never a value.
        let e = resolve(&mut config(text, dir.path()), &store, None, &scope).await.unwrap_err().to_string();
        assert!(e.contains("connections.erp.password") && e.contains("FERRY_MASTER_KEY_FILE"), "{e}");
        let e = resolve(&mut config(&text.replace("erp-pw", "nope"), dir.path()), &store, Some(&key), &scope).await.unwrap_err().to_string();
        assert!(e.contains("\"nope\"") && e.contains("ferry secrets set nope"), "{e}");
    }

    #[tokio::test]
    async fn env_secrets_are_per_workspace_and_never_the_shared_default() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("s.db")).await.unwrap();
        let text = "[connections.erp]\ntype = \"tryton\"\nurl = \"http://x\"\n[connections.erp2]\ntype = \"tryton\"\nurl = \"http://x\"\npassword_env = \"MY_OWN\"\n";
        // SAFETY: this test alone uses this variable name.
        unsafe { std::env::set_var("FERRY_PASSWORD_ACMETEST_ERP", "acme-pw") };
        let mut c = config(text, dir.path());
        let scope = SecretScope { workspace: Some("acmetest"), env_options: &password_env };
        resolve(&mut c, &store, None, &scope).await.unwrap();
        assert_eq!(c.connections["erp"].options["password"].as_str(), Some("acme-pw"));
        assert_eq!(c.connections["erp2"].options["password_env"].as_str(), Some("MY_OWN"), "an explicit variable is kept");
        let mut c = config(text, dir.path());
        let scope = SecretScope { workspace: Some("betatest"), env_options: &password_env };
        resolve(&mut c, &store, None, &scope).await.unwrap();
        assert!(c.connections["erp"].options.get("password").is_none(), "acme's variable is not beta's");
        assert_eq!(c.connections["erp"].options["password_env"].as_str(), Some("FERRY_PASSWORD_BETATEST_ERP"));
        assert_eq!(secret_env_name("webhook_secret", None, "shop-eu"), "FERRY_WEBHOOK_SECRET_SHOP_EU");
    }

    #[test]
    fn paths_stay_inside_the_workspace_folder() {
        let dir = tempfile::tempdir().unwrap();
        let ws = dir.path().join("acme");
        std::fs::create_dir_all(ws.join("erp")).unwrap();
        std::fs::create_dir_all(dir.path().join("beta")).unwrap();
        let c = |path: &str| config(&format!("[connections.erp]\ntype = \"csv\"\npath = {path:?}\n"), &ws);
        assert!(confine_paths(&c("erp")).is_ok());
        assert!(confine_paths(&c("new/not-yet")).is_ok());
        for outside in ["../beta", "erp/../../beta", "/etc"] {
            let e = confine_paths(&c(outside)).unwrap_err();
            assert!(e.contains("connections.erp.path") && e.contains("allow_paths_outside_workspace"), "{e}");
        }
        // A remote folder is not confined (its key and known_hosts files, `*_path`, are).
        assert!(confine_paths(&c("sftp://erp@files.example.com/../../srv/outbox")).is_ok());
        #[cfg(unix)]
        {
            std::os::unix::fs::symlink(dir.path().join("beta"), ws.join("link")).unwrap();
            assert!(confine_paths(&c("link/x")).is_err(), "a symlink out of the folder is outside");
        }
    }
}
