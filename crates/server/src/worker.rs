//! Workers: claim a job, run its flow with a heartbeat renewing the job's lease (and the flow's), record
//! the outcome. Transient failures go back to the queue with exponential backoff and jitter.

use crate::AppState;
use ferry_engine::run::{NoProgress, Replay, RunError};
use ferry_engine::store::jobs::{JOB_BACKOFF, Job};
use ferry_engine::{RunOptions, holder_id};
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::watch;
use tracing::Instrument;

/// The job lease holder of worker `i`: `host:pid/w<i>`.
pub fn worker_id(i: usize) -> String {
    format!("{}/w{i}", holder_id())
}

pub async fn run(state: Arc<AppState>, index: usize, mut stop: watch::Receiver<bool>) {
    let me = worker_id(index);
    // On PostgreSQL, jobs enqueued by other processes (webhooks taken by another node) wake us through
    // LISTEN/NOTIFY; marking the signal seen *before* claiming means one arriving in between is not lost.
    let mut elsewhere = state.store.job_signal();
    loop {
        if *stop.borrow() {
            break;
        }
        if let Some(signal) = &mut elsewhere {
            signal.borrow_and_update();
        }
        match state.store.claim(&me, state.settings.lease, state.clock.now()).await {
            Ok(Some(job)) => {
                execute(&state, &me, job, &mut stop).await;
                continue;
            }
            Ok(None) => {}
            Err(e) => tracing::error!(worker = %me, error = %e, "cannot claim a job"),
        }
        let notified_elsewhere = async {
            match &mut elsewhere {
                Some(signal) => signal.changed().await.is_ok(),
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = state.wake.notified() => {}
            listening = notified_elsewhere => if !listening {
                elsewhere = None; // the listener is gone: polling alone from here
            },
            _ = tokio::time::sleep(state.settings.poll) => {}
            _ = stop.changed() => {}
        }
    }
}

pub fn run_options(job: &Job) -> RunOptions {
    let replay = if job.options.replay_all {
        Replay::AllOnly
    } else if !job.options.replay_ids.is_empty() {
        Replay::IdsOnly(job.options.replay_ids.clone())
    } else {
        Replay::Due
    };
    RunOptions { full: job.options.full, keys: job.keys.clone(), replay, holder: holder_id(), ..Default::default() }
}

/// Runs one claimed job to its end (or, on shutdown past the grace period, back to the queue).
pub async fn execute(state: &AppState, me: &str, job: Job, stop: &mut watch::Receiver<bool>) {
    let span = tracing::info_span!("job", id = job.id, flow = %job.flow, kind = job.kind.as_str(), attempt = job.attempts);
    execute_in_span(state, me, job, stop).instrument(span).await
}

/// Most webhook jobs of one flow a run takes along (see [`JobQueue::claim_targeted`]).
pub const COALESCE_MAX_JOBS: usize = 500;

async fn execute_in_span(state: &AppState, me: &str, job: Job, stop: &mut watch::Receiver<bool>) {
    // A burst of webhooks for this flow: the queued ones ride along in this run (each job keeps its row).
    let mut group = vec![job];
    if group[0].kind == ferry_engine::store::jobs::JobKind::Webhook && group[0].keys.is_some() && group[0].options == Default::default() {
        match state.store.claim_targeted(&group[0].flow, me, state.settings.lease, state.clock.now(), COALESCE_MAX_JOBS).await {
            Ok(more) => group.extend(more),
            Err(e) => tracing::warn!(error = %e, "cannot take queued webhook jobs along; running this one alone"),
        }
    }
    let job = &group[0];
    let mut options = run_options(job);
    if group.len() > 1 {
        let mut keys: Vec<String> = group.iter().flat_map(|j| j.keys.clone().unwrap_or_default()).collect();
        keys.sort();
        keys.dedup();
        options.keys = Some(keys);
    }
    tracing::info!(keys = options.keys.as_ref().map(|k| k.len()).unwrap_or(0), jobs = group.len(), "job started");
    let started = Instant::now();
    let lease = state.settings.lease;

    let heartbeat = async {
        let mut tick = tokio::time::interval(lease / 3);
        tick.tick().await;
        loop {
            tick.tick().await;
            for j in &group {
                match state.store.heartbeat(j.id, me, lease, state.clock.now()).await {
                    Ok(true) => {}
                    Ok(false) => tracing::warn!(job = j.id, "lost the job's lease (another worker took it over)"),
                    Err(e) => tracing::warn!(job = j.id, error = %e, "heartbeat failed"),
                }
            }
            // Runs longer than the engine's 10-minute flow lease keep it too (same holder renews).
            let _ = state.store.lock_flow(&job.flow, &options.holder, chrono::Duration::minutes(10)).await;
        }
    };
    let grace = async {
        let _ = stop.wait_for(|s| *s).await;
        tokio::time::sleep(state.settings.shutdown_grace).await;
    };
    let result = tokio::select! {
        r = state.workspace.sync(&job.flow, &options, &NoProgress) => Some(r),
        _ = heartbeat => None,
        _ = grace => None,
    };
    let now = state.clock.now();
    let Some(result) = result else {
        // Shutdown grace ran out: batches committed so far stay committed; the jobs go back to the queue
        // and the next run finds that work unchanged.
        tracing::warn!("shutdown grace period over; job goes back to the queue");
        let _ = state.store.unlock_flow(&job.flow, &options.holder).await;
        for j in &group {
            if let Err(e) = state.store.release(j.id, me, now).await {
                tracing::error!(job = j.id, error = %e, "cannot release job; it is claimable again when its lease expires");
            }
        }
        return;
    };
    if let Ok(report) = &result {
        let c = report.counts;
        state.metrics.run_finished(&job.flow, c.written(), c.failed, started.elapsed());
    }
    for j in &group {
        let retry_at = (j.attempts < j.max_attempts).then(|| now + chrono::Duration::from_std(JOB_BACKOFF.delay(j.attempts)).unwrap_or_default());
        let outcome = match &result {
            Ok(report) => match &report.aborted {
                None => {
                    if let Some(at) = state.webhook_arrivals.lock().expect("arrivals lock").remove(&j.id) {
                        state.metrics.webhook_latency(at.elapsed());
                    }
                    state.store.complete(j.id, me, report.run_id, now).await
                }
                // The run stopped early (endpoint down, repeated transient errors): try again later.
                Some(message) => fail(state, j, me, report.run_id, message, retry_at, now).await,
            },
            // Configuration errors wait for a person.
            Err(e @ RunError::Setup { .. }) => fail(state, j, me, None, &e.to_string(), None, now).await,
            // Store errors (including "flow already running elsewhere") are transient.
            Err(e) => fail(state, j, me, None, &e.to_string(), retry_at, now).await,
        };
        match outcome {
            Ok(true) => {}
            Ok(false) => tracing::warn!(job = j.id, "job finished but its lease had passed to another worker; outcome not recorded"),
            Err(e) => tracing::error!(job = j.id, error = %e, "cannot record the job's outcome; it runs again after its lease"),
        }
    }
    if let Ok(report) = &result
        && report.aborted.is_none()
    {
        let c = report.counts;
        tracing::info!(run = ?report.run_id, jobs = group.len(), created = c.created, updated = c.updated, unchanged = c.unchanged, failed = c.failed, "job done");
    }
}

async fn fail(
    state: &AppState,
    job: &Job,
    me: &str,
    run_id: Option<i64>,
    message: &str,
    retry_at: Option<chrono::DateTime<chrono::Utc>>,
    now: chrono::DateTime<chrono::Utc>,
) -> ferry_engine::store::StoreResult<bool> {
    state.metrics.job_failed(&job.flow);
    match retry_at {
        Some(at) => tracing::warn!(error = message, retry_at = %at, "job failed; will retry"),
        None => tracing::error!(error = message, "job failed; giving up"),
    }
    state.store.fail(job.id, me, run_id, message, retry_at, now).await
}
