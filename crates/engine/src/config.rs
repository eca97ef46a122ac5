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
    /// Settings every connection and flow inherits unless it sets its own.
    #[serde(default)]
    pub defaults: Defaults,
    #[serde(default)]
    pub state: StateConfig,
    #[serde(default)]
    pub connections: BTreeMap<String, ConnectionConfig>,
    #[serde(default)]
    pub flows: BTreeMap<String, FlowConfig>,
    /// What `ferry prune` (and `ferry serve`, once per interval) removes: see [`crate::retention`].
    #[serde(default)]
    pub retention: crate::retention::RetentionConfig,
    /// `[alerts]`: rules `ferry serve` evaluates, and the channels it tells (see [`crate::alerts`]).
    #[serde(default)]
    pub alerts: crate::alerts::AlertsConfig,
    /// Settings of `ferry serve` (listen address, workspaces…), read by the server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server: Option<toml::Table>,
    /// The folder of the config file: relative paths resolve against it.
    #[serde(skip)]
    pub base_dir: PathBuf,
}

/// `[defaults]`: what every connection and flow of this config (one business, one workspace) shares.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Defaults {
    /// The business's time zone (IANA, e.g. `Australia/Sydney`): the day a sale belongs to, the day price
    /// validity is judged on, and the wall clock of flow schedules (`schedule_timezone` defaults to it).
    /// Default UTC.
    pub timezone: Option<String>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct StateConfig {
    /// SQLite file of the state store (default `ferry-state.db` beside the config file).
    pub path: Option<String>,
}

#[derive(Clone, Deserialize, Serialize)]
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
    /// A key read twice in one run: warn (the later row wins) or fail (the later row is parked).
    #[serde(default)]
    pub on_duplicate: crate::duplicates::OnDuplicate,
    /// Cron expression for `ferry serve` (in `schedule_timezone`).
    pub schedule: Option<String>,
    pub schedule_timezone: Option<String>,
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Order streams: which shop statuses are created in the target (`[flows.NAME.orders]`).
    #[serde(default)]
    pub orders: crate::create_once::OrderPolicy,
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
        // a flow's schedule runs on the business's clock unless it names another
        if let Some(tz) = &config.defaults.timezone {
            for flow in config.flows.values_mut() {
                flow.schedule_timezone.get_or_insert_with(|| tz.clone());
            }
        }
        Ok(config)
    }

    fn validate(&self) -> Result<(), String> {
        if let Some(tz) = &self.defaults.timezone
            && tz.parse::<chrono_tz::Tz>().is_err()
        {
            return Err(format!("defaults.timezone: {tz:?} is not an IANA time zone (e.g. Australia/Sydney, Europe/Berlin, UTC)"));
        }
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
            // Every command refuses what `serve` would refuse, not only `serve` (a schedule that never
            // fires, or a zone that does not exist, found out days later).
            if flow.schedule.is_some() || flow.schedule_timezone.is_some() {
                let expr = flow.schedule.as_deref().unwrap_or("0 0 * * *");
                crate::schedule::CronSchedule::parse(expr, flow.schedule_timezone.as_deref()).map_err(|e| format!("flows.{name}.{e}"))?;
            }
        }
        self.alerts.rules(self)?;
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

/// Debug never shows secret option values (a config printed into a log must not leak a password).
impl std::fmt::Debug for ConnectionConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectionConfig").field("kind", &self.kind).field("options", &redacted_options(&self.options)).finish()
    }
}

/// Whether an option's value is a secret (password, token, API key, webhook secret…). Options that name
/// an environment variable holding a secret (`password_env`) are not secrets themselves.
pub fn is_secret_option(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    if n.ends_with("_env") {
        return false;
    }
    ["password", "passwd", "secret", "token", "api_key", "api-key", "apikey", "authorization", "credential", "private_key", "passphrase"]
        .iter()
        .any(|s| n.contains(s))
}

const REDACTED: &str = "***";

/// `https://user:pass@host/x` → `https://***@host/x`; other strings unchanged.
fn redact_url(s: &str) -> String {
    if let Some((scheme, rest)) = s.split_once("://") {
        let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        if let Some(at) = rest[..authority_end].rfind('@') {
            return format!("{scheme}://{REDACTED}@{}", &rest[at + 1..]);
        }
    }
    s.to_owned()
}

fn redact_value(name: &str, v: &toml::Value) -> serde_json::Value {
    match v {
        _ if is_secret_option(name) => serde_json::Value::String(REDACTED.into()),
        toml::Value::String(s) => serde_json::Value::String(redact_url(s)),
        toml::Value::Table(t) => redacted_options(t),
        toml::Value::Array(a) => serde_json::Value::Array(a.iter().map(|x| redact_value(name, x)).collect()),
        other => serde_json::to_value(other).expect("TOML values are JSON-representable"),
    }
}

/// A connection's options as JSON with every secret replaced by `***` (also credentials inside URLs):
/// what the API and logs may show.
pub fn redacted_options(options: &toml::Table) -> serde_json::Value {
    serde_json::Value::Object(options.iter().map(|(k, v)| (k.clone(), redact_value(k, v))).collect())
}

