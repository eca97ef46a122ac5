//! Sign-in, sessions and CSRF.
//!
//! - **Sign-in** with an API key (its workspace and scope) or the admin password (env
//!   `FERRY_ADMIN_PASSWORD`: admin in every workspace, switchable). The sign-in form itself is protected
//!   by a double-submit token (a cookie of its own and a hidden field that must match).
//! - **Session**: a random 256-bit id in the `ferry_session` cookie (HttpOnly, SameSite=Strict, Path=/,
//!   Secure when the request came over TLS — `X-Forwarded-Proto: https` / `Forwarded: proto=https`); the
//!   server keeps the session in memory (a restart signs everyone out), 12 hours after its last use.
//! - **Key sessions follow the key**: each request reads the key again, so revoking it (or narrowing
//!   its scopes) takes effect on the next click.
//! - **CSRF**: each session has its own token; every form carries it (`csrf`) and htmx sends it as
//!   `X-CSRF-Token`; a POST without the right one is refused (403) before anything happens.

use super::{DashError, bare_page, behind_tls};
use crate::{AppState, Server};
use axum::Form;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Redirect, Response};

use ferry_engine::store::keys::Scope;
use maud::html;
use rand::RngCore;
use serde::Deserialize;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const SESSION_COOKIE: &str = "ferry_session";
const SIGNIN_COOKIE: &str = "ferry_signin";
/// A session ends this long after its last request.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(12 * 3600);
/// Env variable holding the dashboard's admin password.
pub const ADMIN_PASSWORD_ENV: &str = "FERRY_ADMIN_PASSWORD";

#[derive(Clone, Debug, PartialEq, Eq)]
enum Principal {
    /// Signed in with this API key (by its public id).
    Key(String),
    /// Signed in with the admin password.
    Admin,
}

#[derive(Clone, Debug)]
struct Session {
    workspace: String,
    principal: Principal,
    csrf: String,
    last_seen: Instant,
    flash: Option<String>,
}

/// The last check of a connection from the dashboard.
#[derive(Clone, Debug)]
pub struct ConnectionCheck {
    pub ok: bool,
    /// What the check said ("check passed", or the connector's error).
    pub summary: String,
    pub at: chrono::DateTime<chrono::Utc>,
}

/// The dashboard's server-side state: sessions, and the last check of each connection.
#[derive(Default)]
pub struct Dashboard {
    sessions: Mutex<HashMap<String, Session>>,
    /// (workspace, connection) → its last check.
    checks: Mutex<HashMap<(String, String), ConnectionCheck>>,
}

impl Dashboard {
    pub fn record_check(&self, workspace: &str, connection: &str, check: ConnectionCheck) {
        self.checks.lock().expect("checks lock").insert((workspace.to_owned(), connection.to_owned()), check);
    }

    pub fn last_check(&self, workspace: &str, connection: &str) -> Option<ConnectionCheck> {
        self.checks.lock().expect("checks lock").get(&(workspace.to_owned(), connection.to_owned())).cloned()
    }

    fn set_flash(&self, id: &str, message: String) {
        if let Some(s) = self.sessions.lock().expect("sessions lock").get_mut(id) {
            s.flash = Some(message);
        }
    }
}

/// Who is looking, in which workspace, allowed to do what.
pub struct Viewer {
    pub state: Arc<AppState>,
    pub scope: Scope,
    /// `key <id> (<name>)` or `admin`.
    pub who: String,
    /// For audit records (`dropped_by`): the key id or `admin`.
    pub actor: String,
    pub csrf: String,
    /// Workspaces this viewer may switch to (the admin password: all; a key: its own).
    pub workspaces: Vec<String>,
    /// A message from the previous action (shown once).
    pub flash: Option<String>,
    session: String,
    server: Arc<Server>,
}

impl Viewer {
    pub fn can(&self, needed: Scope) -> bool {
        self.scope >= needed
    }

    /// Refuses unless the scope allows `needed`.
    pub fn require(&self, needed: Scope) -> Result<(), DashError> {
        if self.can(needed) {
            Ok(())
        } else {
            Err(DashError::Forbidden(format!("this needs the {} scope; you are signed in with {}", needed.as_str(), self.scope.as_str())))
        }
    }

    /// Shown on the next page this session opens.
    pub fn flash(&self, message: impl Into<String>) {
        self.server.dashboard.set_flash(&self.session, message.into());
    }

    pub fn server(&self) -> &Server {
        &self.server
    }
}

fn random_hex() -> String {
    let mut b = [0u8; 32];
    rand::rng().fill_bytes(&mut b);
    hex::encode(b)
}

