//! Outbound HTTP POSTs to allow-listed hosts. Grants: `http = [hosts]`, and
//! `http-private = [CIDRs]` for private networks.
//!
//! What a plugin can never reach, whatever its grant: link-local and cloud
//! metadata addresses (the EC2/ECS credential endpoints among them), as
//! literals or after DNS resolution, and anything behind a redirect
//! (redirects are not followed). Private networks (loopback, RFC 1918,
//! CGNAT, ULA, NAT64, …) only when the stage's `http-private` grant names
//! them. Proxies from the environment are ignored, since a proxy would
//! resolve names where this host cannot check them. Answers are read at
//! most [`MAX_RESPONSE`] bytes. When the stage has a `signing-secret`, the
//! host signs every request body; the secret never enters the plugin.

mod address;
mod client;
mod headers;

pub use address::{AddressPolicy, ForbiddenAddress, is_always_forbidden, is_private};
pub use client::{HttpClients, RefusedResolution, check_resolved};
pub use headers::{SIGNATURE_HEADER, TIMESTAMP_HEADER, limits, signature};

use crate::shared::{StageFailure, StageShared};
use bucketscan_core::grants::Grants;
use client::post_once;
use headers::header_problem;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use wasmtime::component::{HasData, Resource};

/// Response bodies are read in chunks and cut at this size: a webhook
/// answer needs little, and a receiver must not be able to stream
/// gigabytes into the agent.
pub const MAX_RESPONSE: usize = 64 * 1024;
/// `send`: caps on what a plugin may ask for.
const MAX_TIMEOUT: Duration = Duration::from_secs(30);
const MAX_ATTEMPTS: u8 = 5;
const FIRST_BACKOFF: Duration = Duration::from_millis(200);

/// HTTP's part of a stage.
pub struct HttpCtx {
    grants: Grants,
    signing_secret: Option<Arc<[u8]>>,
    clients: Arc<HttpClients>,
    requests: usize,
    request_bytes: usize,
    sends: usize,
}

impl HttpCtx {
    pub fn new(grants: Grants, signing_secret: Option<Arc<[u8]>>, clients: Arc<HttpClients>) -> Self {
        Self {
            grants,
            signing_secret,
            clients,
            requests: 0,
            request_bytes: 0,
            sends: 0,
        }
    }
}

/// A request a plugin asks for.
#[derive(Debug, Clone, Default)]
pub struct HttpRequest {
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub timeout: Option<Duration>,
    pub attempts: Option<u8>,
}

/// An answer.
#[derive(Debug, Clone)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// Why a request got no answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HttpFailure {
    NotAllowed(String),
    Timeout(String),
    Connection(String),
    Other(String),
}

impl std::fmt::Display for HttpFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::NotAllowed(m) | Self::Timeout(m) | Self::Connection(m) | Self::Other(m) => f.write_str(m),
        }
    }
}

impl HttpFailure {
    /// The same failure, its message prefixed with `context` (the request).
    fn within(self, context: String) -> Self {
        let message = format!("{context}: {self}");
        match self {
            Self::NotAllowed(_) => Self::NotAllowed(message),
            Self::Timeout(_) => Self::Timeout(message),
            Self::Connection(_) => Self::Connection(message),
            Self::Other(_) => Self::Other(message),
        }
    }
}

/// What HTTP sees of the store.
pub struct HttpCtxView<'a> {
    pub ctx: &'a mut HttpCtx,
    pub shared: &'a mut StageShared,
}

/// The projection from a store's state to HTTP.
pub trait HttpView: Send {
    fn http(&mut self) -> HttpCtxView<'_>;
}

/// Marks HTTP for `add_to_linker`.
pub struct HasHttp;

impl HasData for HasHttp {
    type Data<'a> = HttpCtxView<'a>;
}

/// The per-attempt timeout when a plugin sets none.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

