//! `ferry serve`'s alerts: every `[alerts] evaluate_every_seconds` (60 s) per workspace, read the state
//! store, evaluate the rules (`ferry_engine::alerts`, pure), open and resolve alerts in the store, and send
//! what is owed by e-mail (SMTP, `lettre`) or to an outgoing webhook (Slack-compatible `{"text": …}`).
//! A message is recorded in the store once it got through, so a restart neither repeats it nor loses it.
//!
//! Rejected webhook deliveries are counted in memory ([`Alerting::count_rejection`]) and added to the
//! store at each evaluation: a flood of bad signatures costs one write per minute, not one per request.

use crate::AppState;
use ferry_engine::Config;
use ferry_engine::alerts::evaluate::{minute_of, span};
use ferry_engine::alerts::{
    AlertsConfig, ChannelConfig, Condition, EmailChannel, Message, Notice, Readings, Rule, SecretOption, SmtpSecurity, WebhookChannel,
    due_messages, evaluate, reconcile,
};
use ferry_engine::secrets::MasterKey;
use ferry_engine::store::alerts::{AlertStore, Rejections};
use ferry_engine::store::secrets::SecretStore;
use ferry_engine::store::{SqliteStore, StateStore, StoreError};
use chrono::{DateTime, Utc};
use lettre::message::Mailbox;
use lettre::message::header::ContentType;
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;
use zeroize::Zeroizing;

/// Resolved alerts of one workspace: checked rules and channels ready to send.
pub struct Alerting {
    pub rules: Vec<Rule>,
    pub channels: BTreeMap<String, Channel>,
    /// Before every headline: `[Ferry <workspace>]` unless configured.
    pub prefix: String,
    pub workspace: String,
    pub every: Duration,
    /// Flows some rule reads the runs of.
    flows: Vec<String>,
    rejection_window: Option<chrono::Duration>,
    /// Rejected webhook deliveries not yet added to the store: (connection, minute, code) → count.
    tally: Mutex<Tally>,
    /// When alerting began on this store, once read (it never changes).
    watching_since: std::sync::OnceLock<DateTime<Utc>>,
}

/// (connection, minute, code) → rejected deliveries.
type Tally = BTreeMap<(String, DateTime<Utc>, String), u64>;

/// Where a message goes.
pub enum Channel {
    Email(Box<EmailSender>),
    Webhook(WebhookSender),
}

pub struct EmailSender {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    to: Vec<Mailbox>,
}

pub struct WebhookSender {
    client: reqwest::Client,
    /// Slack's webhook URLs are credentials: never logged, never in an error.
    url: Zeroizing<String>,
}

/// The lease one server of several on a store holds to evaluate its alerts (in `flow_locks`, under a name
/// no flow can take by accident), so two servers never both send a message.
pub const ALERTS_LEASE: &str = "(alerts)";

/// How long resolved alerts are kept (the cool-down reads the last ones; older ones only take room).
const KEEP_RESOLVED: chrono::Duration = chrono::Duration::days(30);

impl Alerting {
    /// The workspace's `[alerts]`, with credentials resolved (`{ secret = "…" }` from `store` under the
    /// master key, `{ env = "…" }` from the environment); `None` when it has neither rules nor channels.
    /// Returns warnings for people too (plain-text credentials in the config).
    pub async fn prepare(workspace: &str, config: &Config, store: &SqliteStore) -> anyhow::Result<(Option<Alerting>, Vec<String>)> {
        let alerts: &AlertsConfig = &config.alerts;
        if alerts.rules.is_empty() && alerts.channels.is_empty() {
            return Ok((None, vec![]));
        }
        let rules = alerts.rules(config).map_err(anyhow::Error::msg)?;
        let key = MasterKey::from_env()?;
        let mut warnings = Vec::new();
        let mut channels = BTreeMap::new();
        for (name, c) in &alerts.channels {
            let at = |option: &str| format!("alerts.channels.{name}.{option}");
            let channel = match c {
                ChannelConfig::Email(e) => {
                    let password = match &e.password {
                        Some(p) => Some(reveal(p, &at("password"), store, key.as_ref(), &mut warnings).await?),
                        None => None,
                    };
                    Channel::Email(Box::new(EmailSender::new(e, password, &at).map_err(anyhow::Error::msg)?))
                }
                ChannelConfig::Webhook(w) => {
                    let url = reveal(&w.url, &at("url"), store, key.as_ref(), &mut warnings).await?;
                    Channel::Webhook(WebhookSender::new(w, url, &at).map_err(anyhow::Error::msg)?)
                }
            };
            channels.insert(name.clone(), channel);
        }
        let mut flows = BTreeSet::new();
        for r in &rules {
            if let Condition::FlowFailed { flows: f, .. } | Condition::NoSuccess { flows: f, .. } = &r.condition {
                flows.extend(f.iter().cloned());
            }
        }
        let alerting = Alerting {
            rejection_window: AlertsConfig::rejection_window(&rules),
            rules,
            channels,
            prefix: alerts.prefix.clone().unwrap_or_else(|| format!("[Ferry {workspace}]")),
            workspace: workspace.to_owned(),
            every: alerts.every(),
            flows: flows.into_iter().collect(),
            tally: Mutex::new(BTreeMap::new()),
            watching_since: std::sync::OnceLock::new(),
        };
        Ok((Some(alerting), warnings))
    }