/// The secret strings in these options (secret options' values, passwords inside URLs), to scrub from
/// messages that might echo them (a connector's error naming a bad value, say).
pub fn secret_values(options: &toml::Table) -> Vec<String> {
    fn walk(name: &str, v: &toml::Value, out: &mut Vec<String>) {
        match v {
            toml::Value::String(s) if is_secret_option(name) => out.push(s.clone()),
            toml::Value::String(s) => {
                if let Some((_, rest)) = s.split_once("://") {
                    let authority = &rest[..rest.find(['/', '?', '#']).unwrap_or(rest.len())];
                    if let Some((userinfo, _)) = authority.rsplit_once('@') {
                        out.push(userinfo.to_owned());
                        if let Some((_, pass)) = userinfo.split_once(':') {
                            out.push(pass.to_owned());
                        }
                    }
                }
            }
            toml::Value::Table(t) => t.iter().for_each(|(k, x)| walk(k, x, out)),
            toml::Value::Array(a) => a.iter().for_each(|x| walk(name, x, out)),
            other if is_secret_option(name) => out.push(other.to_string()),
            _ => {}
        }
    }
    let mut out = Vec::new();
    options.iter().for_each(|(k, v)| walk(k, v, &mut out));
    // Very short values would scrub ordinary words; they are not worth protecting this way.
    out.retain(|s| s.len() >= 4);
    out.sort_by_key(|s| std::cmp::Reverse(s.len()));
    out.dedup();
    out
}

/// Replaces every occurrence of each secret in `text` with `***`.
pub fn scrub(text: &str, secrets: &[String]) -> String {
    let mut out = text.to_owned();
    for s in secrets {
        if out.contains(s.as_str()) {
            out = out.replace(s.as_str(), REDACTED);
        }
    }
    out
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
    fn the_business_time_zone_is_every_schedules_default() {
        let text = |tz: &str| {
            format!(
                r#"
                [defaults]
                timezone = "{tz}"
                [connections.a]
                type = "csv"
                [flows.nightly]
                source = "a"
                target = "a"
                stream = "products"
                schedule = "0 30 2 * * *"
                [flows.berlin]
                source = "a"
                target = "a"
                stream = "stock"
                schedule_timezone = "Europe/Berlin"
                "#
            )
        };
        let c = Config::parse(&text("Australia/Sydney"), PathBuf::from(".")).unwrap();
        assert_eq!(c.defaults.timezone.as_deref(), Some("Australia/Sydney"));
        assert_eq!(c.flow("nightly").unwrap().schedule_timezone.as_deref(), Some("Australia/Sydney"));
        assert_eq!(c.flow("berlin").unwrap().schedule_timezone.as_deref(), Some("Europe/Berlin"), "a flow's own wins");
        let err = Config::parse(&text("Sydney"), PathBuf::from(".")).unwrap_err();
        assert!(err.contains("defaults.timezone") && err.contains("IANA"), "{err}");
        // without [defaults], schedules stay on their own (UTC) default
        let plain = Config::parse("[connections.a]\ntype = \"csv\"\n[flows.f]\nsource = \"a\"\ntarget = \"a\"\nstream = \"stock\"\n", PathBuf::from(".")).unwrap();
        assert_eq!(plain.flow("f").unwrap().schedule_timezone, None);
    }

    #[test]
    fn secrets_are_redacted_scrubbed_and_never_debug_printed() {
        let c = Config::parse(
            r#"
            [connections.erp]
            type = "tryton"
            url = "https://admin:url-pass-9@erp.example/x"
            password = "hunter2-secret"
            password_env = "TRYTON_PASSWORD"
            webhook_secret = "hook-s3cret"
            headers = { "X-Api-Key" = "key-12345" }
            "#,
            PathBuf::new(),
        )
        .unwrap();
        let conn = &c.connections["erp"];
        let shown = redacted_options(&conn.options).to_string();
        let debug = format!("{c:?}");
        for secret in ["hunter2-secret", "url-pass-9", "hook-s3cret", "key-12345"] {
            assert!(!shown.contains(secret), "{secret} in {shown}");
            assert!(!debug.contains(secret), "{secret} in {debug}");
        }
        let r = redacted_options(&conn.options);
        assert_eq!(r["password_env"], "TRYTON_PASSWORD", "an env var name is not a secret");
        assert_eq!(r["url"], "https://***@erp.example/x");
        let secrets = secret_values(&conn.options);
        let msg = scrub("login admin:url-pass-9 with hunter2-secret failed; header key-12345", &secrets);
        assert_eq!(msg, "login *** with *** failed; header ***");
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
    fn a_bad_schedule_or_time_zone_is_refused_at_load() {
        let flow = "[connections.a]\ntype='jsonl'\n[flows.x]\nsource='a'\ntarget='a'\nstream='products'\n";
        let err = Config::parse(&format!("{flow}schedule='every tuesday'\n"), PathBuf::new()).unwrap_err();
        assert!(err.starts_with("flows.x.schedule \"every tuesday\""), "{err}");
        let err = Config::parse(&format!("{flow}schedule='0 * * * *'\nschedule_timezone='Mars/Olympus'\n"), PathBuf::new()).unwrap_err();
        assert!(err.starts_with("flows.x.schedule_timezone \"Mars/Olympus\""), "{err}");
        let err = Config::parse(&format!("{flow}schedule_timezone='Mars/Olympus'\n"), PathBuf::new()).unwrap_err();
        assert!(err.contains("Mars/Olympus"), "{err}");
        assert!(Config::parse(&format!("{flow}schedule='30 2 * * *'\nschedule_timezone='Australia/Sydney'\n"), PathBuf::new()).is_ok());
    }

    #[test]
    fn names_an_unknown_option_with_its_line() {
        let err = Config::parse("[flows.x]\nsource='a'\ntarget='b'\nstream='products'\nbatchsize=3\n", PathBuf::new()).unwrap_err();
        assert!(err.contains("batchsize") && err.contains("line 5"), "{err}");
    }
}
