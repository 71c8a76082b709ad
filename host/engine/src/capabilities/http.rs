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

use crate::sandbox::{StageFailure, StageShared, StageState};
use bucketscan_core::grants::Grants;
use hmac::{Hmac, Mac};
use ipnet::IpNet;
use sha2::Sha256;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
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

pub const SIGNATURE_HEADER: &str = "x-bucketscan-signature";
pub const TIMESTAMP_HEADER: &str = "x-bucketscan-timestamp";

/// Per-stage limits on what a plugin may make the host hold or do: the
/// requests it builds live in host memory, and the network time of a send
/// is not Wasm time.
pub mod limits {
    pub const MAX_URL: usize = 8 * 1024;
    pub const MAX_HEADERS: usize = 64;
    pub const MAX_HEADER_NAME: usize = 256;
    pub const MAX_HEADER_VALUE: usize = 8 * 1024;
    pub const MAX_BODY: usize = 1 << 20;
    /// Requests built in one stage, sent or not.
    pub const MAX_REQUESTS: usize = 32;
    /// Bytes (URLs, headers, bodies) put into requests in one stage.
    pub const MAX_REQUEST_BYTES: usize = 8 << 20;
    /// Sends in one stage (each up to 5 attempts).
    pub const MAX_SENDS: usize = 16;
}

/// Headers the host owns: the signature, and those that route or frame
/// the request (a plugin setting `Host` could reach a virtual host behind
/// a granted address that was never granted; framing headers could
/// smuggle a second request).
fn is_host_only_header(name: &str) -> bool {
    const HOST_ONLY: &[&str] = &[
        SIGNATURE_HEADER,
        TIMESTAMP_HEADER,
        "host",
        "content-length",
        "transfer-encoding",
        "connection",
        "te",
        "upgrade",
        "trailer",
        "keep-alive",
        "expect",
    ];
    let name = name.to_ascii_lowercase();
    HOST_ONLY.contains(&name.as_str()) || name.starts_with("proxy-")
}

/// Why a header may not be sent, if it may not.
fn header_problem(name: &str, value: &str) -> Option<String> {
    if name.len() > limits::MAX_HEADER_NAME || value.len() > limits::MAX_HEADER_VALUE {
        return Some(format!(
            "header `{}` is longer than allowed ({} bytes for a name, {} for a value)",
            crate::text::cap(name, 64),
            limits::MAX_HEADER_NAME,
            limits::MAX_HEADER_VALUE
        ));
    }
    if reqwest::header::HeaderName::from_bytes(name.as_bytes()).is_err()
        || reqwest::header::HeaderValue::from_str(value).is_err()
    {
        return Some(format!(
            "header `{}` is not a valid HTTP header",
            crate::text::cap(name, 64)
        ));
    }
    if is_host_only_header(name) {
        return Some(format!("header `{name}` is set by the host only"));
    }
    None
}

/// Addresses no grant makes reachable: cloud metadata and credential
/// endpoints, link-local, multicast, broadcast and unspecified addresses.
pub fn is_always_forbidden(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, c, d] = v4.octets();
            v4.is_link_local() // 169.254/16: EC2 IMDS, ECS credentials, time, DNS
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || a == 0 // "this network"
                || [a, b, c, d] == [168, 63, 129, 16] // Azure wire server
                || [a, b, c, d] == [100, 100, 100, 200] // Alibaba Cloud metadata
                || [a, b, c, d] == [192, 0, 0, 192] // Oracle Cloud metadata
        }
        IpAddr::V6(v6) => {
            let s = v6.segments();
            (s[0] & 0xffc0) == 0xfe80 // link-local
                || (s[0] == 0xfd00 && s[1] == 0x0ec2) // AWS fd00:ec2::/32: IMDS ::254, DNS ::253, NTP ::123, ::23
                || (s[0] == 0xfd20 && s[1] == 0x00ce) // GCP metadata fd20:ce::254
                || v6.is_unspecified()
                || v6.is_multicast()
                || embedded_v4(v6).is_some_and(|v4| is_always_forbidden(IpAddr::V4(v4)))
        }
    }
}

