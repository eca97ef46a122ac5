//! The failures console: open failures grouped by (flow, stage, field); each failure's stage, field,
//! message, attempts, next retry and payload; edit the payload (JSON, checked against the flow's mapping
//! and the model on save) and replay it; retry a whole group; drop one with a reason (kept in
//! `dropped_failures`).

use super::pages::urlencode;
use super::session::{poster, viewer};
use super::*;
use axum::Form;
use axum::extract::{Path, Query, State};
use axum::response::Redirect;
use ferry_engine::store::dashboard::GroupKey;
use ferry_engine::store::jobs::{JobKind, JobOptions, NewJob};

use serde::Deserialize;

type S = State<Arc<Server>>;

/// Failures a retry job replays at most (a larger group becomes several jobs).
const REPLAY_IDS_PER_JOB: usize = 1000;

fn group_href(flow: &str, stage: &str, field: &str) -> String {
    format!("/failures/group?flow={}&stage={}&field={}", urlencode(flow), urlencode(stage), urlencode(field))
}

pub async fn groups(State(server): S, headers: HeaderMap) -> Page {
    let v = viewer(&server, &headers).await?;
    let groups = v.state.store.failure_groups(PAGE * 2).await?;
    let content = html! {
        h1 { "Failures" }
        @if groups.is_empty() { p.ok { "No open failures." } }
        div.scroll { table.groups {
            thead { tr { th scope="col" { "Flow" } th scope="col" { "Stage" } th scope="col" { "Field" } th scope="col" { "Count" }
                         th scope="col" { "Error (first)" } th scope="col" { "Last failed" } th scope="col" { "" } } }
            tbody { @for g in &groups { tr {
                td { a href=(format!("/flows/{}", g.flow)) { (g.flow) } }
                td { (g.stage) } td { code { (g.field) } }
                td { a href=(group_href(&g.flow, &g.stage, &g.field)) { strong { (g.count) } } }
                td { a href=(group_href(&g.flow, &g.stage, &g.field)) { (g.sample_message) } }
                td { (local_time(&v.state, &g.last_failed_at)) }
                td { form method="post" action="/failures/group/retry" {
                    (csrf_field(&v))
                    input type="hidden" name="flow" value=(g.flow);
                    input type="hidden" name="stage" value=(g.stage);
                    input type="hidden" name="field" value=(g.field);
                    (action_button(&v, Scope::Write, &format!("Retry all {}", g.count), ""))
                } }
            } } }
        } }
    };
    Ok(page(&v, "Failures", "/failures", content))
}

#[derive(Deserialize)]
pub struct GroupQuery {
    flow: String,
    stage: String,
    #[serde(default)]
    field: String,
    after: Option<i64>,
}

pub async fn group(State(server): S, headers: HeaderMap, Query(q): Query<GroupQuery>) -> Page {
    let v = viewer(&server, &headers).await?;
    let key = GroupKey { flow: q.flow.clone(), stage: q.stage.clone(), field: q.field.clone() };
    let rows = v.state.store.failures_page(&key, q.after, PAGE).await?;
    let content = html! {
        h1 { "Failures of " (q.flow) ": " (q.stage) @if !q.field.is_empty() { " " code { (q.field) } } }
        @if rows.is_empty() { p.ok { "No open failures in this group" @if q.after.is_some() { " after these" } "." } }
        div.scroll { table {
            thead { tr { th scope="col" { "Record" } th scope="col" { "Where" } th scope="col" { "Message" } th scope="col" { "Attempts" } th scope="col" { "Next retry" } } }
            tbody { @for f in &rows { tr {
                td { a href=(format!("/failures/{}", f.id)) { (f.key) } }
                td { (f.position.as_deref().unwrap_or("")) }
                td { (f.message) }
                td { (f.attempts) }
                td { @match &f.next_retry_at { Some(t) => (local_time(&v.state, t)), None => span.muted { "after a fix (replay)" } } }
            } } }
        } }
        @if rows.len() as i64 == PAGE {
            @if let Some(last) = rows.last() { p { a href=(format!("{}&after={}", group_href(&q.flow, &q.stage, &q.field), last.id)) { "More →" } } }
        }
        p { a href="/failures" { "← All groups" } }
    };
    Ok(page(&v, "Failures", "/failures", content))
}