/// Constant-time equality (hashing first equalises the lengths).
fn same(a: &str, b: &str) -> bool {
    use sha2::{Digest, Sha256};
    let (a, b) = (Sha256::digest(a.as_bytes()), Sha256::digest(b.as_bytes()));
    a.iter().zip(b.iter()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|p| p.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

fn set_cookie(name: &str, value: &str, path: &str, max_age: u64, secure: bool) -> HeaderValue {
    let secure = if secure { "; Secure" } else { "" };
    HeaderValue::from_str(&format!("{name}={value}; Path={path}; HttpOnly; SameSite=Strict; Max-Age={max_age}{secure}")).expect("cookie is ASCII")
}

/// The signed-in viewer of a request, or [`DashError::SignIn`].
pub async fn viewer(server: &Arc<Server>, headers: &HeaderMap) -> Result<Viewer, DashError> {
    let id = cookie(headers, SESSION_COOKIE).ok_or(DashError::SignIn)?.to_owned();
    let session = {
        let mut sessions = server.dashboard.sessions.lock().expect("sessions lock");
        let Some(s) = sessions.get_mut(&id) else { return Err(DashError::SignIn) };
        if s.last_seen.elapsed() > IDLE_TIMEOUT {
            sessions.remove(&id);
            return Err(DashError::SignIn);
        }
        s.last_seen = Instant::now();
        let copy = s.clone();
        s.flash = None;
        copy
    };
    let state = server.workspace(&session.workspace).cloned().ok_or(DashError::SignIn)?;
    let (scope, who, actor, workspaces) = match &session.principal {
        Principal::Admin => (Scope::Admin, "admin".to_owned(), "admin".to_owned(), server.workspaces.keys().cloned().collect()),
        Principal::Key(key_id) => {
            // The key as it is now: revoked → signed out; scopes narrowed → fewer buttons.
            let key = state.store.api_key(key_id).await?.filter(|k| !k.revoked);
            let Some(key) = key else {
                server.dashboard.sessions.lock().expect("sessions lock").remove(&id);
                return Err(DashError::SignIn);
            };
            let scope = key.scopes.iter().max().copied().unwrap_or(Scope::Read);
            (scope, format!("key {} ({})", key.id, key.name), key.id.clone(), vec![state.name.clone()])
        }
    };
    Ok(Viewer { state, scope, who, actor, csrf: session.csrf, workspaces, flash: session.flash, session: id, server: server.clone() })
}

/// The viewer of a POST, after its CSRF token (form field or `X-CSRF-Token`) was checked.
pub async fn poster(server: &Arc<Server>, headers: &HeaderMap, form_token: &str) -> Result<Viewer, DashError> {
    let v = viewer(server, headers).await?;
    let header_token = headers.get("x-csrf-token").and_then(|t| t.to_str().ok()).unwrap_or("");
    if !(same(form_token, &v.csrf) || (!header_token.is_empty() && same(header_token, &v.csrf))) {
        tracing::warn!(workspace = %v.state.name, who = %v.actor, "dashboard POST refused: missing or wrong CSRF token");
        return Err(DashError::Forbidden("the form's security token is missing or stale; reload the page and try again".into()));
    }
    Ok(v)
}

pub async fn signin_page(State(server): State<Arc<Server>>, headers: HeaderMap) -> Response {
    if viewer(&server, &headers).await.is_ok() {
        return Redirect::to("/").into_response();
    }
    signin_form(&server, &headers, None)
}

fn signin_form(server: &Server, headers: &HeaderMap, error: Option<&str>) -> Response {
    let token = random_hex();
    let password = server.settings.admin_password.is_some();
    let mut response = bare_page(
        "Sign in",
        html! {
            section.signin {
                h1 { "Ferry" }
                p { "Sign in with an API key (" code { "ferry keys create --scope read" } ")"
                    @if password { " or the admin password" } "." }
                @if let Some(e) = error {
                    p.error role="alert" { (e) }
                }
                form method="post" action="/signin" {
                    input type="hidden" name="csrf" value=(token);
                    label for="key" { "API key" }
                    input #key type="password" name="key" autocomplete="off" placeholder="fy_…" autofocus;
                    @if password {
                        label for="password" { "or admin password" }
                        input #password type="password" name="password" autocomplete="current-password";
                        @if server.multi {
                            label for="workspace" { "Workspace (admin password)" }
                            select #workspace name="workspace" {
                                @for w in server.workspaces.keys() { option value=(w) { (w) } }
                            }
                        }
                    }
                    button type="submit" { "Sign in" }
                }
            }
        },
    );
    response.headers_mut().append(header::SET_COOKIE, set_cookie(SIGNIN_COOKIE, &token, "/signin", 3600, behind_tls(headers)));
    response
}

#[derive(Deserialize)]
pub struct SignIn {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    key: String,
    #[serde(default)]
    password: String,
    workspace: Option<String>,
}

pub async fn signin(State(server): State<Arc<Server>>, headers: HeaderMap, Form(form): Form<SignIn>) -> Response {
    let refuse = |message: &str| {
        let mut r = signin_form(&server, &headers, Some(message));
        *r.status_mut() = axum::http::StatusCode::UNAUTHORIZED;
        r
    };
    // Double submit: a form posted from another site has no matching cookie (SameSite=Strict).
    if !cookie(&headers, SIGNIN_COOKIE).is_some_and(|c| same(c, &form.csrf)) {
        return refuse("The sign-in form expired; please sign in again.");
    }
    let (workspace, principal) = if !form.key.trim().is_empty() {
        match crate::auth::key_of(&server, form.key.trim()).await {
            Ok((state, key)) => (state.name.clone(), Principal::Key(key.id)),
            Err(e) if e.status == axum::http::StatusCode::SERVICE_UNAVAILABLE => return refuse("The state store is unavailable; try again."),
            Err(_) => return refuse("Unknown or revoked API key."),
        }
    } else if !form.password.is_empty() {
        match &server.settings.admin_password {
            Some(expected) if same(expected.expose(), &form.password) => {
                let ws = form.workspace.filter(|w| server.workspaces.contains_key(w)).or_else(|| server.workspaces.keys().next().cloned());
                let Some(ws) = ws else { return refuse("This server has no workspace.") };
                (ws, Principal::Admin)
            }
            Some(_) => {
                tracing::warn!("dashboard sign-in refused: wrong admin password");
                return refuse("Wrong admin password.");
            }
            None => return refuse(&format!("No admin password is configured ({ADMIN_PASSWORD_ENV}); sign in with an API key.")),
        }
    } else {
        return refuse("Enter an API key or the admin password.");
    };
    let id = random_hex();
    {
        let mut sessions = server.dashboard.sessions.lock().expect("sessions lock");
        sessions.retain(|_, s| s.last_seen.elapsed() <= IDLE_TIMEOUT);
        sessions.insert(id.clone(), Session { workspace: workspace.clone(), principal: principal.clone(), csrf: random_hex(), last_seen: Instant::now(), flash: None });
    }
    tracing::info!(workspace, who = ?principal, "dashboard sign-in");
    let mut r = Redirect::to("/").into_response();
    let secure = behind_tls(&headers);
    r.headers_mut().append(header::SET_COOKIE, set_cookie(SESSION_COOKIE, &id, "/", IDLE_TIMEOUT.as_secs(), secure));
    r.headers_mut().append(header::SET_COOKIE, set_cookie(SIGNIN_COOKIE, "", "/signin", 0, secure));
    r
}

#[derive(Deserialize)]
pub struct CsrfOnly {
    #[serde(default)]
    pub csrf: String,
}

pub async fn signout(State(server): State<Arc<Server>>, headers: HeaderMap, Form(form): Form<CsrfOnly>) -> Result<Response, DashError> {
    let v = poster(&server, &headers, &form.csrf).await?;
    server.dashboard.sessions.lock().expect("sessions lock").remove(&v.session);
    let mut r = Redirect::to("/signin").into_response();
    r.headers_mut().append(header::SET_COOKIE, set_cookie(SESSION_COOKIE, "", "/", 0, behind_tls(&headers)));
    Ok(r)
}

#[derive(Deserialize)]
pub struct SwitchWorkspace {
    #[serde(default)]
    csrf: String,
    workspace: String,
}

/// The admin password's sessions look at one workspace at a time; a key's session stays in its own.
pub async fn switch_workspace(State(server): State<Arc<Server>>, headers: HeaderMap, Form(form): Form<SwitchWorkspace>) -> Result<Response, DashError> {
    let v = poster(&server, &headers, &form.csrf).await?;
    if !v.workspaces.contains(&form.workspace) {
        return Err(DashError::Forbidden(format!("you cannot open workspace {:?}", form.workspace)));
    }
    if let Some(s) = server.dashboard.sessions.lock().expect("sessions lock").get_mut(&v.session) {
        s.workspace = form.workspace.clone();
    }
    Ok(Redirect::to("/").into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_are_found_among_several_and_set_strict_http_only_and_secure_behind_tls() {
        let mut h = HeaderMap::new();
        h.insert(header::COOKIE, HeaderValue::from_static("a=1; ferry_session=abc; b=2"));
        assert_eq!(cookie(&h, SESSION_COOKIE), Some("abc"));
        assert_eq!(cookie(&h, "ferry_signin"), None);
        let c = set_cookie(SESSION_COOKIE, "x", "/", 60, true);
        assert_eq!(c.to_str().unwrap(), "ferry_session=x; Path=/; HttpOnly; SameSite=Strict; Max-Age=60; Secure");
        assert!(!set_cookie(SESSION_COOKIE, "x", "/", 60, false).to_str().unwrap().contains("Secure"));
        assert!(same("abc", "abc") && !same("abc", "abd") && !same("abc", ""));
    }
}
