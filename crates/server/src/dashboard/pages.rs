//! Overview, flow (runs chart, trigger, dry run), run, find a record, connections, schedules, webhook log.

use super::session::{CsrfOnly, poster, viewer};
use super::*;
use axum::Form;
use axum::extract::{Path, Query, State};
use axum::response::Redirect;
use ferry_engine::run::{NoProgress, RunOptions};
use ferry_engine::store::jobs::{JobKind, JobOptions, NewJob};

use serde::Deserialize;

type S = State<Arc<Server>>;

fn flow_conf<'a>(state: &'a AppState, flow: &str) -> Result<&'a ferry_engine::FlowConfig, DashError> {
    state.workspace.config.flows.get(flow).ok_or_else(|| DashError::NotFound(format!("no flow named {flow:?} in workspace {}", state.name)))
}

fn counts_line(c: &ferry_engine::store::Counts) -> Markup {
    html! {
        span.counts {
            (c.read) " read · " (c.created) " created · " (c.updated) " updated · " (c.unchanged) " unchanged"
            @if c.resumed > 0 { " · " (c.resumed) " resumed" }
            @if c.retired > 0 { " · " (c.retired) " retired" }
            @if c.skipped > 0 { " · " (c.skipped) " skipped" }
            " · " span class=(if c.failed > 0 { "bad" } else { "" }) { (c.failed) " failed" }
        }
    }
}

fn health(v: &Viewer, connection: &str) -> Markup {
    match v.server().dashboard.last_check(&v.state.name, connection) {
        None => html! { span.badge title="not checked since the server started" { (connection) ": unchecked" } },
        Some(c) => html! {
            span class=(if c.ok { "badge ok" } else { "badge bad" }) title=(format!("{} (checked {})", c.summary, local_time(&v.state, &c.at.to_rfc3339()))) {
                (connection) ": " (if c.ok { "ok" } else { "failing" })
            }
        },
    }
}

/// Every flow with its last run, next firing, open failures, queue and connection health; the table
/// refreshes itself every 10 s (htmx swaps in the same page's `#flows`).
pub async fn overview(State(server): S, headers: HeaderMap) -> Page {
    let v = viewer(&server, &headers).await?;
    let state = &v.state;
    let flows: Vec<String> = state.workspace.config.flows.keys().cloned().collect();
    let last = state.store.last_runs(&flows).await?;
    let failures = state.store.open_failures_by_flow().await?;
    let queues = state.store.queue_by_flow().await?;
    let depth = state.store.queue_depth(state.clock.now()).await?;
    let now = state.clock.now();
    let open: i64 = failures.values().sum();
    let content = html! {
        h1 { "Overview" }
        section #flows hx-get="/" hx-trigger="every 10s" hx-select="#flows" hx-swap="outerHTML" aria-live="polite" {
            ul.cards {
                li { strong { (flows.len()) } " flows" }
                li { a href="/failures" { strong class=(if open > 0 { "bad" } else { "" }) { (open) } " open failures" } }
                li { strong { (depth.queued) } " queued (" (depth.due) " due) · " strong { (depth.running) } " running · " (depth.failed) " failed jobs" }
            }
            div.scroll {
                table.flows {
                    caption { "Flows of workspace " (state.name) ", as of " (local_time(state, &now.to_rfc3339())) }
                    thead { tr {
                        th scope="col" { "Flow" } th scope="col" { "Last run" } th scope="col" { "Outcome" }
                        th scope="col" { "Next run" } th scope="col" { "Failures" } th scope="col" { "Queue" } th scope="col" { "Connections" }
                    } }
                    tbody {
                        @for name in &flows {
                            @let conf = &state.workspace.config.flows[name];
                            tr {
                                th scope="row" {
                                    a href=(format!("/flows/{name}")) { (name) }
                                    br; small.muted { (conf.stream) ": " (conf.source) " → " (conf.target) @if !conf.enabled { " (disabled)" } }
                                }
                                @match last.get(name) {
                                    Some(run) => {
                                        td { a href=(format!("/runs/{}", run.id)) { (local_time(state, &run.started_at)) } }
                                        td { (status_badge(&run.status)) " " (counts_line(&run.counts)) }
                                    }
                                    None => { td.muted { "never ran" } td {} }
                                }
                                td {
                                    @match state.schedules.get(name).and_then(|s| s.next_after(now).map(|t| s.firing(t))) {
                                        Some(f) => { (f.local.replace('T', " ")) " " (f.zone) }
                                        None => span.muted { "not scheduled" }
                                    }
                                }
                                td {
                                    @let n = failures.get(name).copied().unwrap_or(0);
                                    @if n > 0 { a.bad href="/failures" { (n) } } @else { "0" }
                                }
                                td {
                                    @let q = queues.get(name).copied().unwrap_or_default();
                                    (q.queued) " queued" @if q.running > 0 { ", " (q.running) " running" }
                                }
                                td { (health(&v, &conf.source)) " " (health(&v, &conf.target)) }
                            }
                        }
                    }
                }
            }
        }
    };
    Ok(page(&v, "Overview", "/", content))
}