fn detail_page(v: &Viewer, f: &ferry_engine::store::Failure, draft: Option<&str>, error: Option<&str>) -> Response {
    let payload = draft.map(str::to_owned).unwrap_or_else(|| serde_json::to_string_pretty(&f.source).unwrap_or_default());
    let content = html! {
        h1 { "Failed record " (f.key) }
        dl.facts {
            dt { "Flow" } dd { a href=(format!("/flows/{}", f.flow)) { (f.flow) } }
            dt { "Stage" } dd { (f.stage) }
            dt { "Field" } dd { code { (f.field.as_deref().unwrap_or("—")) } }
            dt { "Message" } dd.bad #message { (f.message) }
            dt { "Where" } dd { (f.position.as_deref().unwrap_or("—")) }
            dt { "Attempts" } dd { (f.attempts) }
            dt { "First / last failed" } dd { (local_time(&v.state, &f.first_failed_at)) " / " (local_time(&v.state, &f.last_failed_at)) }
            dt { "Next retry" } dd { @match &f.next_retry_at { Some(t) => (local_time(&v.state, t)), None => "after a fix: replay it" } }
        }
        form.card method="post" action=(format!("/failures/{}/payload", f.id)) {
            h2 { label for="payload" { "Payload (the record as the source produced it)" } }
            (csrf_field(v))
            @if let Some(e) = error { p.error role="alert" #payload-error { (e) } }
            textarea #payload name="payload" rows="14" spellcheck="false" aria-describedby="payload-help" { (payload) }
            p.muted #payload-help { "JSON. Saved only when it parses and the flow's mapping and the model accept it." }
            (action_button(v, Scope::Write, "Save payload", ""))
        }
        div.actions {
            form.card method="post" action=(format!("/failures/{}/replay", f.id)) {
                (csrf_field(v))
                p { "Run this record again through the flow (a job)." }
                (action_button(v, Scope::Write, "Replay", "primary"))
            }
            form.card method="post" action=(format!("/failures/{}/drop", f.id)) {
                (csrf_field(v))
                label for="reason" { "Reason for dropping" }
                input #reason type="text" name="reason" required placeholder="e.g. discontinued, fixed by hand in the shop";
                (action_button(v, Scope::Write, "Drop", "danger"))
            }
        }
        p { a href=(group_href(&f.flow, &f.stage, f.field.as_deref().unwrap_or(""))) { "← Its group" } }
    };
    page(v, &format!("Failure {}", f.key), "/failures", content)
}

async fn failure(v: &Viewer, id: i64) -> Result<ferry_engine::store::Failure, DashError> {
    v.state.store.failure(id).await?.ok_or_else(|| DashError::NotFound(format!("no open failure {id} (replayed successfully, or dropped)")))
}

pub async fn detail(State(server): S, headers: HeaderMap, Path(id): Path<i64>) -> Page {
    let v = viewer(&server, &headers).await?;
    let f = failure(&v, id).await?;
    Ok(detail_page(&v, &f, None, None))
}

#[derive(Deserialize)]
pub struct PayloadForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    payload: String,
}

/// Checks an edited payload: JSON, an object, and — for records that go through the mapping — accepted
/// by the flow's mapping and the model (the message names the field). A retirement's payload is only
/// checked to be JSON (it is retired again, not mapped).
fn check_payload(v: &Viewer, f: &ferry_engine::store::Failure, text: &str) -> Result<serde_json::Value, String> {
    let value: serde_json::Value = serde_json::from_str(text).map_err(|e| format!("payload is not valid JSON: {e}"))?;
    if f.stage == "retire" {
        return Ok(value);
    }
    if !value.is_object() {
        return Err("payload: a record is a JSON object ({…})".into());
    }
    let flow = v.state.workspace.flow(&f.flow).map_err(|e| e.to_string())?;
    let mapped = flow.mapping.apply(value.clone()).map_err(|e| format!("mapping: {e}"))?;
    if let Some(mapped) = mapped {
        let position = f.position.clone().unwrap_or_else(|| f.key.clone());
        ferry_model::Record::parse(flow.config.stream, mapped, &position).map_err(|e| e.to_string())?;
    }
    Ok(value)
}

