//! The quarantine: what is held, where it came from and why; release
//! with a reason and the SHA-256 confirmed (the same checks as
//! `bucketscan release`); and the allow-list, with who released what.

use super::{Page, layout, result_badge, unavailable};
use crate::config::Role;
use crate::identity::User;
use crate::{Console, PostProof, check_post};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Form};
use bucketscan_runtime::quarantine::list::Held;
use bucketscan_runtime::quarantine::release::{ReleaseRequest, release as release_object};
use maud::{Markup, html};
use serde::Deserialize;
use std::sync::Arc;

/// Objects listed per quarantine bucket: each costs two S3 requests, and
/// an uploader can fill a quarantine on purpose.
const MAX_ROWS: usize = 200;

pub async fn page(State(console): State<Arc<Console>>, Extension(user): Extension<User>) -> Page {
    let token = console.csrf.token(&user.name());
    let buckets = bucketscan_runtime::quarantine::quarantine_buckets(&console.agent.started_with);
    let mut sections = Vec::new();
    for bucket in &buckets {
        let held = bucketscan_runtime::quarantine::list::list_first(&console.agent, bucket, MAX_ROWS).await;
        sections.push(html! {
            h2 { "s3://" (bucket) }
            @match &held {
                Ok(held) if held.is_empty() => p { "Nothing held." },
                Ok(held) => {
                    @if held.len() >= MAX_ROWS {
                        p { "The first " (MAX_ROWS) " objects in key order; " code { "bucketscan quarantine list" } " lists them all." }
                    }
                    (held_table(held, &user, &token))
                },
                Err(err) => (unavailable("The list", &err.to_string())),
            }
        });
    }
    let body = html! {
        @if buckets.is_empty() { p { "No pipeline copies objects to a quarantine bucket." } }
        @for section in &sections { (section) }
        h2 { "Allow-list" }
        (allow_list(&console))
    };
    layout(Some(&user), "Quarantine", body)
}

fn held_table(held: &[Held], user: &User, token: &str) -> Markup {
    html! {
        table.held {
            tr { th { "Object" } th { "Came from" } th { "Result" } th { "Finding" } th { "Scanned" } th { "Size" } th { "SHA-256" }
                 @if user.may(Role::Releaser) { th { "Release" } } }
            @for object in held {
                tr {
                    td.key { (bucketscan_core::object::printable(&object.key)) }
                    td.key { (object.source.as_deref().unwrap_or("unknown")) }
                    td { (result_badge(object.result.as_deref().unwrap_or("?"))) }
                    td.finding { (object.finding.as_deref().unwrap_or("")) }
                    td { (object.scanned.as_deref().unwrap_or("")) }
                    td { (object.size) }
                    td.digest { (object.sha256.as_deref().unwrap_or("unknown")) }
                    @if user.may(Role::Releaser) { td { (release_form(object, token)) } }
                }
            }
        }
    }
}

/// The release form: a reason, and the SHA-256 confirmed by ticking it.
fn release_form(object: &Held, token: &str) -> Markup {
    let Some(sha256) = &object.sha256 else {
        return html! { "S3 keeps no SHA-256 for this copy: release it with `bucketscan release`" };
    };
    html! {
        form.release method="post" action="/console/quarantine/release" {
            input type="hidden" name=(crate::csrf::FIELD) value=(token);
            input type="hidden" name="bucket" value=(object.bucket);
            input type="hidden" name="key" value=(object.key);
            input type="hidden" name="sha256" value=(sha256);
            input type="text" name="reason" required placeholder="why it is safe" size="24";
            label { input type="checkbox" name="confirm" value=(sha256) required; " these are the bytes I checked" }
            button type="submit" { "Release" }
        }
    }
}

fn allow_list(console: &Console) -> Markup {
    let list = console.agent.scanner.allow_list.load();
    let entries = list.entries();
    html! {
        @if entries.is_empty() { p { "No digest is allowed." } }
        @else {
            table id="allow-list" {
                tr { th { "SHA-256" } th { "Where" } th { "Who, when, why" } }
                @for (digest, entry) in &entries {
                    tr { td.digest { (digest) } td.key { (entry.source) } td { (entry.note.as_deref().unwrap_or("")) } }
                }
            }
        }
        p { "To revoke an entry, add its digest to " code { "[allow-list] revoked" } " in the config: the config stays code, reviewed in version control, and a revocation there holds even if a line is written back to the list object." }
    }
}

#[derive(Debug, Deserialize)]
pub struct ReleaseForm {
    csrf: String,
    bucket: String,
    key: String,
    sha256: String,
    #[serde(default)]
    confirm: String,
    #[serde(default)]
    reason: String,
}

pub async fn release(
    State(console): State<Arc<Console>>,
    Extension(user): Extension<User>,
    headers: HeaderMap,
    Form(form): Form<ReleaseForm>,
) -> Response {
    if let Err(refused) = check_post(&console, &user, Role::Releaser, &PostProof::new(&headers, &form.csrf)) {
        return super::refused(StatusCode::FORBIDDEN, &refused);
    }
    let reason = form.reason.trim();
    if reason.is_empty() {
        return super::refused(StatusCode::BAD_REQUEST, "a release needs a reason");
    }
    if !form.confirm.eq_ignore_ascii_case(&form.sha256) {
        return super::refused(StatusCode::BAD_REQUEST, "tick the box that confirms the SHA-256 shown");
    }
    let request = ReleaseRequest {
        bucket: form.bucket.clone(),
        key: form.key.clone(),
        to: None,
        reason: reason.to_owned(),
        by: Some(format!("{} (console)", user.name())),
        keep: false,
        sha256: form.sha256.clone(),
    };
    let outcome = release_object(&console.agent, request).await;
    tracing::info!(
        user = %user.name(),
        bucket = %form.bucket,
        key = %bucketscan_core::object::printable(&form.key),
        released = outcome.is_ok(),
        "console: release"
    );
    let (status, body) = match &outcome {
        Ok(released) => (
            StatusCode::OK,
            html! {
                p id="released" { "Released " code { (released.from) } " to " code { (released.to) } "." }
                table {
                    tr { th { "SHA-256" } td.digest { (released.sha256) } }
                    tr { th { "Was" } td { (released.was) " " (released.finding.as_deref().unwrap_or("")) } }
                    tr { th { "By" } td { (released.by) } }
                    tr { th { "Why" } td { (released.reason) } }
                    tr { th { "Allow-listed in" } td { (released.allow_list.as_deref().unwrap_or("(the config names no list object)")) } }
                    tr { th { "Published" } td { (released.published.as_deref().unwrap_or("")) } }
                }
            },
        ),
        Err(err) => (
            StatusCode::CONFLICT,
            html! { p.error id="release-failed" { (err.to_string()) } },
        ),
    };
    let mut page = layout(
        Some(&user),
        "Release",
        html! { (body) p { a href="/console/quarantine" { "Back to the quarantine" } } },
    );
    page.status = status;
    page.into_response()
}
