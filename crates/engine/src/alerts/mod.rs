//! Alerts: `[alerts]` rules of a workspace, and the pure logic that turns store readings into messages.
//!
//! ```text
//! store readings ──evaluate──► findings ──reconcile──► open / resolve alerts (store)
//!                                                        │
//!            alerts + deliveries (store) ──due_messages──► fired / resolved messages per channel
//! ```
//!
//! Nothing here does I/O: `ferry serve` (`crates/server/src/alerts.rs`) reads the store, calls these
//! functions, sends what they say over SMTP or a webhook, and records each delivery. One problem (a rule
//! and its subject: a flow, a connection, the workspace) is one alert: it fires once per channel, and
//! sends one "resolved" message when its condition clears. A problem that comes back within the rule's
//! cool-down of the last message about it is held back until the cool-down ends, and sends nothing at all
//! if it clears before then.

pub mod evaluate;
pub mod plan;

use chrono::Duration;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

pub use evaluate::{Finding, Readings, evaluate};
pub use plan::{AlertState, Changes, Delivery, Message, Notice, due_messages, reconcile};

/// `[alerts]` as written in the config.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AlertsConfig {
    /// How often `ferry serve` evaluates the rules (default 60 s).
    pub evaluate_every_seconds: Option<u64>,
    /// Default cool-down of every rule (default 60 minutes).
    pub cooldown_minutes: Option<u64>,
    /// Put before every message's headline (default `[Ferry <workspace>]`).
    pub prefix: Option<String>,
    #[serde(default)]
    pub channels: BTreeMap<String, ChannelConfig>,
    #[serde(default)]
    pub rules: BTreeMap<String, RuleConfig>,
}

/// A credential: written in the config (warned about), a stored secret, or an environment variable.
#[derive(Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(untagged)]
pub enum SecretOption {
    /// `{ secret = "NAME" }`: encrypted in the workspace's store (`ferry secrets set NAME`).
    Stored { secret: String },
    /// `{ env = "VAR" }`: read from the environment when the server starts.
    Env { env: String },
    Plain(String),
}

impl std::fmt::Debug for SecretOption {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SecretOption::Stored { secret } => write!(f, "{{ secret = {secret:?} }}"),
            SecretOption::Env { env } => write!(f, "{{ env = {env:?} }}"),
            SecretOption::Plain(_) => f.write_str("\"***\""),
        }
    }
}

/// `[alerts.channels.NAME]`: where messages go.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ChannelConfig {
    Email(EmailChannel),
    Webhook(WebhookChannel),
}

/// E-mail over SMTP.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct EmailChannel {
    pub host: String,
    /// Default: 587 for `starttls`, 465 for `tls`, 25 for `none`.
    pub port: Option<u16>,
    #[serde(default)]
    pub security: SmtpSecurity,
    pub username: Option<String>,
    pub password: Option<SecretOption>,
    pub from: String,
    pub to: Vec<String>,
    /// Give up on one message after this long (default 30 s; the next evaluation tries again).
    pub timeout_seconds: Option<u64>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SmtpSecurity {
    /// Plain connection upgraded with STARTTLS; refuses to go on unencrypted.
    #[default]
    Starttls,
    /// TLS from the first byte (SMTPS, port 465).
    Tls,
    /// No encryption: only to a server on this machine (a local relay, a test sink).
    None,
}

/// An outgoing webhook: `POST url` with Slack-compatible JSON `{"text": "…"}`.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookChannel {
    /// Slack's incoming-webhook URLs are credentials: `{ secret = "NAME" }` keeps it out of the file.
    pub url: SecretOption,
    /// Default 10 s.
    pub timeout_seconds: Option<u64>,
}