#[derive(Deserialize)]
pub struct Before {
    before: Option<i64>,
}

/// A flow: its runs as a chart and a table (paged), the trigger and the dry run.
pub async fn flow(State(server): S, headers: HeaderMap, Path(name): Path<String>, Query(q): Query<Before>) -> Page {
    let v = viewer(&server, &headers).await?;
    let conf = flow_conf(&v.state, &name)?;
    let runs = v.state.store.runs_page(&name, q.before, PAGE).await?;
    let content = html! {
        h1 { "Flow " (name) }
        p.muted { (conf.stream) " from " strong { (conf.source) } " to " strong { (conf.target) }
            @if let Some(s) = &conf.schedule { " · schedule " code { (s) } } @if !conf.enabled { " · disabled" } }
        div.actions {
            form.card method="post" action=(format!("/flows/{name}/trigger")) {
                h2 { "Run a sync" }
                (csrf_field(&v))
                fieldset {
                    legend { "What" }
                    label { input type="radio" name="mode" value="incremental" checked; " Incremental" }
                    label { input type="radio" name="mode" value="full"; " Full (re-read, reconcile deletions)" }
                    label { input type="radio" name="mode" value="key"; " One key:" }
                    input type="text" name="key" aria-label="Key to sync" placeholder="SKU, order number…";
                }
                (action_button(&v, Scope::Write, "Run now", "primary"))
            }
            form.card method="post" action=(format!("/flows/{name}/dry-run")) {
                h2 { "Dry run" }
                (csrf_field(&v))
                p.muted { "What a sync would write, field by field; nothing is written." }
                label for="dry-key" { "Only this key (optional)" }
                input #dry-key type="text" name="key";
                (action_button(&v, Scope::Write, "Dry run", ""))
            }
        }
        h2 { "Runs" }
        @if runs.is_empty() {
            p.muted { "No runs yet." }
        } @else {
            figure.chart {
                (raw(super::chart::runs_svg(&runs)))
                figcaption { "Records written (green), failed (red) and duration (line) of the runs below, oldest left." }
            }
            div.scroll {
                table {
                    thead { tr { th scope="col" { "Run" } th scope="col" { "Started" } th scope="col" { "Mode" } th scope="col" { "Status" }
                                 th scope="col" { "Records" } th scope="col" { "Duration" } } }
                    tbody {
                        @for r in &runs {
                            tr {
                                td { a href=(format!("/runs/{}", r.id)) { "#" (r.id) } }
                                td { (local_time(&v.state, &r.started_at)) }
                                td { (r.mode) }
                                td { (status_badge(&r.status)) @if let Some(e) = &r.error { br; small { (e) } } }
                                td { (counts_line(&r.counts)) }
                                td { @if let Some(s) = seconds_between(&r.started_at, r.finished_at.as_deref()) { (format!("{s:.2} s")) } }
                            }
                        }
                    }
                }
            }
            @if runs.len() as i64 == PAGE {
                @if let Some(last) = runs.last() {
                    p { a href=(format!("/flows/{name}?before={}", last.id)) { "Older runs →" } }
                }
            }
        }
    };
    Ok(page(&v, &format!("Flow {name}"), "", content))
}

