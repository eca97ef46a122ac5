//! Counts of batches that changed nothing, carried into a later commit instead of a commit of their own.
//!
//! An unchanged re-sync of 100,000 records is 100 batches whose commit is only "+1,000 read, +1,000
//! unchanged" for the run's row. On SQLite such a commit is cheap; on PostgreSQL it is a transaction of
//! several round trips, and those were most of an unchanged re-sync's time. The counts are what a person
//! watches while a run goes (`ferry status`, the dashboard), so they are still committed at least every
//! [`CarriedCounts::MAX_AGE`], and all of them with the run's last commit. A run killed in between loses up
//! to that much of its counters, never any state (cross-references, hashes, checkpoints and failures are
//! never carried: a commit holding any of them is made at once).

use std::time::{Duration, Instant};

use crate::store::{BatchCommit, Counts};

#[derive(Debug, Default)]
pub(crate) struct CarriedCounts {
    counts: Counts,
    /// When the oldest carried count was taken.
    since: Option<Instant>,
}

impl CarriedCounts {
    /// The longest a count waits for a commit.
    pub const MAX_AGE: Duration = Duration::from_secs(1);

    /// What to commit now for a batch that produced `commit` (`None`: nothing, e.g. a dry run): a commit of
    /// counts only is carried while the oldest carried count is younger than [`Self::MAX_AGE`]; any other
    /// commit takes the carried counts along.
    pub fn hold(&mut self, commit: Option<BatchCommit>, now: Instant) -> Option<BatchCommit> {
        let mut commit = commit?;
        if only_counts(&commit) && self.since.is_none_or(|since| now.duration_since(since) < Self::MAX_AGE) {
            self.counts.add(&commit.counts);
            self.since.get_or_insert(now);
            return None;
        }
        commit.counts.add(&self.take());
        Some(commit)
    }

    /// The run's last commit: `commit` with every carried count, or the carried counts alone.
    pub fn release(&mut self, commit: Option<BatchCommit>) -> Option<BatchCommit> {
        let carried = self.take();
        match commit {
            Some(mut c) => {
                c.counts.add(&carried);
                Some(c)
            }
            None if carried != Counts::default() => Some(BatchCommit { counts: carried, ..BatchCommit::default() }),
            None => None,
        }
    }

    fn take(&mut self) -> Counts {
        self.since = None;
        std::mem::take(&mut self.counts)
    }
}

fn only_counts(c: &BatchCommit) -> bool {
    c.synced.is_empty() && c.resolved.is_empty() && c.failed.is_empty() && c.forgotten.is_empty() && c.outcomes.is_empty() && c.checkpoint.is_none()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Synced;

    fn unchanged(n: u64) -> BatchCommit {
        BatchCommit { counts: Counts { read: n, unchanged: n, ..Counts::default() }, ..BatchCommit::default() }
    }

    #[test]
    fn counts_only_batches_are_carried_into_the_next_real_commit() {
        let mut carried = CarriedCounts::default();
        let t0 = Instant::now();
        assert!(carried.hold(Some(unchanged(1000)), t0).is_none());
        assert!(carried.hold(Some(unchanged(1000)), t0 + Duration::from_millis(10)).is_none());
        let mut changed = unchanged(1);
        changed.synced.push(Synced { key: "A".into(), target_id: "1".into(), hash: "h".into(), payload: "{}".into(), source_hash: None });
        let commit = carried.hold(Some(changed), t0 + Duration::from_millis(20)).expect("a commit with state is made at once");
        assert_eq!(commit.counts.read, 2001);
        assert_eq!(commit.synced.len(), 1);
        assert!(carried.release(None).is_none(), "nothing left to carry");
    }

    #[test]
    fn carried_counts_are_committed_at_least_every_max_age_and_at_the_end() {
        let mut carried = CarriedCounts::default();
        let t0 = Instant::now();
        assert!(carried.hold(Some(unchanged(5)), t0).is_none());
        let due = carried.hold(Some(unchanged(7)), t0 + CarriedCounts::MAX_AGE).expect("counts a second old are committed");
        assert_eq!(due.counts.unchanged, 12);
        assert!(carried.hold(Some(unchanged(3)), t0 + CarriedCounts::MAX_AGE * 2).is_none());
        let last = carried.release(None).expect("the run's last commit holds what was carried");
        assert_eq!(last.counts.read, 3);
        assert!(carried.hold(None, t0).is_none(), "a dry run commits nothing");
    }
}