    /// Sends a test message to one channel (`ferry alerts test`): checks its address, credentials, URL.
    pub async fn send_test(&self, channel: &str) -> Result<(), String> {
        let c = self.channels.get(channel).ok_or_else(|| format!("no channel named {channel:?} in [alerts.channels]"))?;
        let headline = format!("{} TEST {channel}", self.prefix);
        let body = format!(
            "A test message from `ferry alerts test`: channel {channel} of workspace {} works.\nRules that send here: {}",
            self.workspace,
            self.rules.iter().filter(|r| r.channels.iter().any(|c| c == channel)).map(|r| r.name.as_str()).collect::<Vec<_>>().join(", ")
        );
        c.send(&headline, &body).await
    }

    /// A webhook delivery to `connection` was refused (`code`: invalid_signature, stale_timestamp,
    /// no_webhook_secret). Only counted when a rule reads rejections.
    pub fn count_rejection(&self, connection: &str, code: &str, now: DateTime<Utc>) {
        if self.rejection_window.is_none() {
            return;
        }
        let mut tally = self.tally.lock().expect("rejection tally lock");
        *tally.entry((connection.to_owned(), minute_of(now), code.to_owned())).or_default() += 1;
    }

    fn take_tally(&self) -> Vec<Rejections> {
        let taken = std::mem::take(&mut *self.tally.lock().expect("rejection tally lock"));
        taken.into_iter().map(|((connection, minute, code), count)| Rejections { connection, minute, code, count }).collect()
    }

    fn put_back(&self, rejections: Vec<Rejections>) {
        let mut tally = self.tally.lock().expect("rejection tally lock");
        for x in rejections {
            *tally.entry((x.connection, x.minute, x.code)).or_default() += x.count;
        }
    }

