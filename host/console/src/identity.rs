//! Who is asking: the load balancer's signed `x-amzn-oidc-data` token,
//! verified here, or the local development user.
//!
//! An Application Load Balancer with an `authenticate-oidc` (or
//! `authenticate-cognito`) rule signs in the user and forwards each
//! request with the user's claims in a JWT it signs with ES256. The
//! console trusts nothing else: a request that reaches the task without
//! going through the load balancer carries no token, or one the console
//! refuses — signed by another key (the key is fetched by the token's
//! `kid` from the region's endpoint, never taken from the request),
//! naming another load balancer as its `signer`, expired, or not ES256.

use crate::config::{Claims, ConsoleConfig, Role};
use base64::Engine as _;
use p256::ecdsa::signature::Verifier as _;
use p256::ecdsa::{Signature, VerifyingKey};
use p256::pkcs8::DecodePublicKey as _;
use serde::Deserialize;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

/// The header the load balancer puts the signed claims in.
pub const TOKEN_HEADER: &str = "x-amzn-oidc-data";
/// Tokens larger than this are refused before any parsing.
const MAX_TOKEN_BYTES: usize = 16 * 1024;
/// Clock difference tolerated between the load balancer and this task.
const CLOCK_SKEW_SECS: i64 = 60;
/// Keys kept; the load balancer rotates through a handful.
const MAX_KEYS: usize = 32;

/// A signed-in user and the role the config gives them.
#[derive(Debug, Clone)]
pub struct User {
    pub claims: Claims,
    /// `None`: signed in, but no role is mapped to them.
    pub role: Option<Role>,
}

impl User {
    pub fn name(&self) -> String {
        self.claims.name()
    }

    pub fn may(&self, role: Role) -> bool {
        self.role.is_some_and(|mine| mine >= role)
    }
}

/// Why a request's identity was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentityError {
    #[error("no {TOKEN_HEADER} header: the console is reached through the load balancer that signs users in")]
    Missing,
    #[error("the identity token is malformed: {0}")]
    Malformed(String),
    #[error("the identity token is signed with `{0}`, not ES256")]
    Algorithm(String),
    #[error("the identity token was signed by `{0}`, not the load balancer this console trusts")]
    Signer(String),
    #[error("the identity token expired")]
    Expired,
    #[error("the identity token's key `{kid}` could not be fetched: {detail}")]
    Key { kid: String, detail: String },
    #[error("the identity token's signature does not verify")]
    Signature,
}

#[derive(Deserialize)]
struct Header {
    alg: String,
    kid: String,
    signer: String,
    exp: Option<i64>,
}

/// Verifies the load balancer's tokens, with its keys cached by `kid`.
pub struct AlbVerifier {
    config: ConsoleConfig,
    keys: Mutex<HashMap<String, VerifyingKey>>,
    http: reqwest::Client,
}

impl AlbVerifier {
    pub fn new(config: ConsoleConfig) -> Self {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("an HTTP client");
        Self {
            config,
            keys: Mutex::default(),
            http,
        }
    }

    pub fn config(&self) -> &ConsoleConfig {
        &self.config
    }

    /// The user a request's token names, with their role.
    pub async fn verify(&self, token: Option<&[u8]>, now_unix: i64) -> Result<User, IdentityError> {
        let token = token.ok_or(IdentityError::Missing)?;
        let token = std::str::from_utf8(token).map_err(|_| malformed("not text"))?;
        if token.len() > MAX_TOKEN_BYTES {
            return Err(malformed("larger than 16 KiB"));
        }
        let parts: Vec<&str> = token.trim().split('.').collect();
        let [header_part, payload_part, signature_part] = parts[..] else {
            return Err(malformed("not three dot-separated parts"));
        };
        let header: Header =
            serde_json::from_slice(&decode(header_part)?).map_err(|err| malformed(&format!("header: {err}")))?;
        if header.alg != "ES256" {
            return Err(IdentityError::Algorithm(header.alg));
        }
        if header.signer != self.config.signer {
            return Err(IdentityError::Signer(header.signer));
        }
        let key = self.key(&header.kid).await?;
        let signature = Signature::from_slice(&decode(signature_part)?).map_err(|_| IdentityError::Signature)?;
        // Signed over the two parts exactly as sent (padding included).
        let signed = &token.trim()[..header_part.len() + 1 + payload_part.len()];
        key.verify(signed.as_bytes(), &signature)
            .map_err(|_| IdentityError::Signature)?;
        let payload: serde_json::Value =
            serde_json::from_slice(&decode(payload_part)?).map_err(|err| malformed(&format!("claims: {err}")))?;
        let exp = header.exp.or_else(|| payload.get("exp").and_then(|v| v.as_i64()));
        match exp {
            Some(exp) if exp + CLOCK_SKEW_SECS >= now_unix => {}
            _ => return Err(IdentityError::Expired),
        }
        let claims = claims_of(&payload, &self.config.group_claim)?;
        Ok(User {
            role: self.config.role_of(&claims),
            claims,
        })
    }