/// `[alerts.rules.NAME]` as written; [`AlertsConfig::rules`] checks it and makes a [`Rule`].
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RuleConfig {
    /// flow_failed | open_failures | no_success | webhook_rejections | queue_age
    pub kind: String,
    /// Channels to tell (default: every channel).
    pub channels: Option<Vec<String>>,
    pub cooldown_minutes: Option<u64>,
    /// flow_failed, open_failures, no_success: which flows (default: flow_failed every enabled flow,
    /// open_failures every flow, no_success every enabled flow with a schedule).
    pub flows: Option<Vec<String>>,
    /// flow_failed: run statuses that count as failed (default aborted, interrupted).
    pub statuses: Option<Vec<String>>,
    /// open_failures: fire when more than this many failures are open.
    pub above: Option<u64>,
    /// no_success: fire when a flow completed no run for this long.
    pub for_minutes: Option<u64>,
    /// webhook_rejections: which connections (default: every connection).
    pub connections: Option<Vec<String>>,
    /// webhook_rejections: fire when at least this many deliveries were rejected…
    pub at_least: Option<u64>,
    /// … within this many minutes.
    pub within_minutes: Option<u64>,
    /// queue_age: fire when a due job has waited longer than this.
    pub older_than_minutes: Option<u64>,
}

/// A checked rule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rule {
    pub name: String,
    pub condition: Condition,
    /// Channel names, each defined in `[alerts.channels]`.
    pub channels: Vec<String>,
    pub cooldown: Duration,
}

/// What a rule watches.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Condition {
    /// The newest finished run of a flow ended in one of `statuses`. One alert per flow.
    FlowFailed { flows: Vec<String>, statuses: Vec<String> },
    /// More than `above` failures are open in these flows together. One alert for the workspace.
    OpenFailures { flows: Vec<String>, above: u64 },
    /// A flow completed no run (status ok or failed_records) for `period`. One alert per flow.
    NoSuccess { flows: Vec<String>, period: Duration },
    /// At least `at_least` webhook deliveries to a connection were rejected within `within`. One alert
    /// per connection.
    WebhookRejections { connections: Vec<String>, at_least: u64, within: Duration },
    /// The oldest due job has waited longer than `older_than`. One alert for the workspace.
    QueueAge { older_than: Duration },
}

impl Condition {
    pub fn kind(&self) -> &'static str {
        match self {
            Condition::FlowFailed { .. } => "flow_failed",
            Condition::OpenFailures { .. } => "open_failures",
            Condition::NoSuccess { .. } => "no_success",
            Condition::WebhookRejections { .. } => "webhook_rejections",
            Condition::QueueAge { .. } => "queue_age",
        }
    }
}

/// Run statuses `flow_failed` may watch.
pub const RUN_STATUSES: [&str; 3] = ["aborted", "interrupted", "failed_records"];

const KINDS: &str = "flow_failed, open_failures, no_success, webhook_rejections, queue_age";

