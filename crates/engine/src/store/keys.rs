//! API keys of `ferry serve`: scoped, stored as a SHA-256 of the token, the token shown once.
//!
//! A token is `fy_<id>_<secret>`: `id` (8 random bytes, hex) names the key in listings and logs, `secret`
//! is 32 random bytes (hex). Only `sha256(token)` is stored. A fast hash is right here, unlike for
//! passwords: 256 random bits cannot be guessed from a dictionary, so slowing each guess buys nothing.

use super::StoreResult;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    /// Read flows, runs, failures, cross-reference, records.
    Read,
    /// Push records, trigger flows, retry/drop failures.
    Write,
    /// Manage keys, check connections.
    Admin,
}

impl Scope {
    pub fn as_str(&self) -> &'static str {
        match self {
            Scope::Read => "read",
            Scope::Write => "write",
            Scope::Admin => "admin",
        }
    }
    pub fn parse(s: &str) -> Result<Scope, String> {
        match s.trim() {
            "read" => Ok(Scope::Read),
            "write" => Ok(Scope::Write),
            "admin" => Ok(Scope::Admin),
            other => Err(format!("unknown scope {other:?}; scopes are read, write, admin")),
        }
    }
    /// `read,write` → scopes.
    pub fn parse_list(s: &str) -> Result<Vec<Scope>, String> {
        let mut scopes: Vec<Scope> = s.split(',').filter(|p| !p.trim().is_empty()).map(Scope::parse).collect::<Result<_, _>>()?;
        scopes.sort();
        scopes.dedup();
        if scopes.is_empty() {
            return Err("name at least one scope: read, write, admin".into());
        }
        Ok(scopes)
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct ApiKey {
    pub id: String,
    pub name: String,
    pub scopes: Vec<Scope>,
    pub created_at: DateTime<Utc>,
    pub last_used_at: Option<DateTime<Utc>>,
    pub revoked: bool,
}

impl ApiKey {
    /// Admin implies write and read; write implies read.
    pub fn allows(&self, needed: Scope) -> bool {
        !self.revoked && self.scopes.iter().any(|s| *s >= needed)
    }
}

/// A new token and the hash to store.
pub fn new_token() -> (String, String, String) {
    let mut id = [0u8; 8];
    let mut secret = [0u8; 32];
    rand::rng().fill_bytes(&mut id);
    rand::rng().fill_bytes(&mut secret);
    let id = hex::encode(id);
    let token = format!("fy_{id}_{}", hex::encode(secret));
    let hash = token_hash(&token);
    (id, token, hash)
}

pub fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

#[async_trait]
pub trait KeyStore: Send + Sync {
    /// Creates a key; returns it and its token (the only time the token exists outside the caller).
    async fn create_key(&self, name: &str, scopes: &[Scope]) -> StoreResult<(ApiKey, String)>;
    /// The key a token belongs to, if any and not revoked; records its use.
    async fn verify_key(&self, token: &str) -> StoreResult<Option<ApiKey>>;
    async fn list_keys(&self) -> StoreResult<Vec<ApiKey>>;
    async fn revoke_key(&self, id: &str) -> StoreResult<bool>;
}