impl HttpCtxView<'_> {
    /// Counts `bytes` more into this stage's requests; traps past the
    /// limits.
    fn charge(&mut self, bytes: usize) -> wasmtime::Result<()> {
        self.ctx.request_bytes = self.ctx.request_bytes.saturating_add(bytes);
        if self.ctx.request_bytes > limits::MAX_REQUEST_BYTES {
            return Err(self.shared.fail(StageFailure::CallLimit(format!(
                "more than {} bytes put into HTTP requests in one stage",
                limits::MAX_REQUEST_BYTES
            ))));
        }
        Ok(())
    }

    /// A new request to `url`. Traps when the stage has no `http` grant
    /// at all (nothing it builds could be sent) or past the limits.
    pub fn new_request(&mut self, url: String) -> wasmtime::Result<HttpRequest> {
        if self.ctx.grants.http.is_empty() {
            return Err(self
                .shared
                .fail(StageFailure::NotGranted(bucketscan_core::grants::NotGranted {
                    capability: bucketscan_core::grants::Capability::Http,
                    detail: "the stage has no `http` grant".into(),
                })));
        }
        self.ctx.requests += 1;
        if self.ctx.requests > limits::MAX_REQUESTS {
            return Err(self.shared.fail(StageFailure::CallLimit(format!(
                "more than {} HTTP requests built in one stage",
                limits::MAX_REQUESTS
            ))));
        }
        if url.len() > limits::MAX_URL {
            return Err(self.shared.fail(StageFailure::CallLimit(format!(
                "a request URL of {} bytes; at most {} are allowed",
                url.len(),
                limits::MAX_URL
            ))));
        }
        self.charge(url.len())?;
        Ok(HttpRequest {
            url,
            ..HttpRequest::default()
        })
    }

    /// Adds a header to `request`, within the limits.
    pub fn add_header(&mut self, request: &Resource<HttpRequest>, name: String, value: String) -> wasmtime::Result<()> {
        if self.shared.table.get(request)?.headers.len() >= limits::MAX_HEADERS {
            return Err(self.shared.fail(StageFailure::CallLimit(format!(
                "more than {} headers on one request",
                limits::MAX_HEADERS
            ))));
        }
        self.charge(name.len() + value.len())?;
        self.shared.table.get_mut(request)?.headers.push((name, value));
        Ok(())
    }

    /// Sets the body of `request`, within the limits.
    pub fn set_body(&mut self, request: &Resource<HttpRequest>, body: Vec<u8>) -> wasmtime::Result<()> {
        if body.len() > limits::MAX_BODY {
            return Err(self.shared.fail(StageFailure::CallLimit(format!(
                "a request body of {} bytes; at most {} are allowed",
                body.len(),
                limits::MAX_BODY
            ))));
        }
        self.charge(body.len())?;
        self.shared.table.get_mut(request)?.body = body;
        Ok(())
    }

    /// Sends `request`; the outer error traps the stage (a host outside the
    /// grant, too many sends).
    pub async fn send(&mut self, request: HttpRequest) -> wasmtime::Result<Result<HttpResponse, HttpFailure>> {
        self.ctx.sends += 1;
        if self.ctx.sends > limits::MAX_SENDS {
            return Err(self.shared.fail(StageFailure::CallLimit(format!(
                "more than {} HTTP sends in one stage",
                limits::MAX_SENDS
            ))));
        }
        let HttpRequest {
            url,
            mut headers,
            body,
            timeout,
            attempts,
        } = request;
        if let Some(refused) = over_limits(&url, &headers, &body) {
            return Ok(Err(refused));
        }
        let url = bucketscan_core::text::cap(&url, limits::MAX_URL);
        let (parsed, policy) = match self.destination(&url)? {
            Ok(destination) => destination,
            Err(refused) => return Ok(Err(refused)),
        };
        if let Some(secret) = &self.ctx.signing_secret {
            sign(secret, &mut headers, &body);
        }
        let timeout = timeout
            .unwrap_or(DEFAULT_TIMEOUT)
            .clamp(Duration::from_millis(1), MAX_TIMEOUT);
        let attempts = attempts.unwrap_or(1).clamp(1, MAX_ATTEMPTS);
        let started = Instant::now();
        let client = self.ctx.clients.for_policy(&policy);
        let outcome = post_with_retries(&client, &parsed, &headers, &body, timeout, attempts).await;
        // Waiting on the network is not the plugin's own compute time.
        self.shared.host_time += started.elapsed();
        Ok(outcome.map_err(|failure| failure.within(format!("POST {url} ({attempts} attempt(s))"))))
    }

    /// Where `url` goes and the address policy that guards the connection;
    /// a host outside the stage's grant traps it.
    fn destination(&mut self, url: &str) -> wasmtime::Result<Result<(url::Url, AddressPolicy), HttpFailure>> {
        let parsed = match url::Url::parse(url) {
            Ok(parsed) if matches!(parsed.scheme(), "http" | "https") => parsed,
            Ok(_) => {
                return Ok(Err(HttpFailure::NotAllowed(format!(
                    "`{url}`: only http and https URLs are allowed"
                ))));
            }
            Err(err) => return Ok(Err(HttpFailure::NotAllowed(format!("`{url}`: {err}")))),
        };
        let host = parsed
            .host_str()
            .unwrap_or_default()
            .trim_matches(['[', ']'])
            .to_owned();
        if let Err(err) = self.ctx.grants.check_http(&host) {
            return Err(self.shared.fail(StageFailure::NotGranted(err)));
        }
        let policy = AddressPolicy::new(self.ctx.grants.http_private.clone());
        if let Ok(ip) = host.parse::<IpAddr>()
            && let Err(why) = policy.check(ip)
        {
            return Ok(Err(HttpFailure::NotAllowed(format!("`{url}`: {why}"))));
        }
        Ok(Ok((parsed, policy)))
    }
}