/// Addresses that are not on the public internet: loopback, RFC 1918,
/// CGNAT, benchmarking, reserved, unique-local, and IPv6 forms that carry
/// an IPv4 address (NAT64, 6to4, Teredo, mapped). Refused unless the
/// stage's `http-private` grant names their network.
pub fn is_private(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            v4.is_loopback()
                || v4.is_private()
                || (a == 100 && (64..128).contains(&b)) // CGNAT 100.64/10
                || (a == 198 && (b == 18 || b == 19)) // benchmarking 198.18/15
                || (a == 192 && b == 0 && v4.octets()[2] == 0) // IETF 192.0.0/24
                || a >= 240 // reserved
        }
        IpAddr::V6(v6) => {
            let s = v6.segments();
            v6.is_loopback()
                || (s[0] & 0xfe00) == 0xfc00 // unique local fc00::/7
                || (s[0] & 0xffc0) == 0xfec0 // site-local (deprecated)
                || (s[0] == 0x2001 && s[1] == 0) // Teredo 2001::/32
                || embedded_v4(v6).is_some()
        }
    }
}

/// The IPv4 address inside an IPv6 one that routes to it: v4-mapped,
/// v4-compatible, NAT64 (64:ff9b::/96, 64:ff9b:1::/48) and 6to4.
fn embedded_v4(v6: Ipv6Addr) -> Option<Ipv4Addr> {
    let s = v6.segments();
    let low = || Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8);
    if let Some(v4) = v6.to_ipv4_mapped() {
        return Some(v4);
    }
    if s[..6] == [0; 6] && !v6.is_loopback() && !v6.is_unspecified() {
        return Some(low()); // v4-compatible ::a.b.c.d
    }
    if (s[0] == 0x64 && s[1] == 0xff9b) && (s[2..6] == [0; 4] || s[2] == 1) {
        return Some(low());
    }
    if s[0] == 0x2002 {
        return Some(Ipv4Addr::new(
            (s[1] >> 8) as u8,
            s[1] as u8,
            (s[2] >> 8) as u8,
            s[2] as u8,
        ));
    }
    None
}

/// Which addresses one stage's requests may reach.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct AddressPolicy {
    /// Private networks the stage opted into (`grants.http-private`).
    pub private_allowed: Vec<IpNet>,
}

impl AddressPolicy {
    pub fn new(mut private_allowed: Vec<IpNet>) -> Self {
        private_allowed.sort();
        private_allowed.dedup();
        Self { private_allowed }
    }

    /// `Err` naming why `ip` may not be reached.
    pub fn check(&self, ip: IpAddr) -> Result<(), ForbiddenAddress> {
        if is_always_forbidden(ip) {
            return Err(ForbiddenAddress::Always(ip));
        }
        if is_private(ip) && !self.private_allowed.iter().any(|net| net.contains(&ip)) {
            return Err(ForbiddenAddress::PrivateNotGranted(ip));
        }
        Ok(())
    }
}

/// Why an address may not be reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ForbiddenAddress {
    #[error("{0} is a link-local, multicast or cloud metadata address; always refused")]
    Always(IpAddr),
    #[error(
        "{0} is a private address (loopback, RFC 1918, CGNAT, ULA, NAT64, …); refused unless the stage's \
         `http-private` grant names its network"
    )]
    PrivateNotGranted(IpAddr),
}

/// One HTTP client per address policy: no redirects, no proxies, and every
/// name resolved through a [`GuardedResolver`] for that policy.
#[derive(Default)]
pub struct HttpClients {
    clients: std::sync::Mutex<std::collections::HashMap<AddressPolicy, reqwest::Client>>,
}

impl HttpClients {
    pub fn for_policy(&self, policy: &AddressPolicy) -> reqwest::Client {
        let mut clients = self.clients.lock().unwrap();
        clients
            .entry(policy.clone())
            .or_insert_with(|| {
                reqwest::Client::builder()
                    .redirect(reqwest::redirect::Policy::none())
                    .no_proxy()
                    .dns_resolver(std::sync::Arc::new(GuardedResolver { policy: policy.clone() }))
                    .connect_timeout(Duration::from_secs(5))
                    .build()
                    .expect("HTTP client with static settings")
            })
            .clone()
    }
}

