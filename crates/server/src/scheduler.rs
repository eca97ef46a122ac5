//! The scheduler: enqueues each due firing of each flow's schedule, exactly once (dedupe key
//! `schedule:<flow>:<instant>`), even with several servers or after a restart.

use crate::AppState;
use ferry_engine::schedule::{firing_key, firing_prefix};
use ferry_engine::store::jobs::{Enqueued, JobKind, NewJob};
use std::sync::Arc;
use tokio::sync::watch;

pub async fn run(state: Arc<AppState>, mut stop: watch::Receiver<bool>) {
    if state.schedules.is_empty() {
        return;
    }
    loop {
        if let Err(e) = tick(&state).await {
            tracing::error!(error = %e, "scheduler tick failed");
        }
        tokio::select! {
            _ = tokio::time::sleep(state.settings.poll) => {}
            _ = stop.changed() => {}
        }
        if *stop.borrow() {
            break;
        }
    }
}

/// One pass: for each schedule, the latest firing since the last one enqueued (or since this server
/// started) up to now. Several missed firings become one job: a sync catches up from its checkpoint.
pub async fn tick(state: &AppState) -> ferry_engine::store::StoreResult<Vec<(String, Enqueued)>> {
    let now = state.clock.now();
    let mut enqueued = Vec::new();
    for (flow, schedule) in &state.schedules {
        let mark = state.store.latest_dedupe_run_after(&firing_prefix(flow)).await?.unwrap_or(state.started_at);
        let Some(at) = schedule.latest_in(mark, now) else { continue };
        let mut job = NewJob::new(flow.clone(), JobKind::Scheduled, at);
        job.dedupe_key = Some(firing_key(flow, at));
        let e = state.store.enqueue(job).await?;
        if e.created {
            tracing::info!(flow, fire_at = %at, job = e.id, "scheduled sync enqueued");
            state.wake.notify_waiters();
        }
        enqueued.push((flow.clone(), e));
    }
    Ok(enqueued)
}
