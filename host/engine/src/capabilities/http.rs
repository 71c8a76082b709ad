//! `bucketscan:plugin/http`: outbound POST to allow-listed hosts. Grant:
//! `http = [hosts]`.
//!
//! What a plugin can never reach, whatever its grant: link-local and cloud
//! metadata addresses (the EC2/ECS credential endpoints among them), as
//! literals or after DNS resolution, and anything behind a redirect
//! (redirects are not followed). Proxies from the environment are ignored,
//! since a proxy would resolve names where this host cannot check them.
//! When the stage has a `signing-secret`, the host signs every request
//! body; the secret never enters the plugin.

use crate::bindings::http::{Host, Request, Response};
use crate::sandbox::{StageFailure, StageState};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

/// Responses larger than this are cut; a webhook answer needs little.
const MAX_RESPONSE: usize = 64 * 1024;
/// `post`: one attempt with this timeout.
const POST_TIMEOUT: Duration = Duration::from_secs(10);
/// `send`: caps on what a plugin may ask for.
const MAX_TIMEOUT: Duration = Duration::from_secs(30);
const MAX_ATTEMPTS: u8 = 5;
const FIRST_BACKOFF: Duration = Duration::from_millis(200);

pub const SIGNATURE_HEADER: &str = "x-bucketscan-signature";
pub const TIMESTAMP_HEADER: &str = "x-bucketscan-timestamp";

/// Addresses that hand out cloud credentials or are link-local.
pub fn is_forbidden_address(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_link_local() || v4.is_unspecified() || v4.is_broadcast(),
        IpAddr::V6(v6) => {
            let segments = v6.segments();
            (segments[0] & 0xffc0) == 0xfe80 // link-local
                || v6 == std::net::Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254)
                || v6.is_unspecified()
                || v6.to_ipv4_mapped().is_some_and(|v4| is_forbidden_address(IpAddr::V4(v4)))
        }
    }
}

/// The HTTP client behind the capability: no redirects, no proxies, and
/// every name resolved through [`GuardedResolver`].
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .dns_resolver(std::sync::Arc::new(GuardedResolver))
        .connect_timeout(Duration::from_secs(5))
        .build()
        .expect("HTTP client with static settings")
}

/// Resolves names with the system resolver and refuses a name if any of
/// its addresses is forbidden (one bad answer is enough to distrust it).
struct GuardedResolver;

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            check_resolved(&host, &addrs)?;
            Ok(Box::new(addrs.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// Refuses `host` when any address it resolved to is forbidden.
pub fn check_resolved(host: &str, addrs: &[SocketAddr]) -> Result<(), std::io::Error> {
    match addrs.iter().find(|addr| is_forbidden_address(addr.ip())) {
        Some(bad) => Err(std::io::Error::new(
            std::io::ErrorKind::PermissionDenied,
            format!(
                "`{host}` resolves to {}, a link-local or metadata address; refused",
                bad.ip()
            ),
        )),
        None => Ok(()),
    }
}

/// `sha256=HEX` of HMAC-SHA256(secret, "TIMESTAMP.BODY").
pub fn signature(secret: &[u8], timestamp: u64, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes keys of any length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

impl Host for StageState {
    async fn post(
        &mut self,
        url: String,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    ) -> wasmtime::Result<Result<Response, String>> {
        let request = Request {
            url,
            headers,
            body,
            timeout_ms: POST_TIMEOUT.as_millis() as u32,
            attempts: 1,
        };
        self.send(request).await
    }

    async fn send(&mut self, request: Request) -> wasmtime::Result<Result<Response, String>> {
        let Request {
            url,
            headers,
            body,
            timeout_ms,
            attempts,
        } = request;
        let parsed = match url::Url::parse(&url) {
            Ok(parsed) if matches!(parsed.scheme(), "http" | "https") => parsed,
            Ok(_) => return Ok(Err(format!("`{url}`: only http and https URLs are allowed"))),
            Err(err) => return Ok(Err(format!("`{url}`: {err}"))),
        };
        let host = parsed
            .host_str()
            .unwrap_or_default()
            .trim_matches(['[', ']'])
            .to_owned();
        if let Err(err) = self.grants.check_http(&host) {
            return Err(self.fail(StageFailure::NotGranted(err)));
        }
        if host.parse::<IpAddr>().is_ok_and(is_forbidden_address) {
            return Ok(Err(format!(
                "`{host}` is a link-local or metadata address and is always refused"
            )));
        }
        if let Some(name) = headers
            .iter()
            .map(|(name, _)| name)
            .find(|name| name.eq_ignore_ascii_case(SIGNATURE_HEADER) || name.eq_ignore_ascii_case(TIMESTAMP_HEADER))
        {
            return Ok(Err(format!("header `{name}` is set by the host only")));
        }
        let mut headers = headers;
        if let Some(secret) = &self.signing_secret {
            let timestamp = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |since| since.as_secs());
            headers.push((TIMESTAMP_HEADER.into(), timestamp.to_string()));
            headers.push((SIGNATURE_HEADER.into(), signature(secret, timestamp, &body)));
        }

        let timeout = Duration::from_millis(timeout_ms.into()).clamp(Duration::from_millis(1), MAX_TIMEOUT);
        let attempts = attempts.clamp(1, MAX_ATTEMPTS);
        let started = Instant::now();
        let mut backoff = FIRST_BACKOFF;
        let mut outcome = Err(String::new());
        for attempt in 1..=attempts {
            outcome = post_once(&self.services.http, &parsed, &headers, &body, timeout).await;
            let retryable = match &outcome {
                Ok(response) => response.status >= 500 || response.status == 429,
                Err(_) => true,
            };
            if !retryable || attempt == attempts {
                break;
            }
            tokio::time::sleep(backoff).await;
            backoff *= 2;
        }
        // Waiting on the network is not the plugin's own compute time.
        self.host_time += started.elapsed();
        Ok(outcome.map_err(|err| format!("POST {url} ({attempts} attempt(s)): {err}")))
    }
}

async fn post_once(
    client: &reqwest::Client,
    url: &url::Url,
    headers: &[(String, String)],
    body: &[u8],
    timeout: Duration,
) -> Result<Response, String> {
    let mut request = client.post(url.clone()).timeout(timeout).body(body.to_vec());
    for (name, value) in headers {
        request = request.header(name, value);
    }
    let response = request.send().await.map_err(describe)?;
    let status = response.status().as_u16();
    let bytes = response.bytes().await.map_err(describe)?;
    Ok(Response {
        status,
        body: bytes[..bytes.len().min(MAX_RESPONSE)].to_vec(),
    })
}

/// reqwest's error with its causes, so a refused resolution says why.
fn describe(err: reqwest::Error) -> String {
    let mut text = err.to_string();
    let mut source = std::error::Error::source(&err);
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

    #[test]
    fn metadata_endpoints_are_forbidden() {
        for addr in [
            "169.254.169.254",
            "169.254.170.2",
            "fd00:ec2::254",
            "fe80::1",
            "::ffff:169.254.169.254",
        ] {
            assert!(is_forbidden_address(addr.parse().unwrap()), "{addr}");
        }
        assert!(!is_forbidden_address("127.0.0.1".parse().unwrap()));
    }

    #[test]
    fn a_name_with_one_forbidden_address_is_refused() {
        let good: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let bad: SocketAddr = "169.254.170.2:0".parse().unwrap();
        assert!(check_resolved("hooks.example", &[good]).is_ok());
        let err = check_resolved("hooks.example", &[good, bad]).unwrap_err().to_string();
        assert!(err.contains("`hooks.example` resolves to 169.254.170.2"), "{err}");
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
