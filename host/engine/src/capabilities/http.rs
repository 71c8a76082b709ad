//! `bucketscan:plugin/http`: outbound POST to allow-listed hosts. Grant:
//! `http = [hosts]`. Link-local and cloud metadata addresses are refused
//! whatever the grant says, and redirects are not followed.

use crate::bindings::http::{Host, Response};
use crate::sandbox::{StageFailure, StageState};
use std::net::IpAddr;
use std::time::Instant;

/// Responses larger than this are cut; a webhook answer needs little.
const MAX_RESPONSE: usize = 64 * 1024;

/// Addresses that hand out cloud credentials or are link-local.
pub fn is_forbidden_address(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_link_local() || v4.is_unspecified() || v4.is_broadcast(),
        IpAddr::V6(v6) => {
            let segments = v6.segments();
            (segments[0] & 0xffc0) == 0xfe80 // link-local
                || v6 == "fd00:ec2::254".parse::<std::net::Ipv6Addr>().unwrap()
                || v6.is_unspecified()
                || v6.to_ipv4_mapped().is_some_and(|v4| is_forbidden_address(IpAddr::V4(v4)))
        }
    }
}

impl Host for StageState {
    async fn post(&mut self, url: String, headers: Vec<(String, String)>, body: Vec<u8>) -> wasmtime::Result<Result<Response, String>> {
        let parsed = match url::Url::parse(&url) {
            Ok(parsed) if matches!(parsed.scheme(), "http" | "https") => parsed,
            Ok(_) => return Ok(Err(format!("`{url}`: only http and https URLs are allowed"))),
            Err(err) => return Ok(Err(format!("`{url}`: {err}"))),
        };
        let host = parsed.host_str().unwrap_or_default().trim_matches(['[', ']']).to_owned();
        if let Err(err) = self.grants.check_http(&host) {
            return Err(self.fail(StageFailure::NotGranted(err)));
        }
        if host.parse::<IpAddr>().is_ok_and(is_forbidden_address) {
            return Ok(Err(format!("`{host}` is a link-local or metadata address and is always refused")));
        }
        let mut request = self.services.http.post(parsed).body(body);
        for (name, value) in headers {
            request = request.header(name, value);
        }
        let started = Instant::now();
        let result = async {
            let response = request.send().await?;
            let status = response.status().as_u16();
            let bytes = response.bytes().await?;
            Ok::<_, reqwest::Error>(Response {
                status,
                body: bytes[..bytes.len().min(MAX_RESPONSE)].to_vec(),
            })
        }
        .await;
        self.host_time += started.elapsed();
        Ok(result.map_err(|err| format!("POST {url}: {err}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_endpoints_are_forbidden() {
        for addr in ["169.254.169.254", "169.254.170.2", "fd00:ec2::254", "fe80::1", "::ffff:169.254.169.254"] {
            assert!(is_forbidden_address(addr.parse().unwrap()), "{addr}");
        }
        assert!(!is_forbidden_address("127.0.0.1".parse().unwrap()));
    }
}
