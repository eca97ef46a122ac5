//! The business's calendar: instants (UTC) become dates on its wall clock (`timezone` option, else
//! `[defaults] timezone`, else UTC). An order placed at 23:30 in Sydney belongs to that Sydney day, not
//! to the UTC day (13:30Z, or 12:30Z in daylight saving time).

use chrono::{DateTime, NaiveDate, Utc};
use chrono_tz::Tz;

/// The connection's time zone from its option or the config's default; `None` means UTC.
pub(crate) fn parse_timezone(name: Option<&str>) -> Result<Tz, String> {
    match name {
        None => Ok(Tz::UTC),
        Some(n) => n.parse::<Tz>().map_err(|_| format!("timezone: {n:?} is not an IANA time zone (e.g. Australia/Sydney)")),
    }
}

/// The date `t` falls on in `tz`.
pub(crate) fn local_date(t: DateTime<Utc>, tz: Tz) -> NaiveDate {
    t.with_timezone(&tz).date_naive()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn sydney() -> Tz {
        parse_timezone(Some("Australia/Sydney")).unwrap()
    }
    fn utc(y: i32, m: u32, d: u32, h: u32, min: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, m, d, h, min, 0).unwrap()
    }
    fn day(y: i32, m: u32, d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, d).unwrap()
    }

    /// 23:30 and 00:30 local on both sides of Sydney's DST changes: daylight saving ends 5 April 2026
    /// 03:00 AEDT (+11 → +10) and starts 4 October 2026 02:00 AEST (+10 → +11).
    #[test]
    fn sydney_dates_around_daylight_saving_changes() {
        let tz = sydney();
        let cases = [
            // 4 April, still AEDT (+11): 23:30 local is 12:30Z; 00:30 on 5 April is 13:30Z
            (utc(2026, 4, 4, 12, 30), day(2026, 4, 4)),
            (utc(2026, 4, 4, 13, 30), day(2026, 4, 5)),
            // 5 April, AEST (+10) from 03:00: 23:30 local is 13:30Z; 00:30 on 6 April is 14:30Z
            (utc(2026, 4, 5, 13, 30), day(2026, 4, 5)),
            (utc(2026, 4, 5, 14, 30), day(2026, 4, 6)),
            // 3 October, AEST (+10): 23:30 local is 13:30Z; 00:30 on 4 October is 14:30Z
            (utc(2026, 10, 3, 13, 30), day(2026, 10, 3)),
            (utc(2026, 10, 3, 14, 30), day(2026, 10, 4)),
            // 4 October, AEDT (+11) from 02:00: 23:30 local is 12:30Z; 00:30 on 5 October is 13:30Z
            (utc(2026, 10, 4, 12, 30), day(2026, 10, 4)),
            (utc(2026, 10, 4, 13, 30), day(2026, 10, 5)),
        ];
        for (t, expected) in cases {
            assert_eq!(local_date(t, tz), expected, "{t}");
            // the UTC date is the wrong day for every order placed after 00:00 local and before 10/11:00
            if t.date_naive() != expected {
                assert_eq!(t.date_naive() + chrono::Duration::days(1), expected);
            }
        }
    }

    #[test]
    fn no_timezone_is_utc_and_a_bad_one_is_named() {
        assert_eq!(local_date(utc(2026, 4, 4, 13, 30), parse_timezone(None).unwrap()), day(2026, 4, 4));
        assert!(parse_timezone(Some("Sydney")).unwrap_err().contains("\"Sydney\""));
    }
}
