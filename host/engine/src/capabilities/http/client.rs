//! The HTTP clients behind the capability: one per address policy, names
//! resolved and checked before any connection, answers read capped, and
//! failures classified by type.

use super::address::{AddressPolicy, ForbiddenAddress};
use super::{HttpFailure, HttpResponse, MAX_RESPONSE};
use std::net::SocketAddr;
use std::time::Duration;

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

pub(super) async fn post_once(
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
                bucketscan_core::text::cap(&String::from_utf8_lossy(value.as_bytes()), 1024),
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
}