/// Requests of every series pass here: the limits hold whatever built
/// them.
fn over_limits(url: &str, headers: &[(String, String)], body: &[u8]) -> Option<HttpFailure> {
    if url.len() > limits::MAX_URL || headers.len() > limits::MAX_HEADERS || body.len() > limits::MAX_BODY {
        return Some(HttpFailure::NotAllowed(format!(
            "a request over the limits (URL {} bytes, {} headers, body {} bytes; at most {}, {}, {})",
            url.len(),
            headers.len(),
            body.len(),
            limits::MAX_URL,
            limits::MAX_HEADERS,
            limits::MAX_BODY
        )));
    }
    headers
        .iter()
        .find_map(|(name, value)| header_problem(name, value))
        .map(HttpFailure::NotAllowed)
}

/// The host's signature of the body, so a receiver can tell the agent's
/// requests from anyone else's (the secret never enters the plugin).
fn sign(secret: &[u8], headers: &mut Vec<(String, String)>, body: &[u8]) {
    let timestamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| since.as_secs());
    headers.push((TIMESTAMP_HEADER.into(), timestamp.to_string()));
    headers.push((SIGNATURE_HEADER.into(), signature(secret, timestamp, body)));
}

/// Up to `attempts` POSTs, backing off between them, while the answer is a
/// server error, 429 or a transport failure.
async fn post_with_retries(
    client: &reqwest::Client,
    url: &url::Url,
    headers: &[(String, String)],
    body: &[u8],
    timeout: Duration,
    attempts: u8,
) -> Result<HttpResponse, HttpFailure> {
    let mut backoff = FIRST_BACKOFF;
    for attempt in 1..attempts {
        let outcome = post_once(client, url, headers, body, timeout).await;
        let retryable = match &outcome {
            Ok(response) => response.status >= 500 || response.status == 429,
            Err(HttpFailure::NotAllowed(_)) => false,
            Err(_) => true,
        };
        if !retryable {
            return outcome;
        }
        tracing::debug!(attempt, "POST {url}: retrying in {} ms", backoff.as_millis());
        tokio::time::sleep(backoff).await;
        backoff *= 2;
    }
    post_once(client, url, headers, body, timeout).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(name: &str, value: &str) -> (String, String) {
        (name.to_owned(), value.to_owned())
    }

    #[test]
    fn a_request_within_the_limits_passes() {
        let headers = [header("content-type", "application/json")];
        assert_eq!(over_limits("https://hooks.example/x", &headers, b"{}"), None);
    }

    #[test]
    fn a_request_over_any_limit_is_refused_naming_the_limits() {
        let long_url = format!("https://hooks.example/{}", "a".repeat(limits::MAX_URL));
        let many = vec![header("x-a", "1"); limits::MAX_HEADERS + 1];
        let big = vec![0u8; limits::MAX_BODY + 1];
        for refused in [
            over_limits(&long_url, &[], b""),
            over_limits("https://h/", &many, b""),
            over_limits("https://h/", &[], &big),
        ] {
            let Some(HttpFailure::NotAllowed(why)) = refused else {
                panic!("not refused: {refused:?}")
            };
            assert!(why.contains("over the limits"), "{why}");
        }
    }

    #[test]
    fn headers_that_route_frame_or_forge_the_signature_are_refused() {
        for name in ["Host", "transfer-encoding", SIGNATURE_HEADER, "proxy-authorization"] {
            let refused = over_limits("https://h/", &[header(name, "x")], b"");
            assert!(
                matches!(refused, Some(HttpFailure::NotAllowed(_))),
                "{name}: {refused:?}"
            );
        }
        let smuggled = over_limits("https://h/", &[header("x-a", "1\r\nHost: other")], b"");
        assert!(matches!(smuggled, Some(HttpFailure::NotAllowed(_))));
    }

    #[test]
    fn a_failure_keeps_its_kind_and_names_the_request() {
        let failure = HttpFailure::Timeout("timed out".into()).within("POST https://h/ (3 attempt(s))".into());
        assert_eq!(
            failure,
            HttpFailure::Timeout("POST https://h/ (3 attempt(s)): timed out".into())
        );
    }

    #[test]
    fn the_signature_headers_are_the_hosts_over_the_body_sent() {
        let mut headers = vec![header("content-type", "application/json")];
        sign(b"secret", &mut headers, b"{}");
        let timestamp: u64 = headers[1].1.parse().unwrap();
        assert_eq!(headers[1].0, TIMESTAMP_HEADER);
        assert_eq!(
            headers[2],
            header(SIGNATURE_HEADER, &signature(b"secret", timestamp, b"{}"))
        );
    }
}
