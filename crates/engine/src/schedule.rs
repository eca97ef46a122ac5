//! Flow schedules: cron expressions evaluated on the business's wall clock (`schedule_timezone`, an IANA
//! name such as `Australia/Sydney`; default UTC), and a [`Clock`] so tests control time.
//!
//! Daylight saving, as cron users expect it: firings are found on the wall clock (the cron expression is
//! evaluated on local date-times, which never skip or repeat), then placed on the timeline:
//! - a local time that happens twice (autumn fall-back): a schedule that fires every hour (hour field
//!   `*`: hourly, every 15 minutes…) fires in both copies of the repeated hour, since it means "every
//!   hour"; one that names its hours (daily at 02:30, every 2 hours…) fires once, at the first copy, since
//!   "02:30" means once per local day;
//! - a local time that does not exist (spring forward) fires at the first valid instant after the gap
//!   (02:30 on a day that jumps from 02:00 to 03:00 fires at 03:00; an every-15-minutes schedule fires
//!   once at 03:00 for the four firings the gap swallowed).
//!
//! `ferry schedule FLOW` and `GET /api/v1/flows/{flow}/schedule` list the next firings.

use chrono::{DateTime, Duration, LocalResult, NaiveDateTime, TimeZone, Utc};
use cron::TimeUnitSpec;
use chrono_tz::Tz;
use std::str::FromStr;
use std::sync::Mutex;

/// Where "now" comes from.
pub trait Clock: Send + Sync {
    fn now(&self) -> DateTime<Utc>;
}

pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// A clock tests set and advance.
pub struct ManualClock(Mutex<DateTime<Utc>>);

impl ManualClock {
    pub fn new(at: DateTime<Utc>) -> Self {
        ManualClock(Mutex::new(at))
    }
    pub fn set(&self, at: DateTime<Utc>) {
        *self.0.lock().expect("clock lock") = at;
    }
    pub fn advance(&self, by: Duration) {
        *self.0.lock().expect("clock lock") += by;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        *self.0.lock().expect("clock lock")
    }
}

/// A parsed `schedule` + `schedule_timezone`.
#[derive(Clone, Debug)]
pub struct CronSchedule {
    expr: String,
    schedule: cron::Schedule,
    tz: Tz,
    /// Fires in every hour of the day: then both copies of a repeated hour fire.
    every_hour: bool,
}

impl CronSchedule {
    /// Accepts the usual 5 fields (`min hour day month weekday`) or the `cron` crate's 6–7 fields with
    /// seconds (and year). Errors name the expression or time zone.
    pub fn parse(expr: &str, timezone: Option<&str>) -> Result<CronSchedule, String> {
        let fields: Vec<&str> = expr.split_whitespace().collect();
        let full = if fields.len() == 5 {
            format!("0 {} {}", fields[..4].join(" "), unix_weekdays(fields[4]))
        } else {
            expr.to_owned()
        };
        let schedule = cron::Schedule::from_str(&full).map_err(|e| format!("schedule {expr:?}: {e}"))?;
        let tz = match timezone {
            None => Tz::UTC,
            Some(name) => Tz::from_str(name).map_err(|_| format!("schedule_timezone {name:?}: not an IANA time zone name (e.g. Australia/Sydney)"))?,
        };
        let every_hour = (0..24).all(|h| schedule.hours().includes(h));
        Ok(CronSchedule { expr: expr.to_owned(), schedule, tz, every_hour })
    }

    pub fn expr(&self) -> &str {
        &self.expr
    }

    pub fn timezone(&self) -> Tz {
        self.tz
    }

    /// The instants a local wall-clock time happens at (see the module doc for the two DST cases), the
    /// earliest first.
    fn place(&self, local: NaiveDateTime) -> Vec<DateTime<Utc>> {
        match self.tz.from_local_datetime(&local) {
            LocalResult::Single(t) => vec![t.with_timezone(&Utc)],
            LocalResult::Ambiguous(first, second) if self.every_hour => vec![first.with_timezone(&Utc), second.with_timezone(&Utc)],
            LocalResult::Ambiguous(first, _) => vec![first.with_timezone(&Utc)],
            LocalResult::None => {
                // In a gap: the first local minute that exists is the instant the clocks jumped.
                (1..=24 * 60)
                    .find_map(|m| match self.tz.from_local_datetime(&(local + Duration::minutes(m))) {
                        LocalResult::None => None,
                        r => r.earliest().map(|t| t.with_timezone(&Utc)),
                    })
                    .into_iter()
                    .collect()
            }
        }
    }