impl AlertsConfig {
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    pub fn every(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.evaluate_every_seconds.unwrap_or(60).max(1))
    }

    /// The rules, checked against the config's flows and connections; an error names the rule and option.
    pub fn rules(&self, config: &crate::Config) -> Result<Vec<Rule>, String> {
        let default_cooldown = self.cooldown_minutes.unwrap_or(60);
        let mut out = Vec::new();
        for (name, r) in &self.rules {
            let at = |option: &str| format!("alerts.rules.{name}.{option}");
            let channels = match &r.channels {
                Some(list) => {
                    for c in list {
                        if !self.channels.contains_key(c) {
                            return Err(format!("{}: no channel named {c:?} in [alerts.channels] ({})", at("channels"), names(self.channels.keys())));
                        }
                    }
                    list.clone()
                }
                None => self.channels.keys().cloned().collect(),
            };
            if channels.is_empty() {
                return Err(format!("alerts.rules.{name}: no channel to send to; define one in [alerts.channels]"));
            }
            let flows = |default: Vec<String>| -> Result<Vec<String>, String> {
                match &r.flows {
                    Some(list) => {
                        for f in list {
                            if !config.flows.contains_key(f) {
                                return Err(format!("{}: no flow named {f:?} ({})", at("flows"), names(config.flows.keys())));
                            }
                        }
                        Ok(list.clone())
                    }
                    None => Ok(default),
                }
            };
            let every_flow: Vec<String> = config.flows.keys().cloned().collect();
            let minutes = |option: &str, v: Option<u64>| -> Result<Duration, String> {
                match v {
                    Some(m) if (1..=525_600).contains(&m) => Ok(Duration::minutes(m as i64)),
                    Some(_) => Err(format!("{}: between 1 and 525600 minutes", at(option))),
                    None => Err(format!("{}: required for kind {}", at(option), r.kind)),
                }
            };
            // Options that belong to another kind are refused, not ignored: a typo must not silence a rule.
            let allowed: &[&str] = match r.kind.as_str() {
                "flow_failed" => &["flows", "statuses"],
                "open_failures" => &["flows", "above"],
                "no_success" => &["flows", "for_minutes"],
                "webhook_rejections" => &["connections", "at_least", "within_minutes"],
                "queue_age" => &["older_than_minutes"],
                other => return Err(format!("{}: {other:?} is not a kind of rule ({KINDS})", at("kind"))),
            };
            for (option, given) in [
                ("flows", r.flows.is_some()),
                ("statuses", r.statuses.is_some()),
                ("above", r.above.is_some()),
                ("for_minutes", r.for_minutes.is_some()),
                ("connections", r.connections.is_some()),
                ("at_least", r.at_least.is_some()),
                ("within_minutes", r.within_minutes.is_some()),
                ("older_than_minutes", r.older_than_minutes.is_some()),
            ] {
                if given && !allowed.contains(&option) {
                    return Err(format!("{}: not an option of kind {} (its options: {})", at(option), r.kind, allowed.join(", ")));
                }
            }
            let condition = match r.kind.as_str() {
                "flow_failed" => {
                    let statuses = r.statuses.clone().unwrap_or_else(|| vec!["aborted".into(), "interrupted".into()]);
                    if let Some(bad) = statuses.iter().find(|s| !RUN_STATUSES.contains(&s.as_str())) {
                        return Err(format!("{}: {bad:?} is not a failed run's status ({})", at("statuses"), RUN_STATUSES.join(", ")));
                    }
                    let enabled = config.flows.iter().filter(|(_, f)| f.enabled).map(|(n, _)| n.clone()).collect();
                    Condition::FlowFailed { flows: flows(enabled)?, statuses }
                }
                "open_failures" => {
                    let above = r.above.ok_or_else(|| format!("{}: required for kind open_failures", at("above")))?;
                    Condition::OpenFailures { flows: flows(every_flow)?, above }
                }
                "no_success" => {
                    let scheduled = config.flows.iter().filter(|(_, f)| f.enabled && f.schedule.is_some()).map(|(n, _)| n.clone()).collect();
                    Condition::NoSuccess { flows: flows(scheduled)?, period: minutes("for_minutes", r.for_minutes)? }
                }
                "webhook_rejections" => {
                    let connections = match &r.connections {
                        Some(list) => {
                            if let Some(c) = list.iter().find(|c| !config.connections.contains_key(*c)) {
                                return Err(format!("{}: no connection named {c:?} ({})", at("connections"), names(config.connections.keys())));
                            }
                            list.clone()
                        }
                        None => config.connections.keys().cloned().collect(),
                    };
                    let at_least = r.at_least.filter(|n| *n >= 1).ok_or_else(|| format!("{}: required for kind webhook_rejections, at least 1", at("at_least")))?;
                    Condition::WebhookRejections { connections, at_least, within: minutes("within_minutes", r.within_minutes)? }
                }
                _ => Condition::QueueAge { older_than: minutes("older_than_minutes", r.older_than_minutes)? },
            };
            let cooldown = r.cooldown_minutes.unwrap_or(default_cooldown);
            if cooldown > 525_600 {
                return Err(format!("{}: at most 525600 minutes (a year)", at("cooldown_minutes")));
            }
            out.push(Rule { name: name.clone(), condition, channels, cooldown: Duration::minutes(cooldown as i64) });
        }
        for (name, channel) in &self.channels {
            channel.check().map_err(|e| format!("alerts.channels.{name}.{e}"))?;
        }
        Ok(out)
    }

    /// The longest window any `webhook_rejections` rule counts over (what the store must keep).
    pub fn rejection_window(rules: &[Rule]) -> Option<Duration> {
        rules
            .iter()
            .filter_map(|r| match &r.condition {
                Condition::WebhookRejections { within, .. } => Some(*within),
                _ => None,
            })
            .max()
    }
}

