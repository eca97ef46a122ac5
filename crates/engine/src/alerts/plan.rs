//! From findings and the stored alert state to what must change and what must be sent. Pure.
//!
//! - A finding with no open alert of its rule and subject opens one; an open alert without a finding is
//!   resolved. So a problem that persists stays one alert, however many evaluations see it.
//! - An open alert fires once on each of its rule's channels. Not before the rule's cool-down has passed
//!   since the last "fired" message about the same rule and subject on that channel: a problem that
//!   comes back soon after it cleared waits, and if it clears again meanwhile nothing is sent at all.
//! - A resolved alert sends "resolved" on each channel it fired on, once.
//! - A message that could not be sent is not recorded, so the next evaluation sends it again (a crash
//!   between sending and recording can repeat one message; it never loses one).

use super::{Finding, Rule};
use chrono::{DateTime, Utc};
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// An alert as stored: open (`resolved_at` None) or resolved with messages still owed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AlertState {
    pub id: i64,
    pub rule: String,
    pub subject: String,
    /// The finding's message when the alert opened.
    pub message: String,
    pub opened_at: DateTime<Utc>,
    pub resolved_at: Option<DateTime<Utc>>,
    /// What each channel was told, by channel name.
    pub deliveries: BTreeMap<String, Delivery>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Delivery {
    pub fired_at: Option<DateTime<Utc>>,
    pub resolved_at: Option<DateTime<Utc>>,
}

/// Alerts to open and to resolve.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Changes {
    pub open: Vec<Finding>,
    pub resolve: Vec<i64>,
}

