//! The console: what was scanned and found, the quarantine and its
//! releases, the pipelines and the agents' health, in a browser — served
//! by `bucketscan serve` under `/console/`.
//!
//! - [`identity`]: who is asking (the load balancer's signed token, or
//!   the local development user) and [`config`]: which role they have;
//! - [`csrf`]: every state-changing form proven to come from this site;
//! - [`pages`]: server-rendered HTML (maud escapes every value: object
//!   keys, tags, finding names and plugin text are the uploader's), no
//!   script at all, under a Content-Security-Policy that allows none.
//!
//! The console keeps no session and no state of its own: reads come from
//! the results table, the quarantine buckets and the running agent;
//! releases go through the same code as `bucketscan release`.

pub mod config;
pub mod csrf;
pub mod identity;
mod pages;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::Redirect;
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use bucketscan_runtime::agent::Agent;
use config::Role;
use csrf::CsrfKey;
use identity::{AlbVerifier, User};
use std::sync::Arc;

/// Nothing but this site's own stylesheet, images and forms.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; \
     frame-ancestors 'none'; base-uri 'none'";

/// How the console knows who is asking.
pub enum SignIn {
    /// The load balancer's signed token (production).
    LoadBalancer(AlbVerifier),
    /// One fixed user, for a local run on loopback only
    /// (`bucketscan serve --console-dev-user NAME --role ROLE`).
    DevUser(User),
}

/// An API key as the keys page lists it (the config holds only digests).
#[derive(Debug, Clone)]
pub struct KeyEntry {
    pub id: String,
    pub pipelines: Vec<String>,
    pub buckets: Vec<String>,
}

/// The console's shared state.
pub struct Console {
    agent: Arc<Agent>,
    sign_in: SignIn,
    csrf: CsrfKey,
    keys: Vec<KeyEntry>,
    /// Makes a new API key and its SHA-256 (the API's own maker).
    make_key: fn() -> (String, String),
    /// The overview's last-24-hours part, recounted at most every
    /// [`pages::overview::RECOUNT_AFTER`]: counting reads every result of
    /// the day, and a viewer pressing reload must not repeat that.
    last_day: tokio::sync::Mutex<Option<(std::time::Instant, maud::Markup)>>,
}

impl Console {
    pub fn new(
        agent: Arc<Agent>,
        sign_in: SignIn,
        csrf: CsrfKey,
        keys: Vec<KeyEntry>,
        make_key: fn() -> (String, String),
    ) -> Self {
        Self {
            agent,
            sign_in,
            csrf,
            keys,
            make_key,
            last_day: tokio::sync::Mutex::default(),
        }
    }

    /// The console's routes, all under `/console/` (merged into a router
    /// of any state); `/console` redirects there.
    pub fn router<S: Clone + Send + Sync + 'static>(self: &Arc<Self>) -> Router<S> {
        Router::new()
            .route("/console", get(|| async { Redirect::permanent("/console/") }))
            .route("/console/", get(pages::overview::page))
            .route("/console/results", get(pages::results::search))
            .route("/console/object", get(pages::results::history))
            .route("/console/quarantine", get(pages::quarantine::page))
            .route("/console/quarantine/release", post(pages::quarantine::release))
            .route("/console/allow-list/revoke", post(pages::quarantine::revoke))
            .route("/console/pipelines", get(pages::pipelines::page))
            .route("/console/keys", get(pages::keys::page).post(pages::keys::create))
            .route("/console/style.css", get(pages::stylesheet))
            .route("/console/{*rest}", any(pages::not_found))
            .layer(middleware::from_fn_with_state(self.clone(), sign_in))
            .layer(middleware::map_response(security_headers))
            .with_state(self.clone())
    }

    async fn user(&self, token: Option<&[u8]>) -> Result<User, identity::IdentityError> {
        match &self.sign_in {
            SignIn::DevUser(user) => Ok(user.clone()),
            SignIn::LoadBalancer(verifier) => {
                verifier
                    .verify(token, time::OffsetDateTime::now_utc().unix_timestamp())
                    .await
            }
        }
    }
}

