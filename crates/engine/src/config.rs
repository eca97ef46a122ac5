//! The TOML configuration: state store, connections, flows and their mappings.
//! Everything a business changes (connections, mappings, custom fields, schedules) lives here, so nothing
//! is recompiled per business.

use crate::mapping::MappingConfig;
use ferry_model::Stream;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub state: StateConfig,
    #[serde(default)]
    pub connections: BTreeMap<String, ConnectionConfig>,
    #[serde(default)]
    pub flows: BTreeMap<String, FlowConfig>,
    /// Settings of `ferry serve` (listen address, workspaces…), read by the server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server: Option<toml::Table>,
    /// The folder of the config file: relative paths resolve against it.
    #[serde(skip)]
    pub base_dir: PathBuf,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct StateConfig {
    /// SQLite file of the state store (default `ferry-state.db` beside the config file).
    pub path: Option<String>,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct ConnectionConfig {
    /// Connector type: `csv`, `jsonl`, `tryton`, `vendure`…
    #[serde(rename = "type")]
    pub kind: String,
    /// The connector's own options.
    #[serde(flatten)]
    pub options: toml::Table,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FlowConfig {
    /// Connection read from.
    pub source: String,
    /// Connection written to.
    pub target: String,
    /// The canonical stream the flow moves (products, prices, stock, customers, orders, shipments).
    pub stream: Stream,
    pub description: Option<String>,
    /// Records per batch (cross-reference look-up, write call, commit). Default: the target's batch size.
    pub batch_size: Option<usize>,
    /// What to do in the target with records that disappeared from a complete read of the source.
    #[serde(default)]
    pub on_missing: OnMissing,
    /// Refuse to retire more than this share of the flow's records in one run (a truncated export
    /// should not empty a shop). Default 0.5.
    pub max_retire_share: Option<f64>,
    #[serde(default)]
    pub mapping: MappingConfig,
    /// Cron expression for `ferry serve` (in `schedule_timezone`).
    pub schedule: Option<String>,
    pub schedule_timezone: Option<String>,
    #[serde(default = "yes")]
    pub enabled: bool,
}

fn yes() -> bool {
    true
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OnMissing {
    /// Leave the target alone (report how many are missing).
    #[default]
    Ignore,
    /// Disable / mark discontinued in the target.
    Deactivate,
    /// Delete from the target.
    Delete,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("config {path}: {message}")]
    Invalid { path: PathBuf, message: String },
}

impl Config {
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io { path: path.to_owned(), source })?;
        let base_dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
        Config::parse(&text, base_dir).map_err(|message| ConfigError::Invalid { path: path.to_owned(), message })
    }

    pub fn parse(text: &str, base_dir: PathBuf) -> Result<Config, String> {
        let mut config: Config = toml::from_str(text).map_err(|e| e.to_string())?;
        config.base_dir = if base_dir.as_os_str().is_empty() { PathBuf::from(".") } else { base_dir };
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), String> {
        for (name, flow) in &self.flows {
            for (role, conn) in [("source", &flow.source), ("target", &flow.target)] {
                if !self.connections.contains_key(conn) {
                    return Err(format!(
                        "flows.{name}.{role}: no connection named {conn:?} (connections: {})",
                        self.connections.keys().cloned().collect::<Vec<_>>().join(", ")
                    ));
                }
            }
            if flow.batch_size == Some(0) {
                return Err(format!("flows.{name}.batch_size: must be at least 1"));
            }
            if let Some(share) = flow.max_retire_share
                && !(0.0..=1.0).contains(&share)
            {
                return Err(format!("flows.{name}.max_retire_share: must be between 0 and 1"));
            }
        }
        Ok(())
    }

    pub fn state_path(&self) -> PathBuf {
        let p = PathBuf::from(self.state.path.as_deref().unwrap_or("ferry-state.db"));
        if p.is_absolute() { p } else { self.base_dir.join(p) }
    }

    pub fn flow(&self, name: &str) -> Result<&FlowConfig, String> {
        self.flows.get(name).ok_or_else(|| {
            format!("no flow named {name:?}; flows: {}", self.flows.keys().cloned().collect::<Vec<_>>().join(", "))
        })
    }
}

/// TOML table → JSON, the form connectors read their options in.
pub fn toml_to_json(table: &toml::Table) -> serde_json::Value {
    serde_json::to_value(table).expect("TOML values are JSON-representable")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_flow_with_mapping() {
        let c = Config::parse(
            r#"
            [connections.erp]
            type = "csv"
            path = "erp"
            delimiter = ";"
            [connections.shop]
            type = "jsonl"
            path = "shop"
            [flows.products]
            source = "erp"
            target = "shop"
            stream = "products"
            on_missing = "deactivate"
            [flows.products.mapping]
            rename = { "ItemCode" = "sku" }
            "#,
            PathBuf::from("/etc/ferry"),
        )
        .unwrap();
        let f = c.flow("products").unwrap();
        assert_eq!(f.stream, Stream::Products);
        assert_eq!(f.on_missing, OnMissing::Deactivate);
        assert_eq!(c.connections["erp"].kind, "csv");
        assert_eq!(toml_to_json(&c.connections["erp"].options)["delimiter"], ";");
        assert_eq!(c.state_path(), PathBuf::from("/etc/ferry/ferry-state.db"));
    }

    #[test]
    fn names_a_missing_connection() {
        let err = Config::parse(
            "[connections.a]\ntype='jsonl'\n[flows.x]\nsource='a'\ntarget='b'\nstream='products'\n",
            PathBuf::new(),
        )
        .unwrap_err();
        assert!(err.contains("flows.x.target") && err.contains("\"b\""), "{err}");
    }

    #[test]
    fn names_an_unknown_option_with_its_line() {
        let err = Config::parse("[flows.x]\nsource='a'\ntarget='b'\nstream='products'\nbatchsize=3\n", PathBuf::new()).unwrap_err();
        assert!(err.contains("batchsize") && err.contains("line 5"), "{err}");
    }
}
