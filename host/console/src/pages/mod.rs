//! The console's pages: one module per page, sharing the layout here.
//! Every value goes through maud's escaping; nothing is ever written with
//! `PreEscaped` but the stylesheet link and fixed markup.

pub mod keys;
pub mod overview;
pub mod pipelines;
pub mod quarantine;
pub mod results;

use crate::identity::User;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use maud::{DOCTYPE, Markup, html};

/// A rendered page and its status.
pub struct Page {
    pub status: StatusCode,
    pub markup: Markup,
}

const STYLESHEET: &str = include_str!("style.css");

/// The navigation, the signed-in user and `body`.
pub fn layout(user: Option<&User>, title: &str, body: Markup) -> Page {
    layout_with_status(StatusCode::OK, user, title, body)
}

fn layout_with_status(status: StatusCode, user: Option<&User>, title: &str, body: Markup) -> Page {
    let markup = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · bucketscan" }
                link rel="stylesheet" href="/console/style.css";
            }
            body {
                header {
                    nav {
                        strong { "bucketscan" }
                        a href="/console/" { "Overview" }
                        a href="/console/results" { "Results" }
                        a href="/console/quarantine" { "Quarantine" }
                        a href="/console/pipelines" { "Pipelines" }
                        a href="/console/keys" { "API keys" }
                    }
                    @if let Some(user) = user {
                        span.user {
                            (user.name())
                            @if let Some(role) = user.role { " · " (role.as_str()) }
                        }
                    }
                }
                main {
                    h1 { (title) }
                    (body)
                }
            }
        }
    };
    Page { status, markup }
}

pub async fn stylesheet() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "max-age=3600"),
        ],
        STYLESHEET,
    )
        .into_response()
}

pub async fn not_found() -> Response {
    layout_with_status(
        StatusCode::NOT_FOUND,
        None,
        "Not found",
        html! { p { "No such page." } },
    )
    .into_response()
}

/// A refusal (identity, role, forged form), said plainly.
pub fn refused(status: StatusCode, why: &str) -> Response {
    layout_with_status(status, None, "Not allowed", html! { p.error { (why) } }).into_response()
}

/// Signed in, but no role in the config names this user.
pub fn no_role(user: &User) -> Response {
    let body = html! {
        p { "You are signed in as " strong { (user.name()) } ", but no role is mapped to you yet, so there is nothing you can see here." }
        p { "Ask whoever runs bucketscan to add one of your groups, your email domain or your address to "
            code { "[[serve.console.roles]]" } " in its config." }
        @if !user.claims.groups.is_empty() {
            p { "Your groups: " (user.claims.groups.join(", ")) }
        }
    };
    layout_with_status(StatusCode::FORBIDDEN, Some(user), "No role yet", body).into_response()
}

/// A failure reading something a page shows, in place of that part.
pub fn unavailable(what: &str, why: &str) -> Markup {
    html! { p.error { (what) " is unavailable: " (why) } }
}

/// A result name as a badge (its class is one of a fixed set).
pub fn result_badge(result: &str) -> Markup {
    let class = match result {
        "clean" | "infected" | "blocked" | "unscannable" | "error" => result,
        _ => "other",
    };
    html! { span class={ "badge " (class) } { (result) } }
}

/// The link to one object's history.
pub fn object_link(bucket: &str, key: &str) -> Markup {
    let href = format!(
        "/console/object?bucket={}&key={}",
        query_value(bucket),
        query_value(key)
    );
    html! { a href=(href) { (bucket) "/" (bucketscan_core::object::printable(key)) } }
}

/// Everything but RFC 3986's unreserved characters is encoded.
const QUERY_VALUE: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// `value` encoded for a query string.
fn query_value(value: &str) -> String {
    percent_encoding::utf8_percent_encode(value, QUERY_VALUE).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Claims, Role};

    fn user() -> User {
        User {
            claims: Claims {
                subject: "u".into(),
                email: Some("<b>ana</b>@example.com".into()),
                email_verified: true,
                groups: vec![],
            },
            role: Some(Role::Viewer),
        }
    }

    #[test]
    fn a_hostile_key_is_text_and_its_link_is_encoded() {
        let key = "<img src=x onerror=alert(1)>\".pdf";
        let html = layout(Some(&user()), "t", object_link("staging", key))
            .markup
            .into_string();
        assert!(!html.contains("<img"), "{html}");
        assert!(html.contains("&lt;img src=x onerror=alert(1)&gt;&quot;.pdf"), "{html}");
        assert!(
            html.contains("key=%3Cimg%20src%3Dx%20onerror%3Dalert%281%29%3E%22.pdf"),
            "{html}"
        );
        assert!(html.contains("&lt;b&gt;ana&lt;/b&gt;@example.com"), "{html}");
    }

    #[test]
    fn an_unknown_result_gets_no_class_of_its_own() {
        let html = result_badge("x\" onclick=\"y").into_string();
        assert!(html.starts_with("<span class=\"badge other\">"), "{html}");
    }
}
