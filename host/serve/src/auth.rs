//! Who is calling, and what they may do.
//!
//! API keys are 256-bit random tokens (`bucketscan serve key` makes them);
//! the config stores only their SHA-256. A fast hash is the right tool
//! here: slow password hashes (argon2, bcrypt) defend low-entropy secrets
//! against guessing, and nothing can guess 256 random bits — while every
//! request pays the hash. Lookup is by the digest of what was presented,
//! so no comparison touches a stored key's bytes one by one.

use crate::config::ServeConfig;
use crate::errors::ApiError;
use base64::Engine as _;
use sha2::{Digest, Sha256};
use std::collections::HashMap;

/// The prefix of keys this server makes (helps secret scanners find them).
pub const KEY_PREFIX: &str = "bsk_";

/// A new key and the SHA-256 the config stores.
pub fn generate_key() -> (String, String) {
    let mut random = [0u8; 32];
    getrandom::fill(&mut random).expect("the OS random source");
    let key = format!(
        "{KEY_PREFIX}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(random)
    );
    let digest = hex::encode(Sha256::digest(key.as_bytes()));
    (key, digest)
}

/// An authenticated (or anonymous) caller and its scope.
#[derive(Debug, Clone)]
pub struct Caller {
    /// The key's id, or `anonymous`.
    pub id: String,
    pipelines: Vec<String>,
    buckets: Vec<String>,
}

impl Caller {
    pub fn may_use_pipeline(&self, name: &str) -> bool {
        self.pipelines.iter().any(|p| p == "*" || p == name)
    }

    pub fn may_scan_bucket(&self, name: &str) -> bool {
        self.buckets.iter().any(|b| b == "*" || b == name)
    }
}

/// The keys of a config.
#[derive(Debug, Clone)]
pub struct Keys {
    by_digest: HashMap<String, Caller>,
    anonymous: Option<Caller>,
}

impl Keys {
    pub fn new(config: &ServeConfig) -> Self {
        let by_digest = config
            .keys
            .iter()
            .map(|key| {
                (
                    key.sha256.to_ascii_lowercase(),
                    Caller {
                        id: key.id.clone(),
                        pipelines: key.pipelines.clone(),
                        buckets: key.buckets.clone(),
                    },
                )
            })
            .collect();
        let anonymous = (!config.anonymous_pipelines.is_empty()).then(|| Caller {
            id: "anonymous".into(),
            pipelines: config.anonymous_pipelines.clone(),
            buckets: Vec::new(),
        });
        Self { by_digest, anonymous }
    }

    /// Whether anyone at all can use the API.
    pub fn is_empty(&self) -> bool {
        self.by_digest.is_empty() && self.anonymous.is_none()
    }

    /// The caller an `Authorization` header names (`Bearer KEY`), or the
    /// anonymous caller when there is no header and anonymous use is on.
    pub fn authenticate(&self, authorization: Option<&[u8]>) -> Result<Caller, ApiError> {
        let Some(header) = authorization else {
            return self
                .anonymous
                .clone()
                .ok_or_else(|| ApiError::unauthorized("no API key: send `Authorization: Bearer KEY`"));
        };
        let header =
            std::str::from_utf8(header).map_err(|_| ApiError::unauthorized("the Authorization header is not text"))?;
        let Some(key) = header.strip_prefix("Bearer ").map(str::trim) else {
            return Err(ApiError::unauthorized("the Authorization header is not `Bearer KEY`"));
        };
        let digest = hex::encode(Sha256::digest(key.as_bytes()));
        // One message for unknown and malformed keys: nothing to probe.
        self.by_digest
            .get(&digest)
            .cloned()
            .ok_or_else(|| ApiError::unauthorized("unknown API key"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ApiKeyConfig;

    #[test]
    fn only_a_configured_key_authenticates_and_its_scope_holds() {
        let (key, digest) = generate_key();
        assert!(key.starts_with(KEY_PREFIX) && key.len() == 4 + 43);
        let config = ServeConfig {
            keys: vec![ApiKeyConfig {
                id: "ci".into(),
                sha256: digest.to_uppercase(),
                pipelines: vec!["uploads".into()],
                buckets: vec![],
            }],
            ..ServeConfig::default()
        };
        let keys = Keys::new(&config);
        let caller = keys.authenticate(Some(format!("Bearer {key}").as_bytes())).unwrap();
        assert_eq!(caller.id, "ci");
        assert!(caller.may_use_pipeline("uploads") && !caller.may_use_pipeline("other"));
        assert!(!caller.may_scan_bucket("staging"));
        for bad in [
            None,
            Some("Bearer nope".as_bytes()),
            Some(key.as_bytes()),
            Some(b"Bearer \xff"),
        ] {
            assert_eq!(keys.authenticate(bad).unwrap_err().code, "unauthorized");
        }
        // The stored digest is not a key.
        assert!(keys.authenticate(Some(format!("Bearer {digest}").as_bytes())).is_err());
    }
}