    /// Headline and body of a message (also the webhook's text).
    pub fn render(&self, m: &Message) -> (String, String) {
        let about = if m.subject.is_empty() { String::new() } else { format!(" ({})", m.subject) };
        let kind = self.rules.iter().find(|r| r.name == m.rule).map(|r| r.condition.kind()).unwrap_or("removed from the config");
        let facts = format!("Rule: {} ({kind})\nWorkspace: {}\nOpened: {}", m.rule, self.workspace, m.opened_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
        match (m.notice, m.resolved_at) {
            (Notice::Resolved, Some(at)) => (
                format!("{} RESOLVED {}{about}", self.prefix, m.rule),
                format!("Resolved after {}. It was: {}\n\n{facts}", span(at - m.opened_at), m.message),
            ),
            _ => (format!("{} FIRING {}{about}", self.prefix, m.rule), format!("{}\n\n{facts}", m.message)),
        }
    }
}

/// The value of a credential option; errors name the option, never the value.
async fn reveal(option: &SecretOption, at: &str, store: &SqliteStore, key: Option<&MasterKey>, warnings: &mut Vec<String>) -> anyhow::Result<Zeroizing<String>> {
    match option {
        SecretOption::Plain(v) => {
            warnings.push(format!(
                "{at} is a plain-text secret in the config: store it encrypted with `ferry secrets set NAME` and write `{{ secret = \"NAME\" }}`"
            ));
            Ok(Zeroizing::new(v.clone()))
        }
        SecretOption::Env { env } => match std::env::var(env) {
            Ok(v) if !v.is_empty() => Ok(Zeroizing::new(v)),
            _ => anyhow::bail!("{at} reads the environment variable {env}, which is not set"),
        },
        SecretOption::Stored { secret } => {
            let key = key.ok_or_else(|| {
                anyhow::anyhow!("{at} refers to secret {secret:?}: set FERRY_MASTER_KEY_FILE (or FERRY_MASTER_KEY) to the master key it was stored with")
            })?;
            let sealed = store
                .get_secret(secret)
                .await?
                .ok_or_else(|| anyhow::anyhow!("{at} refers to secret {secret:?}, which this workspace's store does not hold (`ferry secrets set {secret}`)"))?;
            Ok(key.open(&sealed)?)
        }
    }
}

impl EmailSender {
    fn new(c: &EmailChannel, password: Option<Zeroizing<String>>, at: &dyn Fn(&str) -> String) -> Result<EmailSender, String> {
        let mailbox = |option: &str, text: &str| text.parse::<Mailbox>().map_err(|e| format!("{}: {text:?} is not an e-mail address: {e}", at(option)));
        let from = mailbox("from", &c.from)?;
        let to = c.to.iter().map(|t| mailbox("to", t)).collect::<Result<Vec<_>, _>>()?;
        let tls = |e: lettre::transport::smtp::Error| format!("{}: {e}", at("host"));
        let (builder, default_port) = match c.security {
            SmtpSecurity::Starttls => (AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(&c.host).map_err(tls)?, 587),
            SmtpSecurity::Tls => (AsyncSmtpTransport::<Tokio1Executor>::relay(&c.host).map_err(tls)?, 465),
            SmtpSecurity::None => (AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&c.host), 25),
        };
        let mut builder = builder.port(c.port.unwrap_or(default_port)).timeout(Some(Duration::from_secs(c.timeout_seconds.unwrap_or(30).max(1))));
        if let (Some(user), Some(password)) = (&c.username, password) {
            builder = builder.credentials(Credentials::new(user.clone(), password.to_string()));
        }
        Ok(EmailSender { transport: builder.build(), from, to })
    }

    async fn send(&self, headline: &str, body: &str) -> Result<(), String> {
        let mut message = lettre::Message::builder().from(self.from.clone()).subject(headline).header(ContentType::TEXT_PLAIN);
        for to in &self.to {
            message = message.to(to.clone());
        }
        let message = message.body(body.to_owned()).map_err(|e| format!("building the e-mail: {e}"))?;
        self.transport.send(message).await.map(|_| ()).map_err(|e| format!("SMTP: {e}"))
    }
}

impl WebhookSender {
    fn new(c: &WebhookChannel, url: Zeroizing<String>, at: &dyn Fn(&str) -> String) -> Result<WebhookSender, String> {
        if !(url.starts_with("https://") || url.starts_with("http://")) {
            return Err(format!("{}: an http(s) URL", at("url")));
        }
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(c.timeout_seconds.unwrap_or(10).max(1)))
            .build()
            .map_err(|e| format!("{}: {e}", at("url")))?;
        Ok(WebhookSender { client, url })
    }

    async fn send(&self, text: &str) -> Result<(), String> {
        let answer = self
            .client
            .post(self.url.as_str())
            .json(&serde_json::json!({ "text": text }))
            .send()
            .await
            .map_err(|e| format!("POST: {}", e.without_url()))?;
        if answer.status().is_success() {
            Ok(())
        } else {
            Err(format!("POST answered HTTP {}", answer.status()))
        }
    }
}

impl Channel {
    async fn send(&self, headline: &str, body: &str) -> Result<(), String> {
        match self {
            Channel::Email(e) => e.send(headline, body).await,
            Channel::Webhook(w) => w.send(&format!("{headline}\n{body}")).await,
        }
    }
}

/// What one evaluation did.
#[derive(Debug, Default)]
pub struct TickReport {
    /// Another server holds the alerts lease of this store: it evaluates, this one did nothing.
    pub skipped: bool,
    pub opened: Vec<(String, String)>,
    pub resolved: usize,
    /// (channel, notice, rule, subject) of each message that got through.
    pub sent: Vec<(String, Notice, String, String)>,
    /// Messages that did not get through (sent again at the next evaluation), with why.
    pub failed: Vec<String>,
}

pub async fn run(state: Arc<AppState>, mut stop: watch::Receiver<bool>) {
    let Some(alerting) = state.alerting.as_ref().filter(|a| !a.rules.is_empty()) else { return };
    let every = alerting.every;
    loop {
        match tick(&state).await {
            Ok(r) if !r.sent.is_empty() || !r.failed.is_empty() => {
                tracing::info!(workspace = %state.name, opened = r.opened.len(), resolved = r.resolved, sent = r.sent.len(), failed = ?r.failed, "alerts evaluated");
            }
            Ok(_) => {}
            Err(e) => tracing::error!(workspace = %state.name, error = %e, "alert evaluation failed"),
        }
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = stop.changed() => {}
        }
        if *stop.borrow() {
            break;
        }
    }
}

