//! Retention: what Ferry forgets, and when (`ferry prune`, and `ferry serve` once per interval).
//!
//! ```toml
//! [retention]
//! runs_days = 30            # runs (with their per-record outcomes) older than this go; 0 = keep
//! runs_keep = 1000          # and beyond the newest 1000 of each flow; 0 = no count limit
//! jobs_days = 7             # succeeded jobs of `ferry serve`; 0 = keep
//! pushed_records_days = 30  # records-API records every reading flow has passed; 0 = keep
//! compact_jsonl = true      # rewrite JSONL targets to their latest line per key
//! prune_every_hours = 24    # `ferry serve` prunes this often; 0 = only `ferry prune`
//! ```
//!
//! Never pruned: open failures (parked records, failed jobs — they wait for a person), a run still
//! running, the newest run of each flow, the newest job of each flow and kind (the scheduler's mark),
//! pushed records a reading flow has not passed yet or that have an open failure, and records of a
//! collection no flow reads (a website pulls those: they are the served data, not a queue).

use crate::connector::Compaction;
use crate::store::retention::{RecordsPrune, RetentionStore, RunsPrune};
use crate::store::StoreError;
use crate::workspace::Workspace;
use chrono::{DateTime, Duration, Utc};
use ferry_model::Stream;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct RetentionConfig {
    pub runs_days: u32,
    pub runs_keep: u32,
    pub jobs_days: u32,
    pub pushed_records_days: u32,
    pub compact_jsonl: bool,
    pub prune_every_hours: u32,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        RetentionConfig { runs_days: 30, runs_keep: 1000, jobs_days: 7, pushed_records_days: 30, compact_jsonl: true, prune_every_hours: 24 }
    }
}

/// One JSONL (or other append-only) target compacted.
#[derive(Clone, Debug, Serialize)]
pub struct CompactedTarget {
    pub connection: String,
    pub stream: Stream,
    #[serde(flatten)]
    pub compaction: Compaction,
}

/// What a prune removed (or, with `dry_run`, would remove).
#[derive(Clone, Debug, Default, Serialize)]
pub struct PruneReport {
    pub dry_run: bool,
    pub runs: u64,
    pub run_records: u64,
    pub jobs: u64,
    pub pushed_records: u64,
    pub compacted: Vec<CompactedTarget>,
    /// Targets left alone this time (a flow writing them was running).
    pub skipped: Vec<String>,
    /// What could not be done (the rest was).
    pub errors: Vec<String>,
}

fn days_before(now: DateTime<Utc>, days: u32) -> Option<DateTime<Utc>> {
    (days > 0).then(|| now - Duration::days(i64::from(days)))
}

/// Who prunes: `host:pid/prune`. Not the process's run holder: a lease is re-entrant for its holder, so a
/// prune in `ferry serve` must not pass as the worker running a flow of the same process.
pub fn holder() -> String {
    format!("{}/prune", crate::workspace::holder_id())
}

/// How long a compaction may hold the leases of the flows writing its target.
const COMPACTION_LEASE: Duration = Duration::minutes(30);

/// Prunes the workspace's state store and compacts its JSONL targets under `ws.config.retention`.
/// `store` is the workspace's state store seen as a [`RetentionStore`]; `holder` names this process for
/// the flow leases a compaction takes (it never rewrites a file a running flow is appending to). A
/// prune that changed something is logged in the store at `now` (see [`RetentionStore::last_prune`]).
pub async fn prune(ws: &Workspace, store: &dyn RetentionStore, now: DateTime<Utc>, holder: &str, dry_run: bool) -> Result<PruneReport, StoreError> {
    let policy = &ws.config.retention;
    let started = std::time::Instant::now();
    let mut report = PruneReport { dry_run, ..Default::default() };

    let runs = RunsPrune { older_than: days_before(now, policy.runs_days), keep_per_flow: (policy.runs_keep > 0).then_some(policy.runs_keep) };
    let pruned = store.prune_runs(runs, dry_run).await?;
    (report.runs, report.run_records) = (pruned.runs, pruned.run_records);

    if let Some(cutoff) = days_before(now, policy.jobs_days) {
        report.jobs = store.prune_jobs(cutoff, dry_run).await?;
    }

    if let Some(cutoff) = days_before(now, policy.pushed_records_days) {
        for rule in pushed_record_rules(ws, cutoff).await? {
            report.pushed_records += store.prune_records(&rule, dry_run).await?;
        }
    }

    if policy.compact_jsonl {
        compact_jsonl_targets(ws, holder, dry_run, &mut report).await?;
    }

    if !dry_run {
        let json = serde_json::to_value(&report).expect("a report serialises");
        let took = Duration::from_std(started.elapsed()).unwrap_or_default();
        store.log_prune(now, now + took, &json).await?;
    }
    Ok(report)
}

