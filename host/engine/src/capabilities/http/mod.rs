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
            headers,
            body,
            timeout,
            attempts,
        } = request;
        // Requests of every series pass here: the limits hold whatever
        // built them.
        if url.len() > limits::MAX_URL || headers.len() > limits::MAX_HEADERS || body.len() > limits::MAX_BODY {
            return Ok(Err(HttpFailure::NotAllowed(format!(
                "a request over the limits (URL {} bytes, {} headers, body {} bytes; at most {}, {}, {})",
                url.len(),
                headers.len(),
                body.len(),
                limits::MAX_URL,
                limits::MAX_HEADERS,
                limits::MAX_BODY
            ))));
        }
        let url = bucketscan_core::text::cap(&url, limits::MAX_URL);
        if let Some(problem) = headers.iter().find_map(|(name, value)| header_problem(name, value)) {
            return Ok(Err(HttpFailure::NotAllowed(problem)));
        }
        let parsed = match url::Url::parse(&url) {
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
        let mut headers = headers;
        if let Some(secret) = &self.ctx.signing_secret {
            let timestamp = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |since| since.as_secs());
            headers.push((TIMESTAMP_HEADER.into(), timestamp.to_string()));
            headers.push((SIGNATURE_HEADER.into(), signature(secret, timestamp, &body)));
        }

        let timeout = timeout
            .unwrap_or(DEFAULT_TIMEOUT)
            .clamp(Duration::from_millis(1), MAX_TIMEOUT);
        let attempts = attempts.unwrap_or(1).clamp(1, MAX_ATTEMPTS);
        let started = Instant::now();
        let client = self.ctx.clients.for_policy(&policy);
        let mut backoff = FIRST_BACKOFF;
        let mut outcome = Err(HttpFailure::Other(String::new()));
        for attempt in 1..=attempts {
            outcome = post_once(&client, &parsed, &headers, &body, timeout).await;
            let retryable = match &outcome {
                Ok(response) => response.status >= 500 || response.status == 429,
                Err(HttpFailure::NotAllowed(_)) => false,
                Err(_) => true,
            };
            if !retryable || attempt == attempts {
                break;
            }
            tokio::time::sleep(backoff).await;
            backoff *= 2;
        }
        // Waiting on the network is not the plugin's own compute time.
        self.shared.host_time += started.elapsed();
        Ok(outcome.map_err(|failure| {
            let message = format!("POST {url} ({attempts} attempt(s)): {failure}");
            match failure {
                HttpFailure::NotAllowed(_) => HttpFailure::NotAllowed(message),
                HttpFailure::Timeout(_) => HttpFailure::Timeout(message),
                HttpFailure::Connection(_) => HttpFailure::Connection(message),
                HttpFailure::Other(_) => HttpFailure::Other(message),
            }
        }))
    }
}
