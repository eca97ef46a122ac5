//! Which rules' conditions hold now, from readings of the state store. Pure: same readings, same findings.

use super::{Condition, Rule};
use crate::store::alerts::{FlowHealth, Rejections, WaitingJob};
use chrono::{DateTime, Duration, SecondsFormat, Utc};
use std::collections::BTreeMap;

/// What the store says, read once per evaluation.
#[derive(Clone, Debug)]
pub struct Readings {
    pub now: DateTime<Utc>,
    /// When alerting began on this store (a flow that never ran has gone without success since then).
    pub watching_since: DateTime<Utc>,
    pub flows: BTreeMap<String, FlowHealth>,
    pub open_failures: BTreeMap<String, u64>,
    /// Rejected webhook deliveries per minute, over the longest window of any rule.
    pub rejections: Vec<Rejections>,
    pub oldest_due_job: Option<WaitingJob>,
}

/// A condition that holds: rule `rule` about `subject` (a flow, a connection, or `""` for the workspace).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finding {
    pub rule: String,
    pub subject: String,
    /// What is wrong, for a person: names the flow, run, connection or job, and the limit.
    pub message: String,
}

/// The findings of every rule.
pub fn evaluate(rules: &[Rule], r: &Readings) -> Vec<Finding> {
    let mut out = Vec::new();
    for rule in rules {
        let mut found = |subject: &str, message: String| out.push(Finding { rule: rule.name.clone(), subject: subject.to_owned(), message });
        match &rule.condition {
            Condition::FlowFailed { flows, statuses } => {
                for flow in flows {
                    let Some(run) = r.flows.get(flow).and_then(|h| h.last_finished.as_ref()) else { continue };
                    if statuses.contains(&run.status) {
                        let at = run.finished_at.unwrap_or(run.started_at);
                        let error = run.error.as_deref().map(|e| format!(": {}", clip(e, 500))).unwrap_or_default();
                        found(flow, format!("flow {flow}: run {} {} at {}{error}", run.id, run.status, stamp(at)));
                    }
                }
            }
            Condition::OpenFailures { flows, above } => {
                let per_flow: Vec<(&String, u64)> = flows.iter().filter_map(|f| r.open_failures.get(f).map(|n| (f, *n))).filter(|(_, n)| *n > 0).collect();
                let total: u64 = per_flow.iter().map(|(_, n)| n).sum();
                if total > *above {
                    let parts: Vec<String> = per_flow.iter().map(|(f, n)| format!("{f} {n}")).collect();
                    found("", format!("{total} open failures ({}), more than {above}: see `ferry failures list`", parts.join(", ")));
                }
            }
            Condition::NoSuccess { flows, period } => {
                for flow in flows {
                    let last = r.flows.get(flow).and_then(|h| h.last_success_at);
                    let since = last.unwrap_or(r.watching_since);
                    let gone = r.now - since;
                    if gone >= *period {
                        let what = match last {
                            Some(t) => format!("flow {flow} has completed no run since {} ({} ago", stamp(t), span(gone)),
                            None => format!("flow {flow} has never completed a run ({} since alerting began", span(gone)),
                        };
                        found(flow, format!("{what}; limit {})", span(*period)));
                    }
                }
            }
            Condition::WebhookRejections { connections, at_least, within } => {
                let since = r.now - *within;
                for connection in connections {
                    let mut codes: BTreeMap<&str, u64> = BTreeMap::new();
                    for x in r.rejections.iter().filter(|x| &x.connection == connection && x.minute >= minute_of(since)) {
                        *codes.entry(x.code.as_str()).or_default() += x.count;
                    }
                    let total: u64 = codes.values().sum();
                    if total >= *at_least {
                        let parts: Vec<String> = codes.iter().map(|(c, n)| format!("{c} {n}")).collect();
                        found(
                            connection,
                            format!(
                                "{total} webhook deliveries to connection {connection} rejected in the last {} ({}); limit {at_least}",
                                span(*within),
                                parts.join(", ")
                            ),
                        );
                    }
                }
            }
            Condition::QueueAge { older_than } => {
                if let Some(job) = &r.oldest_due_job {
                    let waited = r.now - job.run_after;
                    if waited > *older_than {
                        found(
                            "",
                            format!(
                                "job {} (flow {}) has waited {} in the queue, {} job(s) due; limit {}: are the workers running?",
                                job.id,
                                job.flow,
                                span(waited),
                                job.due,
                                span(*older_than)
                            ),
                        );
                    }
                }
            }
        }
    }
    out
}

/// The start of `t`'s minute (rejections are counted per minute).
pub fn minute_of(t: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp(t.timestamp() - t.timestamp().rem_euclid(60), 0).unwrap_or(t)
}