    /// The first firing strictly after `after`.
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        // Walk the wall clock as if it were UTC (no gaps, no repeats), from a little before `after`'s local
        // time (it may lie in a repeated hour), and place each candidate on the timeline. A candidate's
        // earliest instant grows with it, but the second copy of a repeated hour comes after later
        // candidates' first copies: keep the smallest instant after `after` until a candidate starts
        // beyond it.
        let local = after.with_timezone(&self.tz).naive_local() - Duration::hours(3);
        let start = Utc.from_utc_datetime(&local);
        let mut best: Option<DateTime<Utc>> = None;
        for candidate in self.schedule.after(&start).take(10_000) {
            let placed = self.place(candidate.naive_utc());
            if let (Some(earliest), Some(b)) = (placed.first(), best)
                && *earliest > b
            {
                break;
            }
            for t in placed.into_iter().filter(|t| *t > after) {
                if best.is_none_or(|b| t < b) {
                    best = Some(t);
                }
            }
        }
        best
    }

    /// The next `count` firings after `after`.
    pub fn upcoming(&self, after: DateTime<Utc>, count: usize) -> Vec<DateTime<Utc>> {
        let mut out = Vec::with_capacity(count.min(1000));
        let mut t = after;
        while out.len() < count {
            let Some(next) = self.next_after(t) else { break };
            out.push(next);
            t = next;
        }
        out
    }

    /// A firing as the business and as UTC see it.
    pub fn firing(&self, at: DateTime<Utc>) -> Firing {
        let local = at.with_timezone(&self.tz);
        Firing {
            local: local.to_rfc3339_opts(chrono::SecondsFormat::Secs, false),
            zone: local.format("%Z").to_string(),
            utc: at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        }
    }

    /// `--from` / `?from=`: an RFC 3339 instant (`2026-04-05T00:00:00Z`), or a local date-time
    /// (`2026-04-05T00:00`, `2026-04-05 00:00:00`) or date (`2026-04-05`, its midnight) in the schedule's
    /// time zone.
    pub fn parse_instant(&self, text: &str) -> Result<DateTime<Utc>, String> {
        let text = text.trim();
        if let Ok(t) = DateTime::parse_from_rfc3339(text) {
            return Ok(t.with_timezone(&Utc));
        }
        let local = ["%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M"]
            .iter()
            .find_map(|f| NaiveDateTime::parse_from_str(text, f).ok())
            .or_else(|| chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d").ok().and_then(|d| d.and_hms_opt(0, 0, 0)))
            .ok_or_else(|| format!("{text:?} is not a time: use RFC 3339 (2026-04-05T00:00:00Z) or a local 2026-04-05T00:00"))?;
        // Just before the local time, so a firing at exactly that time is listed.
        self.place(local).first().map(|t| *t - Duration::seconds(1)).ok_or_else(|| format!("{text:?} cannot be placed in {}", self.tz))
    }
}

/// One firing of a schedule, for `ferry schedule` and the API.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Firing {
    /// Local time with its offset (`2026-04-05T02:00:00+10:00`).
    pub local: String,
    /// The zone's abbreviation then (`AEST`).
    pub zone: String,
    pub utc: String,
}

impl CronSchedule {

    /// The latest firing in `(after, until]`, if any: a scheduler that was down for several firings
    /// enqueues one sync, not a burst (each reads from the checkpoint and catches everything up).
    pub fn latest_in(&self, after: DateTime<Utc>, until: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let mut last = None;
        let mut t = after;
        while let Some(next) = self.next_after(t) {
            if next > until {
                break;
            }
            last = Some(next);
            t = next;
        }
        last
    }
}

/// Standard cron counts weekdays 0–7 from Sunday (0 and 7 both Sunday); the `cron` crate counts 1–7
/// from Sunday. Numbers in a 5-field expression's weekday field become names, which both read alike
/// (`1-5` → `MON-FRI`); step values (`*/2`) stay numbers.
fn unix_weekdays(field: &str) -> String {
    const NAMES: [&str; 8] = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT", "SUN"];
    let mut out = String::new();
    let mut digits = String::new();
    let mut after_slash = false;
    let flush = |digits: &mut String, out: &mut String, after_slash: bool| {
        if !digits.is_empty() {
            match digits.parse::<usize>().ok().filter(|_| !after_slash).and_then(|n| NAMES.get(n)) {
                Some(name) => out.push_str(name),
                None => out.push_str(digits),
            }
            digits.clear();
        }
    };
    for c in field.chars() {
        if c.is_ascii_digit() {
            digits.push(c);
        } else {
            flush(&mut digits, &mut out, after_slash);
            after_slash = c == '/';
            out.push(c);
        }
    }
    flush(&mut digits, &mut out, after_slash);
    out
}