    /// The public key `kid` names, from the cache or the key endpoint.
    async fn key(&self, kid: &str) -> Result<VerifyingKey, IdentityError> {
        let failed = |detail: &str| IdentityError::Key {
            kid: kid.chars().take(64).collect(),
            detail: detail.to_owned(),
        };
        // The kid becomes part of a URL: letters, digits and dashes only.
        if kid.is_empty() || kid.len() > 128 || !kid.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
            return Err(failed("not a key id"));
        }
        if let Some(key) = self.keys.lock().expect("keys").get(kid) {
            return Ok(*key);
        }
        let url = format!("{}{kid}", self.config.key_url());
        let response = self
            .http
            .get(&url)
            .send()
            .await
            .map_err(|err| failed(&err.to_string()))?;
        if !response.status().is_success() {
            return Err(failed(&format!("{url} answered {}", response.status())));
        }
        let pem = response.text().await.map_err(|err| failed(&err.to_string()))?;
        let key = VerifyingKey::from_public_key_pem(pem.trim()).map_err(|_| failed("not a P-256 public key (PEM)"))?;
        let mut keys = self.keys.lock().expect("keys");
        if keys.len() >= MAX_KEYS {
            keys.clear();
        }
        keys.insert(kid.to_owned(), key);
        Ok(key)
    }
}

fn malformed(why: &str) -> IdentityError {
    IdentityError::Malformed(why.to_owned())
}

/// Base64url, with or without the padding the load balancer adds.
fn decode(part: &str) -> Result<Vec<u8>, IdentityError> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(part.trim_end_matches('='))
        .map_err(|_| malformed("not base64url"))
}

/// The claims the console uses, from the token's payload.
fn claims_of(payload: &serde_json::Value, group_claim: &str) -> Result<Claims, IdentityError> {
    let text = |name: &str| payload.get(name).and_then(|v| v.as_str()).map(str::to_owned);
    let subject = text("sub")
        .filter(|s| !s.is_empty())
        .ok_or_else(|| malformed("no `sub` claim"))?;
    let groups = match payload.get(group_claim) {
        Some(serde_json::Value::Array(items)) => items.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect(),
        // Some providers send one group, or a comma-separated list.
        Some(serde_json::Value::String(list)) => list
            .split(',')
            .map(|g| g.trim().to_owned())
            .filter(|g| !g.is_empty())
            .collect(),
        _ => Vec::new(),
    };
    let email_verified = match payload.get("email_verified") {
        Some(serde_json::Value::Bool(verified)) => *verified,
        Some(serde_json::Value::String(verified)) => verified == "true",
        _ => false,
    };
    Ok(Claims {
        subject,
        email: text("email"),
        email_verified,
        groups,
    })
}

#[cfg(test)]
mod tests;

/// A token signed the way the load balancer signs it (base64url with
/// padding, ES256 over the first two parts): what tests and local
/// stand-ins of the load balancer send.
pub fn sign_like_alb(key: &p256::ecdsa::SigningKey, header: &serde_json::Value, claims: &serde_json::Value) -> String {
    use p256::ecdsa::signature::Signer as _;
    let encode = |bytes: &[u8]| base64::engine::general_purpose::URL_SAFE.encode(bytes);
    let signed = format!(
        "{}.{}",
        encode(header.to_string().as_bytes()),
        encode(claims.to_string().as_bytes())
    );
    let signature: Signature = key.sign(signed.as_bytes());
    format!("{signed}.{}", encode(&signature.to_bytes()))
}