fn stamp(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// `95 min` → `1 h 35 min`; `30 s`.
pub fn span(d: Duration) -> String {
    let s = d.num_seconds().max(0);
    match s {
        0..60 => format!("{s} s"),
        60..3600 => format!("{} min", s / 60),
        _ if s % 3600 / 60 == 0 => format!("{} h", s / 3600),
        _ => format!("{} h {} min", s / 3600, s % 3600 / 60),
    }
}

fn clip(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::alerts::RunBrief;
    use chrono::TimeZone;

    fn t(h: u32, m: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 12, 3, h, m, 0).unwrap()
    }

    fn rule(name: &str, condition: Condition) -> Rule {
        Rule { name: name.into(), condition, channels: vec!["c".into()], cooldown: Duration::minutes(60) }
    }

    fn readings() -> Readings {
        Readings {
            now: t(12, 0),
            watching_since: t(6, 0),
            flows: BTreeMap::new(),
            open_failures: BTreeMap::new(),
            rejections: vec![],
            oldest_due_job: None,
        }
    }

    fn run(id: i64, status: &str, at: DateTime<Utc>) -> RunBrief {
        RunBrief { id, status: status.into(), started_at: at - Duration::minutes(1), finished_at: Some(at), error: Some("endpoint down".into()) }
    }

    #[test]
    fn a_flow_fails_while_its_newest_finished_run_failed() {
        let rules = [rule("failed", Condition::FlowFailed { flows: vec!["orders".into(), "stock".into()], statuses: vec!["aborted".into()] })];
        let mut r = readings();
        r.flows.insert("orders".into(), FlowHealth { last_finished: Some(run(42, "aborted", t(11, 0))), last_success_at: Some(t(10, 0)) });
        r.flows.insert("stock".into(), FlowHealth { last_finished: Some(run(43, "failed_records", t(11, 0))), last_success_at: Some(t(11, 0)) });
        let f = evaluate(&rules, &r);
        assert_eq!(f.len(), 1, "failed_records is not in the statuses: {f:?}");
        assert_eq!(f[0].subject, "orders");
        assert_eq!(f[0].message, "flow orders: run 42 aborted at 2026-12-03T11:00:00Z: endpoint down");
        r.flows.get_mut("orders").unwrap().last_finished = Some(run(44, "ok", t(11, 30)));
        assert!(evaluate(&rules, &r).is_empty(), "a later ok run clears it");
    }

    #[test]
    fn open_failures_count_over_the_rules_flows_only() {
        let rules = [rule("parked", Condition::OpenFailures { flows: vec!["orders".into(), "stock".into()], above: 3 })];
        let mut r = readings();
        r.open_failures = BTreeMap::from([("orders".into(), 2), ("stock".into(), 1), ("products".into(), 50)]);
        assert!(evaluate(&rules, &r).is_empty(), "3 is not above 3");
        r.open_failures.insert("stock".into(), 2);
        let f = evaluate(&rules, &r);
        assert_eq!(f[0].message, "4 open failures (orders 2, stock 2), more than 3: see `ferry failures list`");
        assert_eq!(f[0].subject, "");
    }

    #[test]
    fn no_success_counts_from_the_last_completed_run_or_from_when_watching_began() {
        let rules = [rule("stale", Condition::NoSuccess { flows: vec!["products".into(), "never".into()], period: Duration::hours(3) })];
        let mut r = readings();
        r.flows.insert("products".into(), FlowHealth { last_finished: Some(run(1, "aborted", t(11, 0))), last_success_at: Some(t(8, 30)) });
        let f = evaluate(&rules, &r);
        assert_eq!(f.len(), 2, "{f:?}");
        assert_eq!(f[0].message, "flow products has completed no run since 2026-12-03T08:30:00Z (3 h 30 min ago; limit 3 h)");
        assert_eq!(f[1].message, "flow never has never completed a run (6 h since alerting began; limit 3 h)");
        r.flows.get_mut("products").unwrap().last_success_at = Some(t(9, 1));
        r.watching_since = t(9, 30);
        assert!(evaluate(&rules, &r).is_empty());
    }

    #[test]
    fn rejections_count_within_the_window_per_connection() {
        let rules = [rule("sig", Condition::WebhookRejections { connections: vec!["shop".into()], at_least: 3, within: Duration::minutes(10) })];
        let mut r = readings();
        let x = |minute: DateTime<Utc>, code: &str, count| Rejections { connection: "shop".into(), minute, code: code.into(), count };
        r.rejections = vec![x(t(11, 49), "invalid_signature", 5), x(t(11, 51), "invalid_signature", 1), x(t(11, 58), "stale_timestamp", 1)];
        assert!(evaluate(&rules, &r).is_empty(), "the 11:49 minute is outside the last 10 minutes");
        r.rejections.push(x(t(11, 55), "invalid_signature", 1));
        r.rejections.push(Rejections { connection: "other".into(), minute: t(11, 55), code: "invalid_signature".into(), count: 9 });
        let f = evaluate(&rules, &r);
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].message, "3 webhook deliveries to connection shop rejected in the last 10 min (invalid_signature 2, stale_timestamp 1); limit 3");
    }

    #[test]
    fn a_queue_is_old_when_its_oldest_due_job_waited_too_long() {
        let rules = [rule("backlog", Condition::QueueAge { older_than: Duration::minutes(15) })];
        let mut r = readings();
        r.oldest_due_job = Some(WaitingJob { id: 7, flow: "orders".into(), run_after: t(11, 45), due: 3 });
        assert!(evaluate(&rules, &r).is_empty(), "15 minutes is not older than 15");
        r.oldest_due_job.as_mut().unwrap().run_after = t(11, 40);
        assert_eq!(
            evaluate(&rules, &r)[0].message,
            "job 7 (flow orders) has waited 20 min in the queue, 3 job(s) due; limit 15 min: are the workers running?"
        );
    }

    #[test]
    fn spans_and_minutes_read_well() {
        assert_eq!(span(Duration::seconds(59)), "59 s");
        assert_eq!(span(Duration::minutes(61)), "1 h 1 min");
        assert_eq!(span(Duration::hours(26)), "26 h");
        assert_eq!(minute_of(t(11, 5) + Duration::seconds(42)), t(11, 5));
        assert_eq!(clip("ab€cd", 3), "ab€…");
    }
}