/// The dedupe key of one firing: the same firing is enqueued once, whoever enqueues it.
pub fn firing_key(flow: &str, at: DateTime<Utc>) -> String {
    format!("{}{}", firing_prefix(flow), at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
}

pub fn firing_prefix(flow: &str) -> String {
    format!("schedule:{flow}:")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn firings(s: &CronSchedule, from: &str, n: usize) -> Vec<String> {
        let mut t = utc(from);
        (0..n)
            .map(|_| {
                t = s.next_after(t).unwrap();
                t.with_timezone(&s.tz).to_rfc3339()
            })
            .collect()
    }

    #[test]
    fn five_field_expressions_in_a_time_zone() {
        let s = CronSchedule::parse("30 9 * * 1-5", Some("Australia/Sydney")).unwrap();
        // Friday 2026-01-09 09:30 AEDT (UTC+11), then Monday.
        assert_eq!(firings(&s, "2026-01-08T22:00:00Z", 2), ["2026-01-09T09:30:00+11:00", "2026-01-12T09:30:00+11:00"]);
    }

    #[test]
    fn unix_weekday_numbers_mean_what_crontab_means() {
        assert_eq!(unix_weekdays("1-5"), "MON-FRI");
        assert_eq!(unix_weekdays("0,6"), "SUN,SAT");
        assert_eq!(unix_weekdays("7"), "SUN");
        assert_eq!(unix_weekdays("*/2"), "*/2");
        assert_eq!(unix_weekdays("1-5/2"), "MON-FRI/2");
        let sunday = CronSchedule::parse("0 8 * * 0", None).unwrap();
        assert_eq!(firings(&sunday, "2026-01-01T00:00:00Z", 1), ["2026-01-04T08:00:00+00:00"]);
    }

    #[test]
    fn names_a_bad_expression_or_zone() {
        assert!(CronSchedule::parse("61 * * * *", None).unwrap_err().contains("\"61 * * * *\""));
        assert!(CronSchedule::parse("0 * * * *", Some("Mars/Olympus")).unwrap_err().contains("Mars/Olympus"));
    }

    #[test]
    fn spring_forward_runs_a_daily_job_once_right_after_the_gap() {
        // Sydney 2026-10-04: 02:00 AEST jumps to 03:00 AEDT; 02:30 does not exist that day.
        let s = CronSchedule::parse("30 2 * * *", Some("Australia/Sydney")).unwrap();
        assert_eq!(
            firings(&s, "2026-10-02T12:00:00Z", 3),
            ["2026-10-03T02:30:00+10:00", "2026-10-04T03:00:00+11:00", "2026-10-05T02:30:00+11:00"]
        );
    }

    #[test]
    fn fall_back_runs_a_daily_job_once_not_twice() {
        // Sydney 2026-04-05: 03:00 AEDT falls back to 02:00 AEST; 02:30 happens twice.
        let s = CronSchedule::parse("30 2 * * *", Some("Australia/Sydney")).unwrap();
        let got = firings(&s, "2026-04-03T12:00:00Z", 3);
        assert_eq!(got, ["2026-04-04T02:30:00+11:00", "2026-04-05T02:30:00+11:00", "2026-04-06T02:30:00+10:00"]);
        // 24 h between the first two on the wall clock, 25 h on the timeline across the change.
        let gap = utc(&got[2]) - utc(&got[1]);
        assert_eq!(gap, Duration::hours(25));
    }

    fn utc_firings(s: &CronSchedule, from: &str, n: usize) -> Vec<String> {
        s.upcoming(utc(from), n).into_iter().map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)).collect()
    }

    #[test]
    fn hourly_fires_in_both_copies_of_the_repeated_hour() {
        // Sydney 2026-04-05 (local; 2026-04-04 in UTC): 03:00 AEDT (UTC+11) falls back to 02:00 AEST
        // (UTC+10). It fired 14:00Z, 15:00Z, 17:00Z, skipping the second 02:00.
        let s = CronSchedule::parse("0 * * * *", Some("Australia/Sydney")).unwrap();
        assert_eq!(utc_firings(&s, "2026-04-04T13:30:00Z", 4), ["2026-04-04T14:00:00Z", "2026-04-04T15:00:00Z", "2026-04-04T16:00:00Z", "2026-04-04T17:00:00Z"]);
        assert_eq!(
            firings(&s, "2026-04-04T14:30:00Z", 3),
            ["2026-04-05T02:00:00+11:00", "2026-04-05T02:00:00+10:00", "2026-04-05T03:00:00+10:00"]
        );
        // Finer than hourly: every quarter of both copies, in timeline order.
        let q = CronSchedule::parse("*/30 * * * *", Some("Australia/Sydney")).unwrap();
        assert_eq!(
            utc_firings(&q, "2026-04-04T14:45:00Z", 5),
            ["2026-04-04T15:00:00Z", "2026-04-04T15:30:00Z", "2026-04-04T16:00:00Z", "2026-04-04T16:30:00Z", "2026-04-04T17:00:00Z"]
        );
        // Europe too: Berlin 2026-10-25, 03:00 CEST falls back to 02:00 CET.
        let b = CronSchedule::parse("0 * * * *", Some("Europe/Berlin")).unwrap();
        assert_eq!(
            firings(&b, "2026-10-24T23:30:00Z", 3),
            ["2026-10-25T02:00:00+02:00", "2026-10-25T02:00:00+01:00", "2026-10-25T03:00:00+01:00"]
        );
    }

    #[test]
    fn a_schedule_naming_its_hours_fires_once_in_the_repeated_hour() {
        // Every two hours names hours: 02:00 is one firing, at its first copy.
        let s = CronSchedule::parse("0 */2 * * *", Some("Australia/Sydney")).unwrap();
        assert_eq!(utc_firings(&s, "2026-04-04T12:30:00Z", 3), ["2026-04-04T13:00:00Z", "2026-04-04T15:00:00Z", "2026-04-04T18:00:00Z"]);
    }

    #[test]
    fn hourly_across_spring_forward_fires_at_the_first_valid_instant() {
        // Sydney 2026-10-04: 02:00 AEST (UTC+10) jumps to 03:00 AEDT (UTC+11); 02:00 does not exist.
        let s = CronSchedule::parse("0 * * * *", Some("Australia/Sydney")).unwrap();
        assert_eq!(utc_firings(&s, "2026-10-03T14:30:00Z", 3), ["2026-10-03T15:00:00Z", "2026-10-03T16:00:00Z", "2026-10-03T17:00:00Z"]);
        assert_eq!(
            firings(&s, "2026-10-03T14:30:00Z", 3),
            ["2026-10-04T01:00:00+10:00", "2026-10-04T03:00:00+11:00", "2026-10-04T04:00:00+11:00"]
        );
        // Every 15 minutes: the gap's four firings become one at 03:00 AEDT, then on as usual.
        let q = CronSchedule::parse("*/15 * * * *", Some("Australia/Sydney")).unwrap();
        assert_eq!(
            firings(&q, "2026-10-03T15:40:00Z", 3),
            ["2026-10-04T01:45:00+10:00", "2026-10-04T03:00:00+11:00", "2026-10-04T03:15:00+11:00"]
        );
    }

    #[test]
    fn from_times_are_rfc3339_or_local_and_firings_show_both_clocks() {
        let s = CronSchedule::parse("0 * * * *", Some("Australia/Sydney")).unwrap();
        assert_eq!(s.parse_instant("2026-04-05T14:00:00Z").unwrap(), utc("2026-04-05T14:00:00Z"));
        // Local midnight in Sydney (AEDT), a firing at exactly that time included.
        let from = s.parse_instant("2026-04-05").unwrap();
        assert_eq!(utc_firings(&s, &from.to_rfc3339(), 1), ["2026-04-04T13:00:00Z"]);
        assert!(s.parse_instant("next tuesday").unwrap_err().contains("not a time"));
        let f = s.firing(utc("2026-04-04T16:00:00Z"));
        assert_eq!((f.local.as_str(), f.zone.as_str(), f.utc.as_str()), ("2026-04-05T02:00:00+10:00", "AEST", "2026-04-04T16:00:00Z"));
    }

    #[test]
    fn latest_in_coalesces_missed_firings() {
        let s = CronSchedule::parse("*/15 * * * *", None).unwrap();
        assert_eq!(s.latest_in(utc("2026-01-01T10:00:00Z"), utc("2026-01-01T11:07:00Z")), Some(utc("2026-01-01T11:00:00Z")));
        assert_eq!(s.latest_in(utc("2026-01-01T10:00:00Z"), utc("2026-01-01T10:14:59Z")), None);
        // The bound is inclusive: a firing exactly at `until` is due.
        assert_eq!(s.latest_in(utc("2026-01-01T10:00:00Z"), utc("2026-01-01T10:15:00Z")), Some(utc("2026-01-01T10:15:00Z")));
    }

    #[test]
    fn manual_clock_moves_only_when_told() {
        let c = ManualClock::new(utc("2026-01-01T00:00:00Z"));
        c.advance(Duration::minutes(90));
        assert_eq!(c.now(), utc("2026-01-01T01:30:00Z"));
    }
}
