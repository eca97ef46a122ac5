//! The operator's dashboard, served by `ferry serve` at `/`: server-rendered HTML (maud), progressively
//! enhanced by the vendored htmx (`assets/htmx.min.js`, 0BSD) — every page and form works without
//! JavaScript; with it, navigation and forms are swapped in place and the overview refreshes itself.
//! Everything it shows comes from the workspace's state store through paginated queries
//! ([`ferry_engine::store::DashboardStore`]) and the same engine calls the REST API makes.
//!
//! Sign-in (`session.rs`): an API key, or the admin password (env `FERRY_ADMIN_PASSWORD`), gives a
//! session cookie (HttpOnly, SameSite=Strict, Secure behind TLS); every form carries the session's CSRF
//! token; a key's scope decides which buttons work (read: none, write: sync and fix, admin: keys and
//! connection checks), and the server checks it again on every POST.

mod chart;
mod failures;
mod keys;
mod pages;
pub mod session;

use crate::{AppState, Server};
use axum::Router;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use ferry_engine::store::keys::Scope;
use maud::{DOCTYPE, Markup, PreEscaped, html};
use std::sync::Arc;

pub use session::{Dashboard, Viewer};

const HTMX: &str = include_str!("assets/htmx.min.js");
const CSS: &str = include_str!("assets/dashboard.css");

/// The navigation, in order. The alerts page slots in here: `("/alerts", "Alerts")`, routed in [`router`].
const NAV: &[(&str, &str)] = &[
    ("/", "Overview"),
    ("/failures", "Failures"),
    ("/find", "Find a record"),
    ("/connections", "Connections"),
    ("/schedules", "Schedules"),
    ("/webhooks", "Webhook log"),
    ("/keys", "API keys"),
];

/// Rows per page of every listing.
pub const PAGE: i64 = 50;

/// The dashboard's routes (merged into the server's router by `router_for`).
pub fn router() -> Router<Arc<Server>> {
    Router::new()
        .route("/", get(pages::overview))
        .route("/signin", get(session::signin_page).post(session::signin))
        .route("/signout", post(session::signout))
        .route("/workspace", post(session::switch_workspace))
        .route("/flows/{flow}", get(pages::flow))
        .route("/flows/{flow}/trigger", post(pages::trigger))
        .route("/flows/{flow}/dry-run", post(pages::dry_run))
        .route("/runs/{id}", get(pages::run))
        .route("/failures", get(failures::groups))
        .route("/failures/group", get(failures::group))
        .route("/failures/group/retry", post(failures::retry_group))
        .route("/failures/{id}", get(failures::detail))
        .route("/failures/{id}/payload", post(failures::save_payload))
        .route("/failures/{id}/replay", post(failures::replay))
        .route("/failures/{id}/drop", post(failures::drop))
        .route("/find", get(pages::find))
        .route("/connections", get(pages::connections))
        .route("/connections/{name}/check", post(pages::check_connection))
        .route("/schedules", get(pages::schedules))
        .route("/webhooks", get(pages::webhooks))
        .route("/keys", get(keys::list).post(keys::create))
        .route("/keys/{id}/revoke", post(keys::revoke))
        .route("/assets/htmx.min.js", get(|| async { asset(HTMX, "text/javascript; charset=utf-8") }))
        .route("/assets/dashboard.css", get(|| async { asset(CSS, "text/css; charset=utf-8") }))
}

fn asset(body: &'static str, kind: &'static str) -> Response {
    ([(header::CONTENT_TYPE, kind), (header::CACHE_CONTROL, "public, max-age=3600")], body).into_response()
}

/// Why a page cannot be shown: each renders as an HTML page (or, for sign-in, a redirect).
#[derive(Debug)]
pub enum DashError {
    /// No (valid) session: to the sign-in page.
    SignIn,
    /// Signed in, but the scope does not allow it, or the form's CSRF token is wrong.
    Forbidden(String),
    NotFound(String),
    /// The input was refused; the message names the field.
    Invalid(String),
    /// The state store failed.
    Store(String),
}