pub async fn save_payload(State(server): S, headers: HeaderMap, Path(id): Path<i64>, Form(form): Form<PayloadForm>) -> Page {
    let v = poster(&server, &headers, &form.csrf).await?;
    v.require(Scope::Write)?;
    let f = failure(&v, id).await?;
    match check_payload(&v, &f, &form.payload) {
        Err(message) => {
            let mut r = detail_page(&v, &f, Some(&form.payload), Some(&message));
            *r.status_mut() = StatusCode::UNPROCESSABLE_ENTITY;
            Ok(r)
        }
        Ok(value) => {
            if !v.state.store.set_failure_source(id, &value).await? {
                return Err(DashError::NotFound(format!("failure {id} was resolved or dropped meanwhile")));
            }
            tracing::info!(workspace = %v.state.name, failure = id, record = %f.key, who = %v.actor, "failure payload edited in the dashboard");
            v.flash(format!("Saved the payload of {}. Replay it to run it through the flow.", f.key));
            Ok(Redirect::to(&format!("/failures/{id}")).into_response())
        }
    }
}

async fn enqueue_replay(v: &Viewer, flow: &str, ids: Vec<i64>) -> Result<Vec<i64>, DashError> {
    let mut jobs = Vec::new();
    for chunk in ids.chunks(REPLAY_IDS_PER_JOB) {
        let mut job = NewJob::new(flow.to_owned(), JobKind::Retry, v.state.clock.now());
        job.options = JobOptions { replay_ids: chunk.to_vec(), ..Default::default() };
        jobs.push(v.state.store.enqueue(job).await?.id);
    }
    v.state.wake.notify_waiters();
    Ok(jobs)
}

pub async fn replay(State(server): S, headers: HeaderMap, Path(id): Path<i64>, Form(form): Form<super::session::CsrfOnly>) -> Page {
    let v = poster(&server, &headers, &form.csrf).await?;
    v.require(Scope::Write)?;
    let f = failure(&v, id).await?;
    let jobs = enqueue_replay(&v, &f.flow, vec![id]).await?;
    v.flash(format!("Replay of {} queued as job {}; this page shows the failure until the replay resolves it.", f.key, jobs[0]));
    Ok(Redirect::to(&group_href(&f.flow, &f.stage, f.field.as_deref().unwrap_or(""))).into_response())
}

#[derive(Deserialize)]
pub struct GroupForm {
    #[serde(default)]
    csrf: String,
    flow: String,
    stage: String,
    #[serde(default)]
    field: String,
}

/// Replays every failure of a group (paged through, several jobs for a large group).
pub async fn retry_group(State(server): S, headers: HeaderMap, Form(form): Form<GroupForm>) -> Page {
    let v = poster(&server, &headers, &form.csrf).await?;
    v.require(Scope::Write)?;
    let key = GroupKey { flow: form.flow.clone(), stage: form.stage.clone(), field: form.field.clone() };
    let mut ids = Vec::new();
    let mut after = None;
    loop {
        let page = v.state.store.failures_page(&key, after, 1000).await?;
        ids.extend(page.iter().map(|f| f.id));
        match page.last() {
            Some(last) if page.len() == 1000 => after = Some(last.id),
            _ => break,
        }
    }
    if ids.is_empty() {
        v.flash("That group has no open failures any more.");
    } else {
        let jobs = enqueue_replay(&v, &form.flow, ids.clone()).await?;
        v.flash(format!("Replay of {} failure(s) of {} queued (job {}).", ids.len(), form.flow, jobs.iter().map(|j| j.to_string()).collect::<Vec<_>>().join(", ")));
    }
    Ok(Redirect::to("/failures").into_response())
}

#[derive(Deserialize)]
pub struct DropForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    reason: String,
}

pub async fn drop(State(server): S, headers: HeaderMap, Path(id): Path<i64>, Form(form): Form<DropForm>) -> Page {
    let v = poster(&server, &headers, &form.csrf).await?;
    v.require(Scope::Write)?;
    let reason = form.reason.trim();
    if reason.is_empty() {
        return Err(DashError::Invalid("reason: say why the record is dropped (it is kept with the reason)".into()));
    }
    let f = failure(&v, id).await?;
    if !v.state.store.drop_failure_with_reason(id, reason, &v.actor, v.state.clock.now()).await? {
        return Err(DashError::NotFound(format!("failure {id} was resolved or dropped meanwhile")));
    }
    tracing::info!(workspace = %v.state.name, failure = id, record = %f.key, who = %v.actor, reason, "failure dropped in the dashboard");
    v.flash(format!("Dropped {} ({reason}).", f.key));
    Ok(Redirect::to("/failures").into_response())
}