/// One evaluation of the workspace's rules, and the messages it owes.
pub async fn tick(state: &AppState) -> Result<TickReport, StoreError> {
    let mut report = TickReport::default();
    let Some(a) = state.alerting.as_ref() else { return Ok(report) };
    let store = state.store.as_ref();
    let now = state.clock.now();
    // Renewed at every evaluation; a server that stops evaluating leaves it to expire and another takes over.
    let holder = format!("{}/alerts", ferry_engine::holder_id());
    let lease = chrono::Duration::from_std(a.every * 3).unwrap_or(chrono::Duration::MAX).max(chrono::Duration::minutes(2));
    if let Err(e) = store.lock_flow(ALERTS_LEASE, &holder, lease).await {
        match store.lock_holder(ALERTS_LEASE).await? {
            // Left by a process of this host that is gone (a restart after kill -9): take it over at once.
            Some(other) if ferry_engine::lease::holder_gone(&other) => {
                store.unlock_flow(ALERTS_LEASE, &other).await?;
                store.lock_flow(ALERTS_LEASE, &holder, lease).await?;
            }
            Some(other) if other != holder => {
                // Counted rejections go to the store all the same: the evaluating server counts them.
                let counted = a.take_tally();
                if let Err(e) = store.add_rejections(&counted).await {
                    a.put_back(counted);
                    return Err(e);
                }
                report.skipped = true;
                return Ok(report);
            }
            _ => return Err(e),
        }
    }

    let counted = a.take_tally();
    if let Err(e) = store.add_rejections(&counted).await {
        a.put_back(counted);
        return Err(e);
    }
    let has_queue_rule = a.rules.iter().any(|r| matches!(r.condition, Condition::QueueAge { .. }));
    let watching_since = match a.watching_since.get() {
        Some(t) => *t,
        None => {
            let since = store.watching_since(now).await?;
            *a.watching_since.get_or_init(|| since)
        }
    };
    let readings = Readings {
        now,
        watching_since,
        flows: store.flow_health(&a.flows).await?,
        open_failures: store.open_failure_counts().await?,
        rejections: match a.rejection_window {
            Some(w) => store.rejections_since(minute_of(now - w)).await?,
            None => vec![],
        },
        oldest_due_job: if has_queue_rule { store.oldest_due_job(now).await? } else { None },
    };
    let findings = evaluate(&a.rules, &readings);

    let changes = reconcile(&findings, &store.active_alerts().await?);
    for f in changes.open {
        if store.open_alert(&f.rule, &f.subject, &f.message, now).await?.is_some() {
            tracing::warn!(workspace = %state.name, rule = %f.rule, subject = %f.subject, "alert: {}", f.message);
            report.opened.push((f.rule, f.subject));
        }
    }
    for id in &changes.resolve {
        store.resolve_alert(*id, now).await?;
    }
    report.resolved = changes.resolve.len();

    let alerts = store.active_alerts().await?;
    let longest = a.rules.iter().map(|r| r.cooldown).max().unwrap_or_default();
    let last = store.last_fired(now - longest).await?;
    let names: BTreeSet<String> = a.channels.keys().cloned().collect();
    for m in due_messages(&a.rules, &names, &alerts, &last, now) {
        let Some(channel) = a.channels.get(&m.channel) else { continue };
        let (headline, body) = a.render(&m);
        match channel.send(&headline, &body).await {
            Ok(()) => {
                store.record_delivery(m.alert, &m.channel, m.notice == Notice::Resolved, now).await?;
                report.sent.push((m.channel, m.notice, m.rule, m.subject));
            }
            Err(e) => {
                tracing::warn!(workspace = %state.name, channel = %m.channel, rule = %m.rule, error = %e, "alert message not sent; trying again at the next evaluation");
                report.failed.push(format!("{} to {}: {e}", headline, m.channel));
            }
        }
    }

    if let Some(w) = a.rejection_window {
        store.forget_rejections(minute_of(now - w)).await?;
    }
    store.forget_alerts(now - KEEP_RESOLVED.max(longest)).await?;
    Ok(report)
}