#[derive(Deserialize)]
pub struct TriggerForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    mode: String,
    key: Option<String>,
}

/// Enqueues a sync of the flow (as `POST /api/v1/flows/{flow}/trigger` does).
pub async fn trigger(State(server): S, headers: HeaderMap, Path(name): Path<String>, Form(form): Form<TriggerForm>) -> Page {
    let v = poster(&server, &headers, &form.csrf).await?;
    v.require(Scope::Write)?;
    flow_conf(&v.state, &name)?;
    let state = &v.state;
    let now = state.clock.now();
    let job = match form.mode.as_str() {
        "full" => {
            let mut job = NewJob::new(name.clone(), JobKind::Reconcile, now);
            job.options = JobOptions { full: true, ..Default::default() };
            job
        }
        "key" => {
            let key = non_empty(&form.key).ok_or_else(|| DashError::Invalid("key: enter the key of the record to sync".into()))?;
            let mut job = NewJob::new(name.clone(), JobKind::Manual, now);
            job.keys = Some(vec![key.to_owned()]);
            job
        }
        "incremental" | "" => NewJob::new(name.clone(), JobKind::Manual, now),
        other => return Err(DashError::Invalid(format!("mode: {other:?} is not incremental, full or key"))),
    };
    let what = match form.mode.as_str() {
        "full" => "a full sync".to_owned(),
        "key" => format!("a sync of {}", non_empty(&form.key).unwrap_or_default()),
        _ => "an incremental sync".to_owned(),
    };
    let e = state.store.enqueue(job).await?;
    state.wake.notify_waiters();
    tracing::info!(workspace = %state.name, flow = %name, job = e.id, who = %v.actor, "sync triggered from the dashboard");
    v.flash(format!("Queued {what} of {name} as job {}.", e.id));
    Ok(Redirect::to(&format!("/flows/{name}")).into_response())
}

#[derive(Deserialize)]
pub struct DryRunForm {
    #[serde(default)]
    csrf: String,
    key: Option<String>,
}

/// Runs the flow with `dry_run` (nothing written, no lease taken) and shows the planned writes with
/// their field-level changes.
pub async fn dry_run(State(server): S, headers: HeaderMap, Path(name): Path<String>, Form(form): Form<DryRunForm>) -> Page {
    let v = poster(&server, &headers, &form.csrf).await?;
    v.require(Scope::Write)?;
    flow_conf(&v.state, &name)?;
    let options = RunOptions {
        dry_run: true,
        keys: non_empty(&form.key).map(|k| vec![k.to_owned()]),
        holder: ferry_engine::holder_id(),
        ..Default::default()
    };
    let report = v.state.workspace.sync(&name, &options, &NoProgress).await;
    let content = match report {
        Err(e) => html! { h1 { "Dry run of " (name) } p.error role="alert" { (e.to_string()) } },
        Ok(r) => html! {
            h1 { "Dry run of " (name) }
            p { "Would write: " (counts_line(&r.counts)) " (in " (format!("{:.2}", r.duration.as_secs_f64())) " s). Nothing was written." }
            @if let Some(a) = &r.aborted { p.error role="alert" { "Stopped: " (a) } }
            @for w in &r.warnings { p.warn { "Warning: " (w) } }
            @if !r.failures.is_empty() {
                h2 { "Would fail" }
                table { thead { tr { th scope="col" { "Key" } th scope="col" { "Stage" } th scope="col" { "Field" } th scope="col" { "Message" } } }
                    tbody { @for f in &r.failures { tr { td { (f.key) } td { (f.stage.as_str()) } td { (f.field.as_deref().unwrap_or("")) } td { (f.message) } } } } }
            }
            h2 { "Planned writes" @if r.planned.len() >= 200 { " (first 200)" } }
            @if r.planned.is_empty() { p.muted { "Nothing to write: the target is up to date." } }
            div.scroll {
                table.planned {
                    thead { tr { th scope="col" { "Key" } th scope="col" { "Action" } th scope="col" { "Changes" } } }
                    tbody {
                        @for p in &r.planned {
                            tr {
                                td { (p.key) }
                                td { (p.action) }
                                td { @if p.action == "create" { span.muted { "new record" } } @else { (changes_table(&serde_json::to_value(&p.changes).unwrap_or_default())) } }
                            }
                        }
                    }
                }
            }
            p { a href=(format!("/flows/{name}")) { "← Back to " (name) } }
        },
    };
    Ok(page(&v, &format!("Dry run of {name}"), "", content))
}

