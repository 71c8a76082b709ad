//! The quarantine: what is held, where it came from and why; release
//! with a reason and the SHA-256 confirmed (the same checks as
//! `bucketscan release`); and the allow-list, with who released what,
//! revoke (a reason and the digest confirmed too), and what was revoked.

use super::{Page, layout, result_badge, unavailable};
use crate::config::Role;
use crate::identity::User;
use crate::{Console, PostProof, check_post};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Form};
use bucketscan_core::object::printable;
use bucketscan_runtime::quarantine::list::Held;
use bucketscan_runtime::quarantine::release::{ReleaseRequest, release as release_object};
use bucketscan_runtime::results::revocations::StoredRevocation;
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
        (allow_list(&console, &user, &token))
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

fn allow_list(console: &Console, user: &User, token: &str) -> Markup {
    let list = console.agent.scanner.allow_list.load();
    let entries = list.entries();
    let revocations = list.revocations();
    let may_revoke = user.may(Role::Releaser);
    html! {
        @if entries.is_empty() { p { "No digest is allowed." } }
        @else {
            table id="allow-list" {
                tr { th { "SHA-256" } th { "Where" } th { "Who, when, why" } @if may_revoke { th { "Revoke" } } }
                @for (digest, entry) in &entries {
                    tr {
                        td.digest { (digest) } td.key { (entry.source) } td { (printable(entry.note.as_deref().unwrap_or(""))) }
                        @if may_revoke { td { (revoke_form(digest, token)) } }
                    }
                }
            }
        }
        @if !revocations.is_empty() {
            h3 { "Revoked" }
            table id="revoked" {
                tr { th { "SHA-256" } th { "Where" } th { "Who, when, why" } }
                @for (digest, why) in &revocations {
                    tr { td.digest { (digest) } td.key { (why.source) } td { (printable(why.note.as_deref().unwrap_or(""))) } }
                }
            }
        }
        p { "A revocation is kept in the results store and the list object, and every running agent keeps it even if an older copy of the list is written back. To make one part of the reviewed config, add its digest to " code { "[allow-list] revoked" } "." }
    }
}

/// The revoke form: a reason, and the SHA-256 confirmed by ticking it.
fn revoke_form(digest: &str, token: &str) -> Markup {
    html! {
        form.revoke method="post" action="/console/allow-list/revoke" {
            input type="hidden" name=(crate::csrf::FIELD) value=(token);
            input type="hidden" name="sha256" value=(digest);
            input type="text" name="reason" required placeholder="why it is not safe" size="24";
            label { input type="checkbox" name="confirm" value=(digest) required; " revoke these bytes" }
            button type="submit" { "Revoke" }
        }
    }
}

/// What a releaser's form must carry before anything happens: the role
/// and the form's proof, a reason, and the tick confirming the SHA-256
/// shown. The trimmed reason, or the status and why it is refused.
fn confirmed<'f>(
    console: &Console,
    user: &User,
    proof: &PostProof<'_>,
    reason: &'f str,
    confirm: &str,
    sha256: &str,
    what: &str,
) -> Result<&'f str, (StatusCode, String)> {
    check_post(console, user, Role::Releaser, proof).map_err(|refused| (StatusCode::FORBIDDEN, refused))?;
    let reason = reason.trim();
    if reason.is_empty() {
        return Err((StatusCode::BAD_REQUEST, format!("{what} needs a reason")));
    }
    if !confirm.eq_ignore_ascii_case(sha256) {
        let why = "tick the box that confirms the SHA-256 shown";
        return Err((StatusCode::BAD_REQUEST, why.into()));
    }
    Ok(reason)
}

/// What a release or revocation did (or why not), with the way back.
fn outcome_page(user: &User, title: &str, status: StatusCode, body: Markup) -> Response {
    let mut page = layout(
        Some(user),
        title,
        html! { (body) p { a href="/console/quarantine" { "Back to the quarantine" } } },
    );
    page.status = status;
    page.into_response()
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
    let proof = PostProof::new(&headers, &form.csrf);
    let reason = match confirmed(
        &console,
        &user,
        &proof,
        &form.reason,
        &form.confirm,
        &form.sha256,
        "a release",
    ) {
        Ok(reason) => reason,
        Err((status, why)) => return super::refused(status, &why),
    };
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
    outcome_page(&user, "Release", status, body)
}