impl From<ferry_engine::store::StoreError> for DashError {
    fn from(e: ferry_engine::store::StoreError) -> Self {
        tracing::error!(error = %e, "state store error (dashboard)");
        DashError::Store(e.to_string())
    }
}

impl IntoResponse for DashError {
    fn into_response(self) -> Response {
        let (status, title, message) = match self {
            DashError::SignIn => return Redirect::to("/signin").into_response(),
            DashError::Forbidden(m) => (StatusCode::FORBIDDEN, "Not allowed", m),
            DashError::NotFound(m) => (StatusCode::NOT_FOUND, "Not found", m),
            DashError::Invalid(m) => (StatusCode::BAD_REQUEST, "Refused", m),
            DashError::Store(m) => (StatusCode::SERVICE_UNAVAILABLE, "State store unavailable", m),
        };
        let body = bare_page(
            title,
            html! {
                h1 { (title) }
                p.error role="alert" { (message) }
                p { a href="/" { "Back to the overview" } }
            },
        );
        (status, body).into_response()
    }
}

pub type Page = Result<Response, DashError>;

/// An HTML answer.
pub fn html_response(markup: Markup) -> Response {
    ([(header::CONTENT_TYPE, "text/html; charset=utf-8"), (header::CACHE_CONTROL, "no-store")], markup.into_string()).into_response()
}

fn head(title: &str) -> Markup {
    html! {
        head {
            meta charset="utf-8";
            meta name="viewport" content="width=device-width, initial-scale=1";
            title { (title) " · Ferry" }
            link rel="stylesheet" href="/assets/dashboard.css";
            script src="/assets/htmx.min.js" defer {}
        }
    }
}

/// A page outside a session (sign-in, errors).
pub fn bare_page(title: &str, content: Markup) -> Response {
    html_response(html! {
        (DOCTYPE)
        html lang="en" {
            (head(title))
            body {
                main #main { (content) }
            }
        }
    })
}

/// A page of a signed-in viewer: navigation, workspace, who is signed in, a flash message.
pub fn page(v: &Viewer, title: &str, current: &str, content: Markup) -> Response {
    let headers = format!(r#"{{"X-CSRF-Token": "{}"}}"#, v.csrf);
    html_response(html! {
        (DOCTYPE)
        html lang="en" {
            (head(title))
            body hx-boost="true" hx-headers=(headers) {
                a.skip href="#main" { "Skip to content" }
                header.top {
                    a.brand href="/" { "Ferry" }
                    nav aria-label="Main" {
                        ul {
                            @for (href, label) in NAV {
                                li { a href=(href) aria-current=[(*href == current).then_some("page")] { (label) } }
                            }
                        }
                    }
                    div.who {
                        @if v.workspaces.len() > 1 {
                            form method="post" action="/workspace" {
                                (csrf_field(v))
                                label for="ws" { "Workspace" }
                                select #ws name="workspace" {
                                    @for w in &v.workspaces {
                                        option value=(w) selected[*w == v.state.name] { (w) }
                                    }
                                }
                                button type="submit" { "Switch" }
                            }
                        } @else {
                            span { "Workspace " strong { (v.state.name) } }
                        }
                        span.scope { (v.who) " · " (v.scope.as_str()) }
                        form method="post" action="/signout" {
                            (csrf_field(v))
                            button type="submit" { "Sign out" }
                        }
                    }
                }
                main #main {
                    @if let Some(f) = &v.flash {
                        p.flash role="status" { (f) }
                    }
                    (content)
                }
            }
        }
    })
}

/// The hidden CSRF field every form carries.
pub fn csrf_field(v: &Viewer) -> Markup {
    html! { input type="hidden" name="csrf" value=(v.csrf); }
}

/// A submit button that is disabled (and says why) when the viewer's scope does not allow the action;
/// the server refuses the POST anyway.
pub fn action_button(v: &Viewer, needs: Scope, label: &str, class: &str) -> Markup {
    let allowed = v.can(needs);
    let why = format!("Needs the {} scope", needs.as_str());
    html! {
        button type="submit" class=(class) disabled[!allowed] title=[(!allowed).then_some(why.as_str())] { (label) }
    }
}