#[derive(Deserialize)]
pub struct After {
    after: Option<i64>,
}

/// A run: counts, warnings, and its per-record outcomes with field-level changes (paged).
pub async fn run(State(server): S, headers: HeaderMap, Path(id): Path<i64>, Query(q): Query<After>) -> Page {
    let v = viewer(&server, &headers).await?;
    let run = v.state.store.run(id).await?.ok_or_else(|| DashError::NotFound(format!("no run {id}")))?;
    let records = v.state.store.run_records_page(id, q.after, PAGE * 2).await?;
    let content = html! {
        h1 { "Run #" (run.id) " of " a href=(format!("/flows/{}", run.flow)) { (run.flow) } }
        p { (status_badge(&run.status)) " " (run.mode) " · started " (local_time(&v.state, &run.started_at))
            @if let Some(s) = seconds_between(&run.started_at, run.finished_at.as_deref()) { " · " (format!("{s:.2} s")) } }
        p { (counts_line(&run.counts)) }
        @if let Some(e) = &run.error { p.error role="alert" { (e) } }
        @for w in &run.warnings { p.warn { "Warning: " (w) } }
        h2 { "Records" }
        p.muted { "Written records (the first 1,000 of a run), every failure, retirement and duplicate." }
        @if records.is_empty() { p.muted { "No per-record outcomes" @if q.after.is_some() { " after these" } "." } }
        div.scroll {
            table.records {
                thead { tr { th scope="col" { "Key" } th scope="col" { "Outcome" } th scope="col" { "Target id" } th scope="col" { "Field / message" } th scope="col" { "Changes" } } }
                tbody {
                    @for r in &records {
                        tr {
                            td { a href=(format!("/find?q={}", urlencode(&r.key))) { (r.key) } }
                            td { (status_badge(&r.outcome)) }
                            td { (r.target_id.as_deref().unwrap_or("")) }
                            td { @if let Some(f) = &r.field { code { (f) } " " } (r.message.as_deref().unwrap_or("")) }
                            td { @if let Some(c) = &r.changes { (changes_table(c)) } }
                        }
                    }
                }
            }
        }
        @if records.len() as i64 == PAGE * 2 {
            @if let Some(last) = records.last() { p { a href=(format!("/runs/{id}?after={}", last.seq)) { "More records →" } } }
        }
    };
    Ok(page(&v, &format!("Run {id}"), "", content))
}

/// Percent-encodes a query value.
pub fn urlencode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[derive(Deserialize)]
pub struct FindQuery {
    q: Option<String>,
}

