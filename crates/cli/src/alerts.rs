//! `ferry alerts list|test`: the workspace's open alerts (as `ferry serve` keeps them in the state store),
//! and a test message to each channel of `[alerts]` to check addresses, credentials and URLs before a
//! real problem needs them. See docs/alerts.md.

use anyhow::{Result, bail};
use ferry_engine::Config;
use ferry_engine::store::{AlertStore, SqliteStore};
use ferry_server::alerts::Alerting;
use std::path::Path;
use std::process::ExitCode;

#[derive(clap::Subcommand)]
pub enum AlertsAction {
    /// Open alerts, and resolved ones whose "resolved" message a channel is still owed.
    List,
    /// Send a test message to every channel of [alerts] (or to one).
    Test {
        #[arg(long)]
        channel: Option<String>,
    },
}

pub async fn run(config_path: &Path, workspace: Option<&str>, action: AlertsAction, json: bool) -> Result<ExitCode> {
    let config = Config::load(config_path)?;
    let store = SqliteStore::open(&config.state_path()).await?;
    match action {
        AlertsAction::List => {
            let alerts = store.active_alerts().await?;
            if json {
                let list: Vec<serde_json::Value> = alerts
                    .iter()
                    .map(|a| {
                        serde_json::json!({
                            "id": a.id, "rule": a.rule, "subject": a.subject, "message": a.message,
                            "opened_at": a.opened_at, "resolved_at": a.resolved_at,
                            "told": a.deliveries.iter().filter(|(_, d)| d.fired_at.is_some()).map(|(c, _)| c).collect::<Vec<_>>(),
                        })
                    })
                    .collect();
                println!("{}", serde_json::to_string_pretty(&list)?);
            } else if alerts.is_empty() {
                println!("no open alerts");
            } else {
                for a in &alerts {
                    let about = if a.subject.is_empty() { String::new() } else { format!(" ({})", a.subject) };
                    let told: Vec<&str> = a.deliveries.iter().filter(|(_, d)| d.fired_at.is_some()).map(|(c, _)| c.as_str()).collect();
                    let state = match a.resolved_at {
                        Some(at) => format!("resolved {}, a channel is still owed the message", at.format("%Y-%m-%d %H:%M UTC")),
                        None => format!("open since {}", a.opened_at.format("%Y-%m-%d %H:%M UTC")),
                    };
                    let told = if told.is_empty() { "nobody yet (cool-down or channel down)".to_string() } else { told.join(", ") };
                    println!("{}{about}: {state}; told: {told}\n  {}", a.rule, a.message);
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        AlertsAction::Test { channel } => {
            let (alerting, warnings) = Alerting::prepare(workspace.unwrap_or(ferry_server::DEFAULT_WORKSPACE), &config, &store).await?;
            for w in warnings {
                eprintln!("warning: {w}");
            }
            let Some(alerting) = alerting else { bail!("{} has no [alerts.channels] to test", config_path.display()) };
            let names: Vec<String> = match channel {
                Some(c) => vec![c],
                None => alerting.channels.keys().cloned().collect(),
            };
            let mut failed = false;
            for name in names {
                match alerting.send_test(&name).await {
                    Ok(()) => println!("{name}: sent"),
                    Err(e) => {
                        failed = true;
                        println!("{name}: FAILED: {e}");
                    }
                }
            }
            Ok(if failed { ExitCode::FAILURE } else { ExitCode::SUCCESS })
        }
    }
}