/// Resolves names with the system resolver and refuses a name if any of
/// its addresses is refused by the policy (one bad answer is enough to
/// distrust it: DNS is the attacker's to answer).
struct GuardedResolver {
    policy: AddressPolicy,
}

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let host = name.as_str().to_owned();
        let policy = self.policy.clone();
        Box::pin(async move {
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            check_resolved(&policy, &host, &addrs)?;
            Ok(Box::new(addrs.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// A name that resolved to an address the policy refuses. Travels through
/// reqwest's error chain as itself, so the failure is classified by type,
/// never by words a peer could put in an error message.
#[derive(Debug, thiserror::Error)]
#[error("`{host}` resolves to {why}")]
pub struct RefusedResolution {
    pub host: String,
    pub why: ForbiddenAddress,
}

/// Refuses `host` when any address it resolved to is refused by `policy`.
pub fn check_resolved(policy: &AddressPolicy, host: &str, addrs: &[SocketAddr]) -> Result<(), RefusedResolution> {
    for addr in addrs {
        if let Err(why) = policy.check(addr.ip()) {
            return Err(RefusedResolution {
                host: host.to_owned(),
                why,
            });
        }
    }
    Ok(())
}

/// `sha256=HEX` of HMAC-SHA256(secret, "TIMESTAMP.BODY").
pub fn signature(secret: &[u8], timestamp: u64, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes keys of any length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

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

impl HttpView for StageState {
    fn http(&mut self) -> HttpCtxView<'_> {
        HttpCtxView {
            ctx: &mut self.http,
            shared: &mut self.shared,
        }
    }
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
        let url = crate::text::cap(&url, limits::MAX_URL);
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

async fn post_once(
    client: &reqwest::Client,
    url: &url::Url,
    headers: &[(String, String)],
    body: &[u8],
    timeout: Duration,
) -> Result<HttpResponse, HttpFailure> {
    let mut request = client.post(url.clone()).timeout(timeout).body(body.to_vec());
    for (name, value) in headers {
        request = request.header(name, value);
    }
    let mut response = request.send().await.map_err(failure)?;
    let status = response.status().as_u16();
    let headers = response
        .headers()
        .iter()
        .take(64)
        .map(|(name, value)| {
            (
                name.as_str().to_owned(),
                crate::text::cap(&String::from_utf8_lossy(value.as_bytes()), 1024),
            )
        })
        .collect();
    Ok(HttpResponse {
        status,
        headers,
        body: read_capped(&mut response, MAX_RESPONSE).await.map_err(failure)?,
    })
}

/// What went wrong with a request, from reqwest's error and its causes.
fn failure(err: reqwest::Error) -> HttpFailure {
    let text = with_causes(&err);
    let mut source = std::error::Error::source(&err);
    let mut refused = false;
    while let Some(cause) = source {
        refused |= cause.is::<RefusedResolution>();
        source = cause.source();
    }
    if refused {
        HttpFailure::NotAllowed(text)
    } else if err.is_timeout() {
        HttpFailure::Timeout(text)
    } else if err.is_connect() {
        HttpFailure::Connection(text)
    } else {
        HttpFailure::Other(text)
    }
}

/// Reads at most `cap` bytes of a response body, chunk by chunk, and
/// stops there: the rest is never read (dropping the response closes the
/// connection), so an endless body costs `cap` bytes of memory.
async fn read_capped(response: &mut reqwest::Response, cap: usize) -> Result<Vec<u8>, reqwest::Error> {
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        let room = cap - body.len();
        body.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if body.len() == cap {
            break;
        }
    }
    Ok(body)
}

/// reqwest's error with its causes, so a refused resolution says why.
fn with_causes(err: &reqwest::Error) -> String {
    let mut text = err.to_string();
    let mut source = std::error::Error::source(err);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn metadata_and_link_local_addresses_are_always_refused() {
        let open = AddressPolicy::new(vec!["0.0.0.0/0".parse().unwrap(), "::/0".parse().unwrap()]);
        for addr in [
            "169.254.169.254",
            "169.254.170.2",
            "fd00:ec2::254",
            "fd00:ec2::23",
            "fd20:ce::254",
            "fe80::1",
            "::ffff:169.254.169.254",
            "64:ff9b::a9fe:a9fe",
            "2002:a9fe:a9fe::1",
            "168.63.129.16",
            "100.100.100.200",
            "0.0.0.0",
            "224.0.0.1",
        ] {
            assert!(is_always_forbidden(ip(addr)), "{addr}");
            assert!(
                open.check(ip(addr)).is_err(),
                "{addr} refused even when every network is granted"
            );
        }
    }

    #[test]
    fn private_addresses_need_an_explicit_grant() {
        let none = AddressPolicy::default();
        for addr in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "100.64.0.1",
            "198.18.0.1",
            "::1",
            "fd12:3456::1",
            "64:ff9b::a00:1",
            "2002:c0a8:101::1",
            "2001:0:4136:e378::1",
            "::ffff:10.0.0.1",
        ] {
            let err = none.check(ip(addr)).unwrap_err();
            assert_eq!(err, ForbiddenAddress::PrivateNotGranted(ip(addr)), "{addr}");
            assert!(err.to_string().contains("private address"), "{addr}: {err}");
        }
        assert!(none.check(ip("93.184.216.34")).is_ok());
        assert!(none.check(ip("2606:2800:220:1::1")).is_ok());
        let loopback = AddressPolicy::new(vec!["127.0.0.0/8".parse().unwrap()]);
        assert!(loopback.check(ip("127.0.0.1")).is_ok());
        assert!(loopback.check(ip("10.0.0.1")).is_err(), "only the granted network");
    }

    #[test]
    fn a_name_with_one_refused_address_is_refused() {
        let policy = AddressPolicy::new(vec!["127.0.0.0/8".parse().unwrap()]);
        let good: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let metadata: SocketAddr = "169.254.170.2:0".parse().unwrap();
        let private: SocketAddr = "10.0.0.7:0".parse().unwrap();
        assert!(check_resolved(&policy, "hooks.example", &[good]).is_ok());
        let err = check_resolved(&policy, "hooks.example", &[good, metadata])
            .unwrap_err()
            .to_string();
        assert!(err.contains("`hooks.example` resolves to 169.254.170.2"), "{err}");
        let err = check_resolved(&policy, "hooks.example", &[private, good])
            .unwrap_err()
            .to_string();
        assert!(err.contains("10.0.0.7 is a private address"), "{err}");
    }

    /// A refused resolution is told apart by its type in reqwest's error
    /// chain: `not-allowed`, never retried, whatever the text says.
    #[tokio::test]
    async fn a_refused_resolution_is_not_allowed_by_type() {
        let client = HttpClients::default().for_policy(&AddressPolicy::default());
        let url = url::Url::parse("http://localhost:9/").unwrap();
        let result = post_once(&client, &url, &[], b"", Duration::from_secs(2)).await;
        match result {
            Err(HttpFailure::NotAllowed(text)) => assert!(text.contains("resolves to"), "{text}"),
            other => panic!("expected not-allowed, got {other:?}"),
        }
    }

    #[test]
    fn host_only_headers_are_refused() {
        for name in [
            "Host",
            "content-length",
            "Transfer-Encoding",
            "proxy-authorization",
            SIGNATURE_HEADER,
        ] {
            assert!(header_problem(name, "x").is_some(), "{name}");
        }
        assert!(header_problem("bad name", "x").is_some());
        assert!(header_problem("x-ok", "line\nbreak").is_some());
        assert!(header_problem("content-type", "application/json").is_none());
    }

    #[test]
    fn signature_is_hmac_sha256_of_timestamp_dot_body() {
        // Checked against an independent implementation:
        // python3 -c 'import hmac,hashlib;print(hmac.new(b"k"*16,b"1700000000.{}",hashlib.sha256).hexdigest())'
        assert_eq!(
            signature(&[b'k'; 16], 1_700_000_000, b"{}"),
            "sha256=6d58fb78491a4cd45b0a5944663cf2020c2185a67defd8caec14059846f09e3d"
        );
    }
}
