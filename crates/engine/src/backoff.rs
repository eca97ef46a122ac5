//! Exponential backoff with jitter, for transient failures (a whole batch call, or one parked record).

use rand::Rng;
use std::time::Duration;

#[derive(Clone, Copy, Debug)]
pub struct Backoff {
    pub base: Duration,
    pub max: Duration,
}

impl Backoff {
    /// In-run retries of a failed batch call: 0.5 s, 1 s, 2 s … up to 30 s.
    pub const BATCH: Backoff = Backoff { base: Duration::from_millis(500), max: Duration::from_secs(30) };
    /// Parked records: 1 min, 2 min, 4 min … up to 6 h between attempts.
    pub const PARKED: Backoff = Backoff { base: Duration::from_secs(60), max: Duration::from_secs(6 * 3600) };

    /// Delay before attempt `attempt + 1` (attempt counts from 1): base·2^(attempt−1), capped, then
    /// "equal jitter" (half fixed, half random) so many failed records do not retry in lock-step.
    pub fn delay(&self, attempt: u32) -> Duration {
        let exp = self.base.saturating_mul(1u32.checked_shl(attempt.saturating_sub(1).min(20)).unwrap_or(u32::MAX));
        let capped = exp.min(self.max);
        let half = capped / 2;
        half + rand::rng().random_range(Duration::ZERO..=half)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_then_caps_and_stays_within_jitter_bounds() {
        let b = Backoff { base: Duration::from_secs(1), max: Duration::from_secs(10) };
        for attempt in 1..40 {
            let nominal = Duration::from_secs(1u64 << (attempt - 1).min(20)).min(Duration::from_secs(10));
            let d = b.delay(attempt);
            assert!(d >= nominal / 2 && d <= nominal, "attempt {attempt}: {d:?} vs {nominal:?}");
        }
    }
}