impl ChannelConfig {
    fn check(&self) -> Result<(), String> {
        match self {
            ChannelConfig::Email(e) => {
                if e.host.trim().is_empty() {
                    return Err("host: the SMTP server's name".into());
                }
                if e.to.is_empty() {
                    return Err("to: at least one address".into());
                }
                if e.password.is_some() != e.username.is_some() {
                    return Err("username: a username and a password go together".into());
                }
                if e.security == SmtpSecurity::None && e.password.is_some() && !is_loopback(&e.host) {
                    return Err(format!(
                        "security: \"none\" would send the password unencrypted to {}; use starttls or tls (\"none\" is for a server on this machine)",
                        e.host
                    ));
                }
                Ok(())
            }
            ChannelConfig::Webhook(w) => match &w.url {
                SecretOption::Plain(u) if !(u.starts_with("https://") || u.starts_with("http://")) => Err("url: an http(s) URL".into()),
                _ => Ok(()),
            },
        }
    }
}

/// `localhost`, `127.x.x.x`, `::1`.
pub fn is_loopback(host: &str) -> bool {
    host == "localhost" || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

fn names<'a>(it: impl Iterator<Item = &'a String>) -> String {
    let v: Vec<&str> = it.map(String::as_str).collect();
    if v.is_empty() { "none defined".into() } else { v.join(", ") }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    const BASE: &str = r#"
        [connections.erp]
        type = "csv"
        [connections.shop]
        type = "jsonl"
        [flows.products]
        source = "erp"
        target = "shop"
        stream = "products"
        schedule = "0 * * * *"
        [flows.orders]
        source = "shop"
        target = "erp"
        stream = "orders"
        [flows.old]
        source = "shop"
        target = "erp"
        stream = "stock"
        enabled = false
    "#;

    fn parse(alerts: &str) -> Result<Vec<Rule>, String> {
        let c = crate::Config::parse(&format!("{BASE}\n{alerts}"), PathBuf::from("."))?;
        c.alerts.rules(&c)
    }

    const CHANNELS: &str = r#"
        [alerts.channels.ops]
        type = "email"
        host = "smtp.example.com"
        username = "ferry"
        password = { secret = "smtp" }
        from = "ferry@example.com"
        to = ["ops@example.com"]
        [alerts.channels.chat]
        type = "webhook"
        url = { env = "SLACK_URL" }
    "#;

    #[test]
    fn every_kind_parses_with_its_defaults() {
        let rules = parse(&format!(
            r#"{CHANNELS}
            [alerts]
            cooldown_minutes = 15
            [alerts.rules.failed]
            kind = "flow_failed"
            [alerts.rules.parked]
            kind = "open_failures"
            above = 10
            channels = ["chat"]
            cooldown_minutes = 5
            [alerts.rules.stale]
            kind = "no_success"
            for_minutes = 180
            [alerts.rules.signatures]
            kind = "webhook_rejections"
            at_least = 5
            within_minutes = 10
            connections = ["shop"]
            [alerts.rules.backlog]
            kind = "queue_age"
            older_than_minutes = 15
            "#
        ))
        .unwrap();
        let by = |n: &str| rules.iter().find(|r| r.name == n).unwrap().clone();
        assert_eq!(
            by("failed").condition,
            Condition::FlowFailed { flows: vec!["orders".into(), "products".into()], statuses: vec!["aborted".into(), "interrupted".into()] }
        );
        assert_eq!(by("failed").channels, ["chat", "ops"], "every channel by default");
        let Condition::OpenFailures { flows, .. } = by("parked").condition else { panic!() };
        assert_eq!(flows, ["old", "orders", "products"], "open failures of a disabled flow still count");
        assert_eq!(by("failed").cooldown, Duration::minutes(15));
        assert_eq!(by("parked").channels, ["chat"]);
        assert_eq!(by("parked").cooldown, Duration::minutes(5));
        assert_eq!(by("stale").condition, Condition::NoSuccess { flows: vec!["products".into()], period: Duration::hours(3) }, "scheduled flows only");
        assert_eq!(
            by("signatures").condition,
            Condition::WebhookRejections { connections: vec!["shop".into()], at_least: 5, within: Duration::minutes(10) }
        );
        assert_eq!(by("backlog").condition, Condition::QueueAge { older_than: Duration::minutes(15) });
        assert_eq!(AlertsConfig::rejection_window(&rules), Some(Duration::minutes(10)));
    }

    #[test]
    fn mistakes_are_named_with_the_rule_and_option() {
        let cases = [
            ("kind = \"flow_broke\"", "alerts.rules.r.kind: \"flow_broke\" is not a kind"),
            ("kind = \"flow_failed\"\nabove = 3", "alerts.rules.r.above: not an option of kind flow_failed"),
            ("kind = \"flow_failed\"\nflows = [\"nope\"]", "alerts.rules.r.flows: no flow named \"nope\""),
            ("kind = \"flow_failed\"\nstatuses = [\"ok\"]", "alerts.rules.r.statuses: \"ok\" is not a failed run's status"),
            ("kind = \"open_failures\"", "alerts.rules.r.above: required"),
            ("kind = \"no_success\"\nfor_minutes = 0", "alerts.rules.r.for_minutes: between 1"),
            ("kind = \"webhook_rejections\"\nwithin_minutes = 5", "alerts.rules.r.at_least: required"),
            ("kind = \"webhook_rejections\"\nat_least = 1\nwithin_minutes = 5\nconnections = [\"x\"]", "alerts.rules.r.connections: no connection named \"x\""),
            ("kind = \"queue_age\"\nchannels = [\"pager\"]\nolder_than_minutes = 5", "alerts.rules.r.channels: no channel named \"pager\""),
        ];
        for (rule, want) in cases {
            let err = parse(&format!("{CHANNELS}\n[alerts.rules.r]\n{rule}\n")).unwrap_err();
            assert!(err.contains(want), "{rule}: {err}");
        }
        let err = parse("[alerts.rules.r]\nkind = \"queue_age\"\nolder_than_minutes = 5\n").unwrap_err();
        assert!(err.contains("no channel to send to"), "{err}");
        let err = parse(&format!("{CHANNELS}\n[alerts.rules.r]\nkind = \"queue_age\"\nolder_than_minute = 5\n")).unwrap_err();
        assert!(err.contains("older_than_minute"), "unknown options are refused: {err}");
    }

    #[test]
    fn channels_refuse_cleartext_passwords_off_this_machine() {
        let email = |host: &str, security: &str| {
            format!(
                "[alerts.channels.m]\ntype = \"email\"\nhost = \"{host}\"\nsecurity = \"{security}\"\nusername = \"u\"\npassword = \"pw-1234\"\nfrom = \"a@b.c\"\nto = [\"d@e.f\"]\n[alerts.rules.r]\nkind = \"queue_age\"\nolder_than_minutes = 5\n"
            )
        };
        let err = parse(&email("smtp.example.com", "none")).unwrap_err();
        assert!(err.contains("alerts.channels.m.security") && !err.contains("pw-1234"), "{err}");
        assert!(parse(&email("127.0.0.1", "none")).is_ok());
        assert!(parse(&email("smtp.example.com", "tls")).is_ok());
        let err = parse("[alerts.channels.w]\ntype = \"webhook\"\nurl = \"hooks.slack.com/x\"\n[alerts.rules.r]\nkind = \"queue_age\"\nolder_than_minutes = 5\n").unwrap_err();
        assert!(err.contains("alerts.channels.w.url"), "{err}");
        let err = parse("[alerts.channels.w]\ntype = \"pager\"\n").unwrap_err();
        assert!(err.contains("pager"), "{err}");
    }

    #[test]
    fn a_plain_credential_never_shows_in_debug_output() {
        let c = crate::Config::parse(
            &format!("{BASE}\n[alerts.channels.w]\ntype = \"webhook\"\nurl = \"https://hooks.example/T000/B000/s3cr3t-token\"\n"),
            PathBuf::from("."),
        )
        .unwrap();
        assert!(!format!("{c:?}").contains("s3cr3t-token"));
    }
}
