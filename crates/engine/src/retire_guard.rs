//! The guards in front of retiring records that a complete read no longer has (`on_missing`).
//!
//! A truncated or empty export looks exactly like "everything was deleted at the source". So:
//! - a complete read that produced no item at all (an empty file, a header-only CSV) retires nothing and
//!   stops the run with an error naming the source, unless the run says `--allow-empty-source`;
//! - no run retires more than `max_retire_share` (default 0.5) of the records live in the target, whatever
//!   their number (one record of one is 100 %), unless `--force-retire`.

use crate::connector::RetireMode;

/// `max_retire_share` when the flow does not set it.
pub const DEFAULT_SHARE: f64 = 0.5;

#[derive(Clone, Copy, Debug)]
pub struct RetireGuard {
    /// Largest share of the live records one run may retire (0.0–1.0).
    pub share: f64,
    /// `--force-retire`: the share does not apply.
    pub force: bool,
    /// `--allow-empty-source`: a read without a single item may retire.
    pub allow_empty_source: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Retire,
    /// The read found nothing at all: an error, not a mass retirement.
    EmptySource,
    /// More than the share would go; `limit` is the most the share allows.
    TooMany { limit: u64 },
}

impl RetireGuard {
    /// May `missing` of `live` records be retired after a complete read that produced `read` items?
    pub fn check(&self, read: u64, missing: u64, live: u64) -> Verdict {
        if missing == 0 {
            return Verdict::Retire;
        }
        if read == 0 && !self.allow_empty_source {
            return Verdict::EmptySource;
        }
        let limit = self.limit(live);
        if !self.force && missing > limit { Verdict::TooMany { limit } } else { Verdict::Retire }
    }

    /// The most records of `live` one run may retire under the share.
    pub fn limit(&self, live: u64) -> u64 {
        let share = if self.share.is_finite() { self.share.clamp(0.0, 1.0) } else { DEFAULT_SHARE };
        (share * live as f64).floor() as u64
    }
}

/// What a parked retire failure keeps: enough to retire the record again (`ferry failures retry`).
pub fn retire_payload(key: &str, target_id: Option<&str>, mode: RetireMode) -> serde_json::Value {
    serde_json::json!({"retire": {"key": key, "target_id": target_id, "mode": mode}})
}

#[cfg(test)]
mod tests {
    use super::*;

    const GUARD: RetireGuard = RetireGuard { share: 0.5, force: false, allow_empty_source: false };

    #[test]
    fn the_share_holds_for_small_catalogues_too() {
        // The defect: 10 of 10 customers deleted because the guard only acted above 10 missing records.
        assert_eq!(GUARD.check(1, 10, 10), Verdict::TooMany { limit: 5 });
        assert_eq!(GUARD.check(9, 1, 10), Verdict::Retire);
        assert_eq!(GUARD.check(5, 5, 10), Verdict::Retire);
        assert_eq!(GUARD.check(4, 6, 10), Verdict::TooMany { limit: 5 });
        assert_eq!(GUARD.check(1, 1, 1), Verdict::TooMany { limit: 0 }, "the last record is 100 %");
        assert_eq!(RetireGuard { force: true, ..GUARD }.check(1, 10, 10), Verdict::Retire);
    }

    #[test]
    fn an_empty_read_retires_nothing_unless_allowed() {
        assert_eq!(GUARD.check(0, 10, 10), Verdict::EmptySource);
        assert_eq!(RetireGuard { force: true, ..GUARD }.check(0, 10, 10), Verdict::EmptySource, "--force-retire is not enough");
        let allowed = RetireGuard { allow_empty_source: true, force: true, ..GUARD };
        assert_eq!(allowed.check(0, 10, 10), Verdict::Retire);
        assert_eq!(GUARD.check(0, 0, 10), Verdict::Retire, "nothing missing, nothing to guard");
    }

    #[test]
    fn odd_shares_are_clamped() {
        assert_eq!(RetireGuard { share: 7.0, ..GUARD }.limit(10), 10);
        assert_eq!(RetireGuard { share: -1.0, ..GUARD }.limit(10), 0);
        assert_eq!(RetireGuard { share: f64::NAN, ..GUARD }.limit(10), 5);
    }
}
