//! `ferry secrets init|set|list|rm|rotate`: connection secrets sealed in the workspace's state store
//! (XChaCha20-Poly1305 under the master key; see `ferry_engine::secrets`). Values are read from stdin or
//! an environment variable, never from the command line (other users can read a process's arguments),
//! and no command prints one.

use anyhow::{Context, Result, bail};
use ferry_engine::Config;
use ferry_engine::secrets::{MASTER_KEY_ENV, MASTER_KEY_FILE_ENV, MasterKey, valid_secret_name};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use zeroize::Zeroizing;

#[derive(clap::Subcommand)]
pub enum SecretsAction {
    /// Create a master key file (mode 0600); point FERRY_MASTER_KEY_FILE at it.
    Init {
        /// Where to write it (default: $FERRY_MASTER_KEY_FILE, else ferry-master.key beside the config).
        #[arg(long)]
        key_file: Option<PathBuf>,
    },
    /// Store (or replace) a secret; the value is read from stdin (one line) or --from-env.
    Set {
        name: String,
        /// Read the value from this environment variable instead of stdin.
        #[arg(long)]
        from_env: Option<String>,
    },
    /// Names of the stored secrets (never their values).
    List,
    /// Delete a secret.
    Rm { name: String },
    /// Re-encrypt every secret under a new master key (created if the file does not exist); the current
    /// key comes from FERRY_MASTER_KEY_FILE / FERRY_MASTER_KEY. All or nothing.
    Rotate {
        #[arg(long)]
        new_key_file: PathBuf,
    },
}

fn master_key() -> Result<MasterKey> {
    MasterKey::from_env()?.with_context(|| {
        format!("no master key: set {MASTER_KEY_FILE_ENV} to a key file (create one with `ferry secrets init`) or {MASTER_KEY_ENV} to 64 hex characters")
    })
}

fn check_name(name: &str) -> Result<()> {
    if !valid_secret_name(name) {
        bail!("secret name {name:?}: 1 to 64 characters of letters, digits, '-', '_' and '.'");
    }
    Ok(())
}

pub async fn run(config_path: &Path, action: SecretsAction, json: bool) -> Result<ExitCode> {
    if let SecretsAction::Init { key_file } = &action {
        let path = key_file
            .clone()
            .or_else(|| std::env::var_os(MASTER_KEY_FILE_ENV).filter(|p| !p.is_empty()).map(PathBuf::from))
            .unwrap_or_else(|| config_path.parent().unwrap_or(Path::new(".")).join("ferry-master.key"));
        let key = MasterKey::create_file(&path)?;
        if json {
            out!("{}", serde_json::json!({"key_file": path, "key_id": key.id()}));
        } else {
            out!("wrote master key {} to {} (mode 0600)", key.id(), path.display());
            eprintln!("keep it out of backups of the state store; use it with: export {MASTER_KEY_FILE_ENV}={}", path.display());
        }
        return Ok(ExitCode::SUCCESS);
    }
    let config = Config::load(config_path)?;
    if config.server.as_ref().is_some_and(|s| s.contains_key("workspaces")) {
        // Secrets belong to one workspace's store; a server config has none of its own.
        bail!("{} serves several workspaces: name the one whose secret this is with --workspace", config_path.display());
    }
    let store = ferry_engine::store::open_configured(&config).await?;
    match action {
        SecretsAction::Init { .. } => unreachable!("handled above"),
        SecretsAction::Set { name, from_env } => {
            check_name(&name)?;
            let key = master_key()?;
            let value = match from_env {
                Some(var) => Zeroizing::new(std::env::var(&var).with_context(|| format!("environment variable {var} is not set"))?),
                None => {
                    let mut line = Zeroizing::new(String::new());
                    std::io::stdin().read_line(&mut line).context("reading the secret from stdin")?;
                    Zeroizing::new(line.trim_end_matches(['\n', '\r']).to_owned())
                }
            };
            if value.is_empty() {
                bail!("secret {name}: the value is empty (pipe it on stdin, or use --from-env VAR)");
            }
            store.put_secret(key.seal(&name, &value)).await?;
            if json {
                out!("{}", serde_json::json!({"stored": name, "key_id": key.id()}));
            } else {
                out!("stored secret {name} (refer to it as {{ secret = \"{name}\" }})");
            }
        }
        SecretsAction::List => {
            let list = store.list_secrets().await?;
            if json {
                out!("{}", serde_json::to_string_pretty(&list)?);
            } else {
                for s in list {
                    out!("{:<32} key {}  updated {}", s.name, s.key_id, s.updated_at);
                }
            }
        }
        SecretsAction::Rm { name } => {
            if !store.delete_secret(&name).await? {
                bail!("no secret named {name} (see `ferry secrets list`)");
            }
            if json {
                out!("{}", serde_json::json!({"deleted": name}));
            } else {
                out!("deleted secret {name}");
            }
        }
        SecretsAction::Rotate { new_key_file } => {
            let old = master_key()?;
            let new = if new_key_file.exists() { MasterKey::from_file(&new_key_file)? } else { MasterKey::create_file(&new_key_file)? };
            if new.id() == old.id() {
                bail!("{} holds the current master key: rotate to a new one", new_key_file.display());
            }
            // Every secret opens under the old key before anything is written: all or nothing.
            let mut resealed = Vec::new();
            for sealed in store.all_secrets().await? {
                let value = old.open(&sealed)?;
                resealed.push(new.seal(&sealed.name, &value));
            }
            let n = resealed.len();
            store.reseal_all(resealed).await?;
            if json {
                out!("{}", serde_json::json!({"rotated": n, "key_id": new.id(), "key_file": new_key_file}));
            } else {
                out!("re-encrypted {n} secret(s) under master key {}", new.id());
                eprintln!("now use it: export {MASTER_KEY_FILE_ENV}={} (the old key opens nothing any more)", new_key_file.display());
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
