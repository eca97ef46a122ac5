//! `ferry serve`'s automatic prune: once every `[retention] prune_every_hours` (default 24) per
//! workspace, counted from the last prune logged in the workspace's state store, so restarts and
//! several servers on one store do not prune more often.

use crate::AppState;
use ferry_engine::retention::{PruneReport, holder, prune};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// How often the loop looks whether a prune is due.
const LOOK_EVERY: Duration = Duration::from_secs(600);

pub async fn run(state: Arc<AppState>, mut stop: watch::Receiver<bool>) {
    if state.workspace.config.retention.prune_every_hours == 0 {
        return;
    }
    loop {
        match tick(&state).await {
            Ok(Some(r)) => tracing::info!(
                workspace = %state.name, runs = r.runs, run_records = r.run_records, jobs = r.jobs, pushed_records = r.pushed_records,
                compacted = r.compacted.len(), skipped = ?r.skipped, errors = ?r.errors, "pruned"
            ),
            Ok(None) => {}
            Err(e) => tracing::error!(workspace = %state.name, error = %e, "prune failed"),
        }
        tokio::select! {
            _ = tokio::time::sleep(LOOK_EVERY) => {}
            _ = stop.changed() => {}
        }
        if *stop.borrow() {
            break;
        }
    }
}

/// Prunes when the last prune is at least `prune_every_hours` old (or there was none); `None` when not due.
pub async fn tick(state: &AppState) -> Result<Option<PruneReport>, ferry_engine::store::StoreError> {
    let every = chrono::Duration::hours(i64::from(state.workspace.config.retention.prune_every_hours));
    let now = state.clock.now();
    if every.is_zero() || state.store.last_prune().await?.is_some_and(|last| now - last < every) {
        return Ok(None);
    }
    prune(&state.workspace, state.store.as_ref(), now, &holder(), false).await.map(Some)
}
