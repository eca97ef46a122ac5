//! API keys of the workspace: listed (paged) for everyone signed in; created (the token shown once, on
//! the answer page only) and revoked with the admin scope.

use super::session::{CsrfOnly, poster, viewer};
use super::*;
use axum::Form;
use axum::extract::{Path, Query, State};
use axum::response::Redirect;

use serde::Deserialize;

type S = State<Arc<Server>>;

#[derive(Deserialize)]
pub struct KeysQuery {
    after: Option<String>,
}

fn keys_page(v: &Viewer, keys: &[ferry_engine::store::keys::ApiKey], created: Option<(&str, &str)>) -> Response {
    let content = html! {
        h1 { "API keys" }
        @if let Some((name, token)) = created {
            div.card.created role="status" {
                h2 { "Key " (name) " created" }
                p { "Copy it now: it is shown this once (only its SHA-256 is stored)." }
                input #new-token type="text" readonly value=(token) aria-label="The new API key" onfocus="this.select()";
            }
        }
        div.scroll { table {
            thead { tr { th scope="col" { "Id" } th scope="col" { "Name" } th scope="col" { "Scopes" } th scope="col" { "Created" } th scope="col" { "Last used" } th scope="col" { "" } } }
            tbody { @for k in keys { tr {
                td { code { (k.id) } } td { (k.name) }
                td { (k.scopes.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")) }
                td { (local_time(&v.state, &k.created_at.to_rfc3339())) }
                td { @match &k.last_used_at { Some(t) => (local_time(&v.state, &t.to_rfc3339())), None => span.muted { "never" } } }
                td { @if k.revoked { span.badge.bad { "revoked" } } @else {
                    form method="post" action=(format!("/keys/{}/revoke", k.id)) { (csrf_field(v)) (action_button(v, Scope::Admin, "Revoke", "danger")) }
                } }
            } } }
        } }
        @if keys.len() as i64 == PAGE {
            @if let Some(last) = keys.last() { p { a href=(format!("/keys?after={}", last.id)) { "More keys →" } } }
        }
        form.card method="post" action="/keys" {
            h2 { "Create a key" }
            (csrf_field(v))
            label for="key-name" { "Name" }
            input #key-name type="text" name="name" required placeholder="website, accounting…";
            fieldset {
                legend { "Scopes" }
                label { input type="checkbox" name="read" value="on" checked; " read" }
                label { input type="checkbox" name="write" value="on"; " write" }
                label { input type="checkbox" name="admin" value="on"; " admin" }
            }
            (action_button(v, Scope::Admin, "Create key", "primary"))
        }
    };
    page(v, "API keys", "/keys", content)
}

pub async fn list(State(server): S, headers: HeaderMap, Query(q): Query<KeysQuery>) -> Page {
    let v = viewer(&server, &headers).await?;
    let keys = v.state.store.keys_page(non_empty(&q.after), PAGE).await?;
    Ok(keys_page(&v, &keys, None))
}

#[derive(Deserialize)]
pub struct CreateForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    name: String,
    read: Option<String>,
    write: Option<String>,
    admin: Option<String>,
}

pub async fn create(State(server): S, headers: HeaderMap, Form(form): Form<CreateForm>) -> Page {
    let v = poster(&server, &headers, &form.csrf).await?;
    v.require(Scope::Admin)?;
    let name = form.name.trim();
    if name.is_empty() || name.len() > 100 {
        return Err(DashError::Invalid("name: 1 to 100 characters, to tell the key apart in this list".into()));
    }
    let scopes: Vec<Scope> = [(form.read.is_some(), Scope::Read), (form.write.is_some(), Scope::Write), (form.admin.is_some(), Scope::Admin)]
        .into_iter()
        .filter_map(|(on, s)| on.then_some(s))
        .collect();
    if scopes.is_empty() {
        return Err(DashError::Invalid("scopes: tick at least one of read, write, admin".into()));
    }
    let (key, token) = v.state.store.create_key(name, &scopes).await?;
    tracing::info!(workspace = %v.state.name, key_id = %key.id, who = %v.actor, "API key created in the dashboard");
    let keys = v.state.store.keys_page(None, PAGE).await?;
    Ok(keys_page(&v, &keys, Some((&key.name, &token))))
}

pub async fn revoke(State(server): S, headers: HeaderMap, Path(id): Path<String>, Form(form): Form<CsrfOnly>) -> Page {
    let v = poster(&server, &headers, &form.csrf).await?;
    v.require(Scope::Admin)?;
    if !v.state.store.revoke_key(&id).await? {
        return Err(DashError::NotFound(format!("no active key {id}")));
    }
    tracing::info!(workspace = %v.state.name, key_id = %id, who = %v.actor, "API key revoked in the dashboard");
    v.flash(format!("Key {id} revoked."));
    Ok(Redirect::to("/keys").into_response())
}