/// Every console request names a signed-in user; one with no role sees
/// only the page that says so.
async fn sign_in(State(console): State<Arc<Console>>, mut request: Request, next: Next) -> Response {
    if request.uri().path() == "/console/style.css" {
        return next.run(request).await;
    }
    if matches!(console.sign_in, SignIn::DevUser(_)) {
        let host = request.headers().get(header::HOST).and_then(|v| v.to_str().ok());
        if !host.is_some_and(is_loopback_host) {
            // A page elsewhere whose name was rebound to 127.0.0.1 must not
            // become the development user.
            return pages::refused(
                StatusCode::FORBIDDEN,
                "the development user answers only requests for localhost, 127.0.0.1 or [::1]",
            );
        }
    }
    let token = request
        .headers()
        .get(identity::TOKEN_HEADER)
        .map(|v| v.as_bytes().to_vec());
    let user = match console.user(token.as_deref()).await {
        Ok(user) => user,
        Err(err) => {
            tracing::warn!(error = %err, "console: identity refused");
            return pages::refused(StatusCode::FORBIDDEN, &err.to_string());
        }
    };
    if user.role.is_none() {
        return pages::no_role(&user);
    }
    request.extensions_mut().insert(user);
    next.run(request).await
}

/// `Referrer-Policy: same-origin`, not `no-referrer`: under the latter
/// browsers send `Origin: null` with the console's own forms, and the
/// origin check could not tell them from a forgery.
/// Whether a `Host` header names this machine's loopback (any port).
fn is_loopback_host(host: &str) -> bool {
    let name = match host.strip_prefix('[') {
        Some(bracketed) => bracketed.split(']').next().unwrap_or_default(),
        None => host.rsplit_once(':').map_or(host, |(name, _)| name),
    };
    matches!(name, "localhost" | "127.0.0.1" | "::1")
}

async fn security_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    for (name, value) in [
        (header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "same-origin"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::CACHE_CONTROL, "no-store"),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    response
}

/// What a state-changing request must prove before anything happens: the
/// role, a browser that says it came from this site, and the form's token.
/// The error is why it is refused (403).
fn check_post(console: &Console, user: &User, role: Role, parts: &PostProof<'_>) -> Result<(), String> {
    if !user.may(role) {
        return Err(format!(
            "{} may not do this: it takes the {} role",
            user.name(),
            role.as_str()
        ));
    }
    if !csrf::same_origin(parts.host, parts.origin, parts.fetch_site) {
        return Err("this form was sent from another site".into());
    }
    if !console.csrf.verify(&user.name(), parts.token) {
        return Err("this form's token is not yours (or is stale): reload the page and try again".into());
    }
    Ok(())
}

/// The parts of a POST that [`check_post`] looks at.
struct PostProof<'a> {
    host: Option<&'a str>,
    origin: Option<&'a str>,
    fetch_site: Option<&'a str>,
    token: &'a str,
}

impl<'a> PostProof<'a> {
    fn new(headers: &'a axum::http::HeaderMap, token: &'a str) -> Self {
        let text = |name: header::HeaderName| headers.get(name).and_then(|v| v.to_str().ok());
        Self {
            host: text(header::HOST),
            origin: text(header::ORIGIN),
            fetch_site: headers.get("sec-fetch-site").and_then(|v| v.to_str().ok()),
            token,
        }
    }
}

impl IntoResponse for pages::Page {
    fn into_response(self) -> Response {
        (
            self.status,
            [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
            self.markup.into_string(),
        )
            .into_response()
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn only_loopback_names_reach_the_development_user() {
        for host in ["localhost", "127.0.0.1:8080", "[::1]:9000", "localhost:1"] {
            assert!(super::is_loopback_host(host), "{host}");
        }
        for host in [
            "evil.test",
            "evil.test:8080",
            "127.0.0.1.evil.test",
            "localhost.evil.test:80",
            "[::2]:80",
        ] {
            assert!(!super::is_loopback_host(host), "{host}");
        }
    }
}