/// "Where did WEB-1001 go?": a key or target id across every flow — its cross-references, last synced
/// hash and time, open failures, and the runs that touched it.
pub async fn find(State(server): S, headers: HeaderMap, Query(q): Query<FindQuery>) -> Page {
    let v = viewer(&server, &headers).await?;
    let flows: Vec<String> = v.state.workspace.config.flows.keys().cloned().collect();
    let term = non_empty(&q.q).map(str::to_owned);
    let (found, failed, runs) = match &term {
        Some(t) => (v.state.store.find_record(&flows, t).await?, v.state.store.failures_of_key(&flows, t).await?, v.state.store.runs_touching(t, PAGE).await?),
        None => Default::default(),
    };
    let content = html! {
        h1 { "Find a record" }
        form.search method="get" action="/find" role="search" {
            label for="q" { "Key or target id" }
            input #q type="search" name="q" value=[term.as_deref()] placeholder="WEB-1001, SKU-1001, a target id…" autofocus;
            button type="submit" { "Find" }
        }
        @if let Some(t) = &term {
            @if found.is_empty() && failed.is_empty() && runs.is_empty() {
                p.muted { (t) " is not a source key or target id of any flow, and no run touched it." }
            }
            @if !found.is_empty() {
                h2 { "Synced" }
                div.scroll { table {
                    thead { tr { th scope="col" { "Flow" } th scope="col" { "Key" } th scope="col" { "Target id" } th scope="col" { "Last synced" } th scope="col" { "Hash" } th scope="col" { "Record" } } }
                    tbody { @for x in &found { tr {
                        td { a href=(format!("/flows/{}", x.flow)) { (x.flow) } }
                        td { (x.key) } td { strong { (x.target_id) } } td { (local_time(&v.state, &x.synced_at)) }
                        td { code { (x.hash.chars().take(12).collect::<String>()) } }
                        td { @if let Some(p) = &x.payload { details { summary { "payload" } (json_pre(p)) } } }
                    } } }
                } }
            }
            @if !failed.is_empty() {
                h2 { "Open failures" }
                ul { @for f in &failed { li { a href=(format!("/failures/{}", f.id)) { (f.flow) ": " (f.stage) @if let Some(fl) = &f.field { " " (fl) } } " — " (f.message) } } }
            }
            @if !runs.is_empty() {
                h2 { "Runs that touched it" }
                div.scroll { table {
                    thead { tr { th scope="col" { "Run" } th scope="col" { "Flow" } th scope="col" { "Started" } th scope="col" { "Outcome" } th scope="col" { "Target id / message" } } }
                    tbody { @for r in &runs { tr {
                        td { a href=(format!("/runs/{}", r.run_id)) { "#" (r.run_id) } }
                        td { (r.flow) } td { (local_time(&v.state, &r.started_at)) } td { (status_badge(&r.outcome)) }
                        td { (r.target_id.as_deref().unwrap_or("")) " " (r.message.as_deref().unwrap_or("")) }
                    } } }
                } }
            }
        }
    };
    Ok(page(&v, "Find a record", "/find", content))
}

/// Connections with their (redacted) options and the last check; the check button needs admin, as
/// `POST /api/v1/connections/{name}/check` does (it reaches out to every external system).
pub async fn connections(State(server): S, headers: HeaderMap) -> Page {
    let v = viewer(&server, &headers).await?;
    let conns = &v.state.workspace.config.connections;
    let content = html! {
        h1 { "Connections" }
        div.scroll { table {
            thead { tr { th scope="col" { "Connection" } th scope="col" { "Type" } th scope="col" { "Options" } th scope="col" { "Last check" } th scope="col" { "" } } }
            tbody { @for (name, c) in conns { tr {
                th scope="row" { (name) }
                td { (c.kind) }
                td { details { summary { "options" } (json_pre(&ferry_engine::config::redacted_options(&c.options))) } }
                td { (health(&v, name))
                    @if let Some(c) = v.server().dashboard.last_check(&v.state.name, name) { br; small { (c.summary) " — " (local_time(&v.state, &c.at.to_rfc3339())) } } }
                td { form method="post" action=(format!("/connections/{name}/check")) { (csrf_field(&v)) (action_button(&v, Scope::Admin, "Check", "")) } }
            } } }
        } }
    };
    Ok(page(&v, "Connections", "/connections", content))
}