/// An RFC 3339 time from the store, in the workspace's time zone (`2026-12-03 18:30:05 AEDT`).
pub fn local_time(state: &AppState, t: &str) -> String {
    let Ok(at) = chrono::DateTime::parse_from_rfc3339(t) else { return t.to_owned() };
    let tz: chrono_tz::Tz = state.workspace.config.defaults.timezone.as_deref().and_then(|z| z.parse().ok()).unwrap_or(chrono_tz::UTC);
    at.with_timezone(&tz).format("%Y-%m-%d %H:%M:%S %Z").to_string()
}

/// Seconds between two RFC 3339 times, when both parse.
pub fn seconds_between(start: &str, end: Option<&str>) -> Option<f64> {
    let s = chrono::DateTime::parse_from_rfc3339(start).ok()?;
    let e = chrono::DateTime::parse_from_rfc3339(end?).ok()?;
    Some((e - s).num_milliseconds() as f64 / 1000.0)
}

/// A JSON value, pretty and escaped.
pub fn json_pre(v: &serde_json::Value) -> Markup {
    html! { pre.json { (serde_json::to_string_pretty(v).unwrap_or_default()) } }
}

/// A run's status as a badge.
pub fn status_badge(status: &str) -> Markup {
    let class = match status {
        "ok" | "succeeded" | "enqueued" | "created" | "updated" => "badge ok",
        "failed_records" | "ignored" | "duplicate" | "skipped" | "queued" | "resumed" => "badge warn",
        "running" => "badge run",
        "unchanged" | "retired" => "badge",
        _ => "badge bad",
    };
    html! { span class=(class) { (status) } }
}

/// Table of field-level changes (`[{path, old, new}]`).
pub fn changes_table(changes: &serde_json::Value) -> Markup {
    let show = |v: &serde_json::Value| match v {
        serde_json::Value::Null => "—".to_owned(),
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    html! {
        @if let Some(list) = changes.as_array() {
            @if list.is_empty() {
                span.muted { "no field changed" }
            } @else {
                table.changes {
                    thead { tr { th scope="col" { "Field" } th scope="col" { "Before" } th scope="col" { "After" } } }
                    tbody {
                        @for c in list {
                            tr {
                                td { code { (c["path"].as_str().unwrap_or("")) } }
                                td.old { (show(&c["old"])) }
                                td.new { (show(&c["new"])) }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// `Some(x)` of a query parameter that may be empty.
pub fn non_empty(s: &Option<String>) -> Option<&str> {
    s.as_deref().map(str::trim).filter(|s| !s.is_empty())
}

/// Whether a request came over TLS (terminated by a proxy that says so): cookies are then `Secure`.
pub fn behind_tls(headers: &HeaderMap) -> bool {
    headers.get("x-forwarded-proto").and_then(|v| v.to_str().ok()).is_some_and(|p| p.split(',').next().is_some_and(|p| p.trim().eq_ignore_ascii_case("https")))
        || headers.get("forwarded").and_then(|v| v.to_str().ok()).is_some_and(|f| f.to_ascii_lowercase().contains("proto=https"))
}

/// Marks text that is already HTML (the chart's SVG, built from numbers only).
pub fn raw(s: String) -> PreEscaped<String> {
    PreEscaped(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_is_recognised_from_the_proxys_headers_only() {
        let mut h = HeaderMap::new();
        assert!(!behind_tls(&h));
        h.insert("x-forwarded-proto", "https".parse().unwrap());
        assert!(behind_tls(&h));
        h.insert("x-forwarded-proto", "http, https".parse().unwrap());
        assert!(!behind_tls(&h), "the first hop's protocol counts");
        let mut f = HeaderMap::new();
        f.insert("forwarded", "for=1.2.3.4;proto=https".parse().unwrap());
        assert!(behind_tls(&f));
    }

    #[test]
    fn changes_render_as_a_table_with_values_escaped() {
        let html = changes_table(&serde_json::json!([{"path": "name", "old": "<b>", "new": null}])).into_string();
        assert!(html.contains("<code>name</code>") && html.contains("&lt;b&gt;") && html.contains("—"), "{html}");
        assert!(changes_table(&serde_json::json!([])).into_string().contains("no field changed"));
    }
}