#[derive(Debug, Deserialize)]
pub struct RevokeForm {
    csrf: String,
    sha256: String,
    #[serde(default)]
    confirm: String,
    #[serde(default)]
    reason: String,
}

/// Revokes an allow-listed digest for the fleet: the results store and
/// the list object record it (see `bucketscan_runtime::allow_list`).
pub async fn revoke(
    State(console): State<Arc<Console>>,
    Extension(user): Extension<User>,
    headers: HeaderMap,
    Form(form): Form<RevokeForm>,
) -> Response {
    let proof = PostProof::new(&headers, &form.csrf);
    let reason = match confirmed(
        &console,
        &user,
        &proof,
        &form.reason,
        &form.confirm,
        &form.sha256,
        "a revocation",
    ) {
        Ok(reason) => reason,
        Err((status, why)) => return super::refused(status, &why),
    };
    let by = format!("{} (console)", user.name());
    let revocation = StoredRevocation::now(&form.sha256, &by, reason, &client_address(&headers));
    let outcome = console.agent.revoke_allowed(revocation).await;
    tracing::info!(user = %user.name(), sha256 = %printable(&form.sha256), revoked = outcome.is_ok(), "console: revoke");
    let (status, body) = match &outcome {
        Ok(revoked) => (
            StatusCode::OK,
            html! {
                p id="revoked-now" { "Revoked " code { (revoked.revocation.sha256) } "." }
                table {
                    tr { th { "By" } td { (revoked.revocation.by) } }
                    tr { th { "Why" } td { (revoked.revocation.reason) } }
                    tr { th { "From" } td { (revoked.revocation.from) } }
                    tr { th { "Recorded in the results store" } td { (if revoked.recorded { "yes" } else { "no (the config names no [results])" }) } }
                    tr { th { "Written to" } td { (revoked.list.as_deref().unwrap_or("(the config names no list object)")) } }
                }
                @if !revoked.recorded {
                    p.warning id="not-recorded" { "Without a results store, an agent started after an older copy of the list is written back would allow these bytes again: add the digest to " code { "[allow-list] revoked" } " in the config too." }
                }
            },
        ),
        Err(err) => (
            StatusCode::CONFLICT,
            html! { p.error id="revoke-failed" { (err.to_string()) } },
        ),
    };
    outcome_page(&user, "Revoke", status, body)
}

/// Where a request came from: the address the load balancer appended to
/// `X-Forwarded-For` (the last one; a client can write the ones before
/// it), `direct` without one, `unparseable` if it is not an address.
fn client_address(headers: &HeaderMap) -> String {
    let Some(last) = headers.get_all("x-forwarded-for").iter().next_back() else {
        return "direct".into();
    };
    let address = last
        .to_str()
        .ok()
        .and_then(|value| value.rsplit(',').next())
        .and_then(|last| last.trim().parse::<std::net::IpAddr>().ok());
    address.map_or_else(|| "unparseable".into(), |address| address.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_client_address_is_the_one_the_load_balancer_appended() {
        let mut headers = HeaderMap::new();
        assert_eq!(client_address(&headers), "direct");
        headers.append("x-forwarded-for", "6.6.6.6, 10.0.0.9".parse().unwrap());
        headers.append("x-forwarded-for", "203.0.113.7".parse().unwrap());
        assert_eq!(client_address(&headers), "203.0.113.7");
        let mut hidden = HeaderMap::new();
        let bidi = axum::http::HeaderValue::from_bytes("\u{202e}1.2.3.4".as_bytes()).unwrap();
        hidden.append("x-forwarded-for", bidi);
        assert_eq!(client_address(&hidden), "unparseable");
        let mut forged = HeaderMap::new();
        forged.append("x-forwarded-for", "10.0.0.1, <b>admin</b>".parse().unwrap());
        assert_eq!(client_address(&forged), "unparseable");
    }
}