pub async fn check_connection(State(server): S, headers: HeaderMap, Path(name): Path<String>, Form(form): Form<CsrfOnly>) -> Page {
    let v = poster(&server, &headers, &form.csrf).await?;
    v.require(Scope::Admin)?;
    if !v.state.workspace.config.connections.contains_key(&name) {
        return Err(DashError::NotFound(format!("no connection named {name:?}")));
    }
    let result = crate::api::check_one(&v.state, &name).await;
    let ok = result["ok"].as_bool().unwrap_or(false);
    let summary = if ok {
        "check passed".to_owned()
    } else {
        result["error"]["message"].as_str().map(str::to_owned).unwrap_or_else(|| result["details"].to_string())
    };
    let check = super::session::ConnectionCheck { ok, summary: summary.clone(), at: v.state.clock.now() };
    v.server().dashboard.record_check(&v.state.name, &name, check);
    v.flash(format!("{name}: {}", if ok { "check passed".to_owned() } else { format!("check failed: {summary}") }));
    Ok(Redirect::to("/connections").into_response())
}

/// Each flow's schedule and its next firings, local and UTC.
pub async fn schedules(State(server): S, headers: HeaderMap) -> Page {
    let v = viewer(&server, &headers).await?;
    let now = v.state.clock.now();
    let content = html! {
        h1 { "Schedules" }
        div.scroll { table {
            thead { tr { th scope="col" { "Flow" } th scope="col" { "Schedule" } th scope="col" { "Time zone" } th scope="col" { "Next firings" } } }
            tbody { @for (name, f) in &v.state.workspace.config.flows { tr {
                th scope="row" { a href=(format!("/flows/{name}")) { (name) } }
                td { @if let Some(s) = &f.schedule { code { (s) } } @else { span.muted { "none (webhooks, API or manual)" } } @if !f.enabled { " (disabled)" } }
                @match v.state.schedules.get(name) {
                    Some(s) => {
                        td { (s.timezone().name()) }
                        td { ul.plain { @for t in s.upcoming(now, 5) { @let fi = s.firing(t); li { (fi.local.replace('T', " ")) " " (fi.zone) " " small.muted { "(" (fi.utc) ")" } } } } }
                    }
                    None => { td {} td {} }
                }
            } } }
        } }
    };
    Ok(page(&v, "Schedules", "/schedules", content))
}

#[derive(Deserialize)]
pub struct WebhookQuery {
    connection: Option<String>,
    before: Option<i64>,
}

/// The last webhook deliveries: accepted (enqueued / ignored / duplicate) or refused, and why.
pub async fn webhooks(State(server): S, headers: HeaderMap, Query(q): Query<WebhookQuery>) -> Page {
    let v = viewer(&server, &headers).await?;
    let connection = non_empty(&q.connection);
    let rows = v.state.store.webhook_log_page(connection, q.before, PAGE).await?;
    let content = html! {
        h1 { "Webhook log" }
        form.search method="get" action="/webhooks" {
            label for="conn" { "Connection" }
            select #conn name="connection" {
                option value="" { "all" }
                @for name in v.state.workspace.config.connections.keys() { option value=(name) selected[Some(name.as_str()) == connection] { (name) } }
            }
            button type="submit" { "Show" }
        }
        @if rows.is_empty() { p.muted { "No deliveries" @if q.before.is_some() { " older than these" } "." } }
        div.scroll { table {
            thead { tr { th scope="col" { "Received" } th scope="col" { "Connection" } th scope="col" { "Answer" } th scope="col" { "Why" } th scope="col" { "Delivery" } th scope="col" { "Jobs" } } }
            tbody { @for e in &rows { tr {
                td { (local_time(&v.state, &e.received_at)) }
                td { (e.connection) }
                td { (status_badge(&e.outcome)) " " (e.status) }
                td { @if let Some(c) = &e.code { code { (c) } " " } (e.message.as_deref().unwrap_or("")) }
                td { small { (e.delivery_id.as_deref().unwrap_or("")) } }
                td { (e.jobs.iter().map(|j| j.to_string()).collect::<Vec<_>>().join(", ")) }
            } } }
        } }
        @if rows.len() as i64 == PAGE {
            @if let Some(last) = rows.last() {
                p { a href=(format!("/webhooks?connection={}&before={}", urlencode(connection.unwrap_or("")), last.id)) { "Older deliveries →" } }
            }
        }
    };
    Ok(page(&v, "Webhook log", "/webhooks", content))
}
