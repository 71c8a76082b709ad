//! Cross-site request forgery: every state-changing form carries a token
//! only this console can make for this user, and a POST that a browser
//! says came from another site is refused before the token is looked at.
//!
//! The console has no session of its own (the load balancer's cookie is
//! the session), so the token is an HMAC of the user's identity under a
//! secret the console's tasks share (`BUCKETSCAN_CONSOLE_SECRET`; one per
//! process when unset, which is right for one task).

use hmac::{Hmac, KeyInit as _, Mac as _};
use sha2::Sha256;

/// The form field the token travels in.
pub const FIELD: &str = "csrf";

pub struct CsrfKey {
    secret: Vec<u8>,
}

impl CsrfKey {
    pub fn new(secret: Vec<u8>) -> Self {
        Self { secret }
    }

    /// From `BUCKETSCAN_CONSOLE_SECRET`, else random (forms then work on
    /// this task only).
    pub fn from_env() -> Self {
        match std::env::var("BUCKETSCAN_CONSOLE_SECRET") {
            Ok(secret) if secret.len() >= 16 => Self::new(secret.into_bytes()),
            _ => {
                let mut random = vec![0u8; 32];
                getrandom::fill(&mut random).expect("the OS random source");
                Self::new(random)
            }
        }
    }

    /// The token for `user`'s forms.
    pub fn token(&self, user: &str) -> String {
        hex::encode(self.mac(user).finalize().into_bytes())
    }

    /// Whether `presented` is `user`'s token (compared in constant time).
    pub fn verify(&self, user: &str, presented: &str) -> bool {
        let Ok(bytes) = hex::decode(presented) else {
            return false;
        };
        self.mac(user).verify_slice(&bytes).is_ok()
    }

    fn mac(&self, user: &str) -> Hmac<Sha256> {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.secret).expect("HMAC takes any key");
        mac.update(b"bucketscan-console-csrf\0");
        mac.update(user.as_bytes());
        mac
    }
}

/// Whether the browser's own headers say a POST came from this site:
/// `Sec-Fetch-Site` (when sent) is `same-origin`, and `Origin` (when
/// sent) is this host.
pub fn same_origin(host: Option<&str>, origin: Option<&str>, fetch_site: Option<&str>) -> bool {
    if fetch_site.is_some_and(|site| site != "same-origin") {
        return false;
    }
    match (origin, host) {
        (None, _) => true,
        (Some(origin), Some(host)) => origin
            .split_once("://")
            .is_some_and(|(_, authority)| authority.eq_ignore_ascii_case(host)),
        (Some(_), None) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_is_one_users_and_this_secrets() {
        let key = CsrfKey::new(b"0123456789abcdef".to_vec());
        let token = key.token("ana@example.com");
        assert!(key.verify("ana@example.com", &token));
        assert!(!key.verify("bob@example.com", &token));
        assert!(!CsrfKey::new(b"another secret!!".to_vec()).verify("ana@example.com", &token));
        assert!(!key.verify("ana@example.com", "") && !key.verify("ana@example.com", "zz"));
    }

    #[test]
    fn a_post_from_another_site_is_told_apart() {
        assert!(same_origin(
            Some("console.example.com"),
            Some("https://console.example.com"),
            Some("same-origin")
        ));
        assert!(same_origin(Some("127.0.0.1:8080"), None, None));
        assert!(!same_origin(
            Some("console.example.com"),
            Some("https://evil.test"),
            None
        ));
        assert!(!same_origin(Some("console.example.com"), None, Some("cross-site")));
        assert!(!same_origin(Some("console.example.com"), Some("null"), None));
    }
}
