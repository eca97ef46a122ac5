//! The flow lease (one run per flow at a time) and what becomes of runs whose process died.
//!
//! A run holds its flow's lease (`flow_locks`, 10 minutes, renewed every minute while it runs). A process
//! killed with `-9` leaves its run `running` and its lease behind. Such a run is marked `interrupted`
//! once its lease has expired, was taken over, or its holder is a process of this host that no longer
//! exists — by the next run of the flow, by `ferry status`, and by `ferry serve` (at start and every
//! minute), so no run stays "running" forever.

use crate::run::RunError;
use crate::store::{StateStore, StoreResult};
use std::future::Future;
use std::time::Duration;

/// How long a lease lasts without renewal.
pub const LEASE: chrono::Duration = chrono::Duration::minutes(10);
/// How often a running flow renews its lease.
const RENEW_EVERY: Duration = Duration::from_secs(60);

/// Whether `holder` (`host:pid`, optionally followed by `/worker`) names a process of this host that no
/// longer exists. Holders of other hosts, or of unknown shape, are never declared gone: their lease's
/// expiry decides.
pub fn holder_gone(holder: &str) -> bool {
    let Some((host, rest)) = holder.rsplit_once(':').filter(|(_, rest)| !rest.contains(':')) else { return false };
    let pid: String = rest.chars().take_while(char::is_ascii_digit).collect();
    let me = crate::workspace::holder_id();
    let my_host = me.rsplit_once(':').map(|(h, _)| h).unwrap_or(&me);
    let proc_fs = std::path::Path::new("/proc/self").exists();
    host == my_host && proc_fs && pid.parse::<u32>().is_ok_and(|pid| !std::path::Path::new(&format!("/proc/{pid}")).exists())
}

/// Takes the flow's lease. A lease left by a process of this host that no longer exists (killed with -9)
/// is taken over at once instead of waiting for it to expire. The runs the previous holder left
/// `running` are then marked `interrupted`.
pub async fn take_lease(store: &dyn StateStore, flow: &str, holder: &str) -> Result<(), RunError> {
    if let Err(e) = store.lock_flow(flow, holder, LEASE).await {
        let Some(other) = store.lock_holder(flow).await? else { return store.lock_flow(flow, holder, LEASE).await.map_err(Into::into) };
        if !holder_gone(&other) {
            return Err(e.into());
        }
        tracing::warn!(flow, previous = %other, "taking over the lease of a process that no longer runs");
        store.unlock_flow(flow, &other).await?;
        store.lock_flow(flow, holder, LEASE).await?;
    }
    interrupt_stale_runs(store, Some(flow)).await?;
    Ok(())
}

/// Marks the runs whose process is gone as `interrupted` (see the module's notes); returns how many.
pub async fn interrupt_stale_runs(store: &dyn StateStore, flow: Option<&str>) -> StoreResult<u64> {
    let n = store.interrupt_stale_runs(flow, &holder_gone).await?;
    if n > 0 {
        tracing::warn!(flow = flow.unwrap_or("*"), runs = n, "marked runs whose process died as interrupted");
    }
    Ok(n)
}

/// Runs `work` while renewing the flow's lease every minute, so a run longer than the lease is never
/// mistaken for a dead one.
pub async fn renewing<T>(store: &dyn StateStore, flow: &str, holder: &str, work: impl Future<Output = T>) -> T {
    tokio::pin!(work);
    loop {
        tokio::select! {
            out = &mut work => return out,
            _ = tokio::time::sleep(RENEW_EVERY) => {
                if let Err(e) = store.lock_flow(flow, holder, LEASE).await {
                    tracing::warn!(flow, error = %e, "could not renew the flow's lease");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_processes_of_this_host_that_are_gone_are_gone() {
        let me = crate::workspace::holder_id();
        let host = me.rsplit_once(':').unwrap().0;
        assert!(!holder_gone(&me), "this process runs");
        assert!(!holder_gone(&format!("{me}/w0")), "a worker of this process runs");
        assert!(holder_gone(&format!("{host}:2147483647")), "no such pid");
        assert!(holder_gone(&format!("{host}:2147483647/w1")));
        assert!(!holder_gone("another-host:2147483647"), "another host's process: its lease decides");
        assert!(!holder_gone("no-pid-here"));
    }
}
