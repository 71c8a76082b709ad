//! What a plugin may put in a request's headers, the limits on what it
//! builds, and the host's signature.

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

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
pub(super) fn header_problem(name: &str, value: &str) -> Option<String> {
    if name.len() > limits::MAX_HEADER_NAME || value.len() > limits::MAX_HEADER_VALUE {
        return Some(format!(
            "header `{}` is longer than allowed ({} bytes for a name, {} for a value)",
            bucketscan_core::text::cap(name, 64),
            limits::MAX_HEADER_NAME,
            limits::MAX_HEADER_VALUE
        ));
    }
    if reqwest::header::HeaderName::from_bytes(name.as_bytes()).is_err()
        || reqwest::header::HeaderValue::from_str(value).is_err()
    {
        return Some(format!(
            "header `{}` is not a valid HTTP header",
            bucketscan_core::text::cap(name, 64)
        ));
    }
    if is_host_only_header(name) {
        return Some(format!("header `{name}` is set by the host only"));
    }
    None
}

/// `sha256=HEX` of HMAC-SHA256(secret, "TIMESTAMP.BODY").
pub fn signature(secret: &[u8], timestamp: u64, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes keys of any length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

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