pub fn reconcile(findings: &[Finding], alerts: &[AlertState]) -> Changes {
    let open: BTreeSet<(&str, &str)> = alerts.iter().filter(|a| a.resolved_at.is_none()).map(|a| (a.rule.as_str(), a.subject.as_str())).collect();
    let found: BTreeSet<(&str, &str)> = findings.iter().map(|f| (f.rule.as_str(), f.subject.as_str())).collect();
    let mut seen = BTreeSet::new();
    Changes {
        open: findings
            .iter()
            .filter(|f| !open.contains(&(f.rule.as_str(), f.subject.as_str())) && seen.insert((f.rule.as_str(), f.subject.as_str())))
            .cloned()
            .collect(),
        resolve: alerts.iter().filter(|a| a.resolved_at.is_none() && !found.contains(&(a.rule.as_str(), a.subject.as_str()))).map(|a| a.id).collect(),
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Notice {
    Fired,
    Resolved,
}

/// One message for one channel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    pub alert: i64,
    pub channel: String,
    pub notice: Notice,
    pub rule: String,
    pub subject: String,
    pub message: String,
    pub opened_at: DateTime<Utc>,
    pub resolved_at: Option<DateTime<Utc>>,
}

/// Messages owed now. `channels`: the channels configured; `last_fired`: the newest "fired" message per
/// (rule, subject, channel) within the longest cool-down.
pub fn due_messages(
    rules: &[Rule],
    channels: &BTreeSet<String>,
    alerts: &[AlertState],
    last_fired: &HashMap<(String, String, String), DateTime<Utc>>,
    now: DateTime<Utc>,
) -> Vec<Message> {
    let mut out = Vec::new();
    for a in alerts {
        let message = |channel: &str, notice| Message {
            alert: a.id,
            channel: channel.to_owned(),
            notice,
            rule: a.rule.clone(),
            subject: a.subject.clone(),
            message: a.message.clone(),
            opened_at: a.opened_at,
            resolved_at: a.resolved_at,
        };
        match a.resolved_at {
            None => {
                // An alert of a rule no longer configured is resolved by `reconcile`; until then it sends nothing.
                let Some(rule) = rules.iter().find(|r| r.name == a.rule) else { continue };
                for channel in rule.channels.iter().filter(|c| channels.contains(*c)) {
                    if a.deliveries.get(channel).is_some_and(|d| d.fired_at.is_some()) {
                        continue;
                    }
                    let key = (a.rule.clone(), a.subject.clone(), channel.clone());
                    if last_fired.get(&key).is_some_and(|last| now - *last < rule.cooldown) {
                        continue;
                    }
                    out.push(message(channel, Notice::Fired));
                }
            }
            Some(_) => {
                for (channel, d) in &a.deliveries {
                    if d.fired_at.is_some() && d.resolved_at.is_none() && channels.contains(channel) {
                        out.push(message(channel, Notice::Resolved));
                    }
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alerts::Condition;
    use chrono::{Duration, TimeZone};
    use proptest::prelude::*;

    fn rule(cooldown_min: i64) -> Rule {
        Rule {
            name: "r".into(),
            condition: Condition::QueueAge { older_than: Duration::minutes(1) },
            channels: vec!["mail".into(), "chat".into()],
            cooldown: Duration::minutes(cooldown_min),
        }
    }

    fn finding(subject: &str) -> Finding {
        Finding { rule: "r".into(), subject: subject.into(), message: format!("{subject} is broken") }
    }

    /// The store, as the server drives it: reconcile, then send what is due, recording what got through.
    #[derive(Default)]
    struct Model {
        alerts: Vec<AlertState>,
        sent: Vec<(DateTime<Utc>, Message)>,
    }

    impl Model {
        fn tick(&mut self, rules: &[Rule], findings: &[Finding], now: DateTime<Utc>, delivered: impl Fn(&Message) -> bool) -> Vec<Message> {
            let changes = reconcile(findings, &self.active());
            for f in changes.open {
                let id = self.alerts.len() as i64 + 1;
                self.alerts.push(AlertState {
                    id,
                    rule: f.rule,
                    subject: f.subject,
                    message: f.message,
                    opened_at: now,
                    resolved_at: None,
                    deliveries: BTreeMap::new(),
                });
            }
            for id in changes.resolve {
                self.alerts.iter_mut().find(|a| a.id == id).unwrap().resolved_at = Some(now);
            }
            let max_cooldown = rules.iter().map(|r| r.cooldown).max().unwrap_or_default();
            let mut last: HashMap<(String, String, String), DateTime<Utc>> = HashMap::new();
            for a in &self.alerts {
                for (c, d) in &a.deliveries {
                    if let Some(t) = d.fired_at.filter(|t| *t >= now - max_cooldown) {
                        let e = last.entry((a.rule.clone(), a.subject.clone(), c.clone())).or_insert(t);
                        *e = (*e).max(t);
                    }
                }
            }
            let channels = BTreeSet::from(["mail".to_string(), "chat".to_string()]);
            let due = due_messages(rules, &channels, &self.active(), &last, now);
            for m in &due {
                if !delivered(m) {
                    continue;
                }
                let a = self.alerts.iter_mut().find(|a| a.id == m.alert).unwrap();
                let d = a.deliveries.entry(m.channel.clone()).or_default();
                match m.notice {
                    Notice::Fired => d.fired_at = Some(now),
                    Notice::Resolved => d.resolved_at = Some(now),
                }
                self.sent.push((now, m.clone()));
            }
            due
        }

        fn active(&self) -> Vec<AlertState> {
            self.alerts
                .iter()
                .filter(|a| a.resolved_at.is_none() || a.deliveries.values().any(|d| d.fired_at.is_some() && d.resolved_at.is_none()))
                .cloned()
                .collect()
        }

        fn notices(&self, channel: &str) -> Vec<(i64, Notice)> {
            self.sent.iter().filter(|(_, m)| m.channel == channel).map(|(t, m)| (t.timestamp() / 60 - T0 / 60, m.notice)).collect()
        }
    }

    /// A whole minute (1.8e9 s is divisible by 60).
    const T0: i64 = 1_800_000_000;

    fn at(minute: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(T0 + minute * 60, 0).unwrap()
    }

    #[test]
    fn one_problem_one_message_then_resolved() {
        let rules = [rule(60)];
        let mut m = Model::default();
        for minute in 0..10 {
            m.tick(&rules, &[finding("orders")], at(minute), |_| true);
        }
        m.tick(&rules, &[], at(10), |_| true);
        m.tick(&rules, &[], at(11), |_| true);
        assert_eq!(m.notices("mail"), [(0, Notice::Fired), (10, Notice::Resolved)]);
        assert_eq!(m.notices("chat"), [(0, Notice::Fired), (10, Notice::Resolved)]);
        assert_eq!(m.alerts.len(), 1);
    }

    #[test]
    fn a_problem_back_within_the_cooldown_waits_and_one_that_clears_meanwhile_sends_nothing() {
        let rules = [rule(30)];
        let mut m = Model::default();
        m.tick(&rules, &[finding("orders")], at(0), |_| true);
        m.tick(&rules, &[], at(5), |_| true);
        // back at 10: held back (cool-down until 30); clears at 20: nothing sent about it
        m.tick(&rules, &[finding("orders")], at(10), |_| true);
        m.tick(&rules, &[], at(20), |_| true);
        // back at 25: still held until 30, then fires
        m.tick(&rules, &[finding("orders")], at(25), |_| true);
        m.tick(&rules, &[finding("orders")], at(29), |_| true);
        m.tick(&rules, &[finding("orders")], at(30), |_| true);
        m.tick(&rules, &[], at(31), |_| true);
        assert_eq!(m.notices("mail"), [(0, Notice::Fired), (5, Notice::Resolved), (30, Notice::Fired), (31, Notice::Resolved)]);
        // another subject of the same rule has its own cool-down
        m.tick(&rules, &[finding("stock")], at(32), |_| true);
        assert_eq!(m.notices("chat").last(), Some(&(32, Notice::Fired)));
    }

    #[test]
    fn a_failed_delivery_is_sent_again_on_that_channel_only() {
        let rules = [rule(60)];
        let mut m = Model::default();
        m.tick(&rules, &[finding("orders")], at(0), |msg| msg.channel == "mail");
        m.tick(&rules, &[finding("orders")], at(1), |_| true);
        m.tick(&rules, &[finding("orders")], at(2), |_| true);
        assert_eq!(m.notices("mail"), [(0, Notice::Fired)]);
        assert_eq!(m.notices("chat"), [(1, Notice::Fired)]);
        // resolved while chat is down: mail is told once, chat when it is back
        m.tick(&rules, &[], at(3), |msg| msg.channel == "mail");
        m.tick(&rules, &[], at(4), |_| true);
        m.tick(&rules, &[], at(5), |_| true);
        assert_eq!(m.notices("mail"), [(0, Notice::Fired), (3, Notice::Resolved)]);
        assert_eq!(m.notices("chat"), [(1, Notice::Fired), (4, Notice::Resolved)]);
    }

    #[test]
    fn an_alert_of_a_removed_rule_is_resolved_and_says_so_where_it_fired() {
        let mut m = Model::default();
        m.tick(&[rule(60)], &[finding("orders")], at(0), |_| true);
        m.tick(&[], &[], at(1), |_| true);
        assert_eq!(m.notices("mail"), [(0, Notice::Fired), (1, Notice::Resolved)]);
        assert!(m.active().is_empty());
    }

    proptest! {
        /// Whatever the condition does minute by minute and whichever deliveries fail: on each channel,
        /// "fired" and "resolved" alternate starting with "fired"; two "fired" are at least the cool-down
        /// apart; a condition that holds for a whole cool-down once it could fire is reported; and once it
        /// has cleared for good and deliveries work, every "fired" has its "resolved".
        #[test]
        fn messages_alternate_respect_the_cooldown_and_end_resolved(
            holds in proptest::collection::vec(any::<bool>(), 1..120),
            failing in proptest::collection::vec(any::<bool>(), 120),
            cooldown in 1i64..40,
        ) {
            let rules = [rule(cooldown)];
            let mut m = Model::default();
            let n = holds.len() as i64;
            for (minute, on) in holds.iter().enumerate() {
                let findings = if *on { vec![finding("orders")] } else { vec![] };
                let fail = failing[minute];
                m.tick(&rules, &findings, at(minute as i64), |msg| !(fail && msg.channel == "chat"));
            }
            for minute in n..n + 3 {
                m.tick(&rules, &[], at(minute), |_| true);
            }
            for channel in ["mail", "chat"] {
                let notices = m.notices(channel);
                let mut expect = Notice::Fired;
                let mut last_fired: Option<i64> = None;
                for (minute, notice) in &notices {
                    prop_assert_eq!(*notice, expect, "{} {:?}", channel, notices);
                    expect = if expect == Notice::Fired { Notice::Resolved } else { Notice::Fired };
                    if *notice == Notice::Fired {
                        if let Some(prev) = last_fired {
                            prop_assert!(minute - prev >= cooldown, "{} fired at {} and {} (cool-down {}): {:?}", channel, prev, minute, cooldown, notices);
                        }
                        last_fired = Some(*minute);
                    }
                }
                prop_assert_eq!(expect, Notice::Fired, "every fired message was resolved: {:?}", notices);
            }
            // mail never fails: a condition holding from minute 0 fires at once
            if holds[0] {
                prop_assert_eq!(m.notices("mail").first().copied(), Some((0, Notice::Fired)));
            }
            // mail never fails: at any minute the condition has held since a cool-down ago, the last message
            // mail got says it fired (a problem that lasts is always reported, at the latest after the cool-down)
            let mail = m.notices("mail");
            for t in cooldown..n {
                if (t - cooldown..=t).all(|i| holds[i as usize]) {
                    let last = mail.iter().rfind(|(at, _)| *at <= t).map(|(_, x)| *x);
                    prop_assert_eq!(last, Some(Notice::Fired), "minute {}: {:?} {:?}", t, holds, mail);
                }
            }
        }
    }
}