/// Flows grouped by (connection, stream) for the connections of type `kind` on the `role` side.
fn flows_by_connection(ws: &Workspace, kind: &str, source: bool) -> BTreeMap<(String, Stream), Vec<String>> {
    let mut groups: BTreeMap<(String, Stream), Vec<String>> = BTreeMap::new();
    for (name, flow) in &ws.config.flows {
        let connection = if source { &flow.source } else { &flow.target };
        if ws.config.connections.get(connection).is_some_and(|c| c.kind == kind) {
            groups.entry((connection.clone(), flow.stream)).or_default().push(name.clone());
        }
    }
    groups
}

/// One rule per collection/stream that flows read from an `api` connection: up to the smallest change
/// number those flows have passed, minus their open failures.
async fn pushed_record_rules(ws: &Workspace, changed_before: DateTime<Utc>) -> Result<Vec<RecordsPrune>, StoreError> {
    // collection/stream → the flows reading it (two connections may name one collection)
    let mut readers: BTreeMap<(String, Stream), Vec<String>> = BTreeMap::new();
    for ((connection, stream), flows) in flows_by_connection(ws, "api", true) {
        let collection = ws.config.connections[&connection].options.get("collection").and_then(|c| c.as_str()).unwrap_or("default").to_owned();
        readers.entry((collection, stream)).or_default().extend(flows);
    }
    let mut rules = Vec::new();
    for ((collection, stream), flows) in readers {
        let mut up_to_seq = i64::MAX;
        let mut keep_keys = Vec::new();
        for flow in &flows {
            let seq = ws.store().checkpoint(flow).await?.and_then(|c| c.get("seq").and_then(|s| s.as_i64())).unwrap_or(0);
            up_to_seq = up_to_seq.min(seq);
            keep_keys.extend(ws.store().failures(Some(flow), None).await?.into_iter().map(|f| f.key));
        }
        if up_to_seq > 0 {
            rules.push(RecordsPrune { collection, stream: stream.as_str().to_owned(), up_to_seq, changed_before, keep_keys });
        }
    }
    Ok(rules)
}

/// Compacts every JSONL target stream, holding the leases of the flows that write it.
async fn compact_jsonl_targets(ws: &Workspace, holder: &str, dry_run: bool, report: &mut PruneReport) -> Result<(), StoreError> {
    for ((connection, stream), flows) in flows_by_connection(ws, "jsonl", false) {
        let mut locked = Vec::new();
        let mut busy = None;
        if !dry_run {
            for flow in &flows {
                match ws.store().lock_flow(flow, holder, COMPACTION_LEASE).await {
                    Ok(()) => locked.push(flow.clone()),
                    Err(e) => {
                        busy = Some(e.message);
                        break;
                    }
                }
            }
        }
        let what = format!("{connection} {stream}");
        match busy {
            Some(why) => report.skipped.push(format!("{what}: {why}")),
            None => match ws.connection(&connection) {
                Ok(c) => match c.compact(stream, dry_run).await {
                    Ok(Some(compaction)) => report.compacted.push(CompactedTarget { connection: connection.clone(), stream, compaction }),
                    Ok(None) => {}
                    Err(e) => report.errors.push(format!("compact {what}: {e}")),
                },
                Err(e) => report.errors.push(format!("compact {what}: {e}")),
            },
        }
        for flow in locked {
            ws.store().unlock_flow(&flow, holder).await?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_documented_and_zero_switches_a_rule_off() {
        let parsed: RetentionConfig = toml::from_str("").unwrap();
        assert_eq!(parsed, RetentionConfig::default());
        assert_eq!((parsed.runs_days, parsed.runs_keep, parsed.jobs_days, parsed.pushed_records_days), (30, 1000, 7, 30));
        assert!(parsed.compact_jsonl && parsed.prune_every_hours == 24);
        let off: RetentionConfig = toml::from_str("runs_days = 0\njobs_days = 0").unwrap();
        let now = Utc::now();
        assert_eq!(days_before(now, off.runs_days), None);
        assert_eq!(days_before(now, 2), Some(now - Duration::days(2)));
        assert!(toml::from_str::<RetentionConfig>("run_days = 3").is_err(), "a typo is an error");
    }
}
