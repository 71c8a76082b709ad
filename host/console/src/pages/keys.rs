//! API keys: the ids and scopes the config holds (only their digests are
//! stored), and for admins a new key, shown once with the config entry
//! that enables it. Nothing is stored here: the key works once its entry
//! is in the config (code, reviewed), like `bucketscan api-key`.

use super::{Page, layout};
use crate::config::Role;
use crate::identity::User;
use crate::{Console, PostProof, check_post};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Form};
use maud::html;
use serde::Deserialize;
use std::sync::Arc;

pub async fn page(State(console): State<Arc<Console>>, Extension(user): Extension<User>) -> Page {
    let token = console.csrf.token(&user.name());
    let body = html! {
        @if console.keys.is_empty() { p { "The config holds no API key." } }
        @else {
            table id="keys" {
                tr { th { "Id" } th { "Pipelines (uploads)" } th { "Buckets (object scans)" } }
                @for key in &console.keys {
                    tr { td { (key.id) } td { (key.pipelines.join(", ")) } td { (key.buckets.join(", ")) } }
                }
            }
        }
        @if user.may(Role::Admin) {
            h2 { "A new key" }
            form method="post" action="/console/keys" {
                input type="hidden" name=(crate::csrf::FIELD) value=(token);
                label { "Id " input type="text" name="id" required pattern="[A-Za-z0-9._-]{1,64}"; }
                label { "Pipelines " input type="text" name="pipelines" placeholder="uploads, *"; }
                label { "Buckets " input type="text" name="buckets" placeholder="staging"; }
                button type="submit" { "Make a key" }
            }
        }
    };
    layout(Some(&user), "API keys", body)
}

#[derive(Debug, Deserialize)]
pub struct NewKeyForm {
    csrf: String,
    id: String,
    #[serde(default)]
    pipelines: String,
    #[serde(default)]
    buckets: String,
}

pub async fn create(
    State(console): State<Arc<Console>>,
    Extension(user): Extension<User>,
    headers: HeaderMap,
    Form(form): Form<NewKeyForm>,
) -> Response {
    if let Err(refused) = check_post(&console, &user, Role::Admin, &PostProof::new(&headers, &form.csrf)) {
        return super::refused(StatusCode::FORBIDDEN, &refused);
    }
    let id = form.id.trim();
    if id.is_empty() || id.len() > 64 || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b)) {
        return super::refused(
            StatusCode::BAD_REQUEST,
            "id: letters, digits, `.`, `_` and `-`, at most 64",
        );
    }
    let declared = |name: &&str| *name == "*" || console.agent.started_with.buckets.contains_key(*name);
    let names = |text: &str| -> Result<Vec<String>, String> {
        let names: Vec<&str> = text.split(',').map(str::trim).filter(|n| !n.is_empty()).collect();
        match names.iter().find(|name| !declared(name)) {
            Some(unknown) => Err(format!("`{unknown}` is not a declared bucket or pipeline")),
            None => Ok(names.into_iter().map(str::to_owned).collect()),
        }
    };
    let (pipelines, buckets) = match (names(&form.pipelines), names(&form.buckets)) {
        (Ok(pipelines), Ok(buckets)) => (pipelines, buckets),
        (Err(why), _) | (_, Err(why)) => return super::refused(StatusCode::BAD_REQUEST, &why),
    };
    let (key, digest) = (console.make_key)();
    tracing::info!(user = %user.name(), id, "console: API key made (enabled once its entry is in the config)");
    let entry = format!(
        "[[serve.keys]]\nid = \"{id}\"\nsha256 = \"{digest}\"\npipelines = {pipelines:?}\nbuckets = {buckets:?}\n"
    );
    let body = html! {
        div.shown-once {
            p { strong { "The key, shown this once:" } }
            pre id="new-key" { (key) }
        }
        p { "It works once this entry is in the config (the config holds only its SHA-256):" }
        pre id="key-entry" { (entry) }
    };
    layout(Some(&user), "A new API key", body).into_response()
}
