//! Seals: proof that a set of result tags was written by a bucketscan agent
//! for exactly the bytes it describes.
//!
//! Anyone who can upload can also set tags, including ours. A result tag is
//! therefore never trusted because it is there; it is trusted only when the
//! seal tag beside it verifies: an HMAC-SHA256, under a key only the agents
//! hold, over the object's identity — bucket, key, ETag, version ID and the
//! SHA-256 of the bytes the agent read — and every result tag written with
//! it. A seal copied onto other bytes (even bytes with the same ETag: MD5
//! collisions can be made), another key or altered tags does not verify.
//!
//! Seals tell the agents two things:
//! - **scanned**: an object's result tags are the agent's own, for these
//!   bytes (a sweep may skip it when its engine is current);
//! - **written**: the object itself was written by an agent (a promotion or
//!   quarantine copy), so its event needs no new scan and cannot loop.
//!
//! A fleet of agents shares the key (`[agent] seal-key`); an agent without
//! one makes a random key per process, so it still recognises its own
//! writes but no other agent's (they are then scanned again, never skipped).

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use std::fmt;

/// What a seal says about the object it is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SealOrigin {
    /// The agent scanned these bytes and wrote these result tags.
    Scanned,
    /// The agent wrote this object (a copy of bytes it scanned).
    Written,
}

impl SealOrigin {
    fn letter(self) -> char {
        match self {
            Self::Scanned => 's',
            Self::Written => 'w',
        }
    }
}

/// The object a seal is bound to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SealSubject<'a> {
    pub bucket: &'a str,
    pub key: &'a str,
    /// The ETag of the bytes (without quotes).
    pub etag: &'a str,
    /// The version scanned, when the bucket is versioned (scanned seals;
    /// a copy's version is not known when it is sealed).
    pub version_id: Option<&'a str>,
    /// SHA-256 (hex) of the bytes, when the agent read them.
    pub sha256: Option<&'a str>,
}

/// The key that makes and checks seals.
#[derive(Clone)]
pub struct Sealer {
    key: Vec<u8>,
}

impl fmt::Debug for Sealer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Sealer(..)")
    }
}

/// Length of the MAC in a seal: 128 bits, as 32 hex digits.
const MAC_HEX: usize = 32;

impl Sealer {
    /// A sealer with `key` (at least 16 bytes; shorter keys are refused when
    /// the config is read).
    pub fn new(key: impl Into<Vec<u8>>) -> Self {
        Self { key: key.into() }
    }

    /// A sealer with a random key: seals this process makes are recognised
    /// by this process only.
    pub fn ephemeral() -> Self {
        let mut key = vec![0u8; 32];
        getrandom::fill(&mut key).expect("the OS random number generator");
        Self { key }
    }

    /// The seal value for `tags` (the result tags written with it, the
    /// seal's own key excluded) on `subject`.
    pub fn seal(&self, origin: SealOrigin, subject: SealSubject<'_>, tags: &[(String, String)]) -> String {
        format!("{}1-{}", origin.letter(), self.mac(origin, subject, tags))
    }

    /// Whether `value` is a seal this key made for `tags` on `subject`, and
    /// which origin it states.
    pub fn verify(&self, value: &str, subject: SealSubject<'_>, tags: &[(String, String)]) -> Option<SealOrigin> {
        let (origin, mac) = match value.split_once("1-") {
            Some(("s", mac)) => (SealOrigin::Scanned, mac),
            Some(("w", mac)) => (SealOrigin::Written, mac),
            _ => return None,
        };
        if mac.len() != MAC_HEX {
            return None;
        }
        constant_time_eq(&self.mac(origin, subject, tags), mac).then_some(origin)
    }

    /// The mark that makes an allow-list line an agent's (`bucketscan
    /// release` writes it): bound to the list it is in, the digest and
    /// the line's note.
    /// The key subscribers check result notifications with: derived from
    /// the seal key, so it can be handed to them without giving them the
    /// power to seal result tags (or mark allow-list lines).
    pub fn notification_key(&self) -> Vec<u8> {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.key).expect("HMAC takes keys of any length");
        mac.update(b"bucketscan notification mark v1");
        mac.finalize().into_bytes().to_vec()
    }

    /// The mark of a notification whose body is `message`: HMAC-SHA256
    /// under [`Sealer::notification_key`], hex, prefixed `n1-`.
    pub fn mark_notification(&self, message: &str) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.notification_key()).expect("HMAC takes keys of any length");
        mac.update(message.as_bytes());
        format!("n1-{}", hex::encode(mac.finalize().into_bytes()))
    }

    pub fn mark_allowed(&self, list: &str, sha256: &str, note: &str) -> String {
        format!("a1-{}", self.allow_mac(list, sha256, note))
    }

    /// A mark binding `fields` for `purpose` (e.g. a retro-scan item, so
    /// that only an agent of the fleet can queue one).
    pub fn mark(&self, purpose: &str, fields: &[&str]) -> String {
        format!("m1-{}", self.fields_mac(purpose, fields))
    }

    /// Whether `mark` is this key's mark of `fields` for `purpose`.
    pub fn verify_mark(&self, purpose: &str, fields: &[&str], mark: &str) -> bool {
        let Some(mac) = mark.strip_prefix("m1-") else {
            return false;
        };
        mac.len() == MAC_HEX && constant_time_eq(&self.fields_mac(purpose, fields), mac)
    }

    /// Whether `mark` is this key's mark for `sha256` and `note` in `list`.
    pub fn verify_allowed(&self, mark: &str, list: &str, sha256: &str, note: &str) -> bool {
        let Some(mac) = mark.strip_prefix("a1-") else {
            return false;
        };
        if mac.len() != MAC_HEX {
            return false;
        }
        constant_time_eq(&self.allow_mac(list, sha256, note), mac)
    }

    fn allow_mac(&self, list: &str, sha256: &str, note: &str) -> String {
        self.fields_mac("bucketscan-allow/1", &[list, &sha256.to_ascii_lowercase(), note])
    }

    /// HMAC of `purpose` and `fields`, each length-prefixed (no two
    /// different inputs share an encoding), truncated to 128 bits.
    fn fields_mac(&self, purpose: &str, fields: &[&str]) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.key).expect("HMAC takes keys of any length");
        for bytes in std::iter::once(purpose).chain(fields.iter().copied()) {
            mac.update(&(bytes.len() as u64).to_be_bytes());
            mac.update(bytes.as_bytes());
        }
        let digest = mac.finalize().into_bytes();
        hex::encode(&digest[..MAC_HEX / 2])
    }

    fn mac(&self, origin: SealOrigin, subject: SealSubject<'_>, tags: &[(String, String)]) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.key).expect("HMAC takes keys of any length");
        let mut field = |bytes: &[u8]| {
            // Length-prefixed fields: no two different inputs share an encoding.
            mac.update(&(bytes.len() as u64).to_be_bytes());
            mac.update(bytes);
        };
        field(b"bucketscan-seal/1");
        field(&[origin.letter() as u8]);
        field(subject.bucket.as_bytes());
        field(subject.key.as_bytes());
        field(subject.etag.trim_matches('"').as_bytes());
        field(subject.version_id.unwrap_or_default().as_bytes());
        field(subject.sha256.unwrap_or_default().as_bytes());
        let mut sorted: Vec<&(String, String)> = tags.iter().collect();
        sorted.sort();
        for (key, value) in sorted {
            field(key.as_bytes());
            field(value.as_bytes());
        }
        let digest = mac.finalize().into_bytes();
        hex::encode(&digest[..MAC_HEX / 2])
    }
}

/// Whether `expected` (lowercase hex) equals `given` (any case), in
/// constant time: the comparison must not tell a forger how much of a
/// guess was right.
fn constant_time_eq(expected: &str, given: &str) -> bool {
    expected.len() == given.len()
        && expected
            .bytes()
            .zip(given.bytes())
            .fold(0u8, |diff, (a, b)| diff | (a ^ b.to_ascii_lowercase()))
            == 0
}

#[cfg(test)]
mod notification_tests {
    use super::*;

    #[test]
    fn a_notification_mark_is_checked_with_the_derived_key_alone() {
        let sealer = Sealer::new(b"0123456789abcdef".to_vec());
        let mark = sealer.mark_notification("{\"result\":\"clean\"}");
        // What a subscriber does with the derived key: HMAC the body.
        let mut mac = Hmac::<Sha256>::new_from_slice(&sealer.notification_key()).unwrap();
        mac.update(b"{\"result\":\"clean\"}");
        assert_eq!(mark, format!("n1-{}", hex::encode(mac.finalize().into_bytes())));
        assert_ne!(mark, sealer.mark_notification("{\"result\":\"infected\"}"));
        assert_ne!(
            sealer.notification_key(),
            b"0123456789abcdef".to_vec(),
            "not the seal key"
        );
        assert_ne!(
            Sealer::ephemeral().mark_notification("x"),
            sealer.mark_notification("x")
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tags(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    const SUBJECT: SealSubject<'static> = SealSubject {
        bucket: "staging",
        key: "a.txt",
        etag: "44d88612fea8a8f36de82e1278abb02f",
        version_id: None,
        sha256: Some("275a021bbfb6489e54d471899f7db9d1663fc695ec2fe2a2c4538aabf651fd0f"),
    };

    #[test]
    fn a_seal_verifies_for_exactly_what_it_was_made_for() {
        let sealer = Sealer::new(b"0123456789abcdef".to_vec());
        let ours = tags(&[
            ("bucketscan-result", "clean"),
            ("bucketscan-date", "2026-11-25T10:00:00Z"),
        ]);
        let seal = sealer.seal(SealOrigin::Scanned, SUBJECT, &ours);
        assert!(seal.starts_with("s1-") && seal.len() == 3 + MAC_HEX, "{seal}");
        assert_eq!(sealer.verify(&seal, SUBJECT, &ours), Some(SealOrigin::Scanned));
        // Quoted ETags are the same ETag.
        let quoted = SealSubject {
            etag: "\"44d88612fea8a8f36de82e1278abb02f\"",
            ..SUBJECT
        };
        assert_eq!(sealer.verify(&seal, quoted, &ours), Some(SealOrigin::Scanned));
    }

    #[test]
    fn a_seal_moved_to_other_bytes_keys_or_tags_does_not_verify() {
        let sealer = Sealer::new(b"0123456789abcdef".to_vec());
        let ours = tags(&[("bucketscan-result", "infected")]);
        let seal = sealer.seal(SealOrigin::Written, SUBJECT, &ours);
        let other_bytes = SealSubject {
            etag: "00000000000000000000000000000000",
            ..SUBJECT
        };
        let other_key = SealSubject {
            key: "b.txt",
            ..SUBJECT
        };
        let other_bucket = SealSubject {
            bucket: "production",
            ..SUBJECT
        };
        for subject in [other_bytes, other_key, other_bucket] {
            assert_eq!(sealer.verify(&seal, subject, &ours), None, "{subject:?}");
        }
        assert_eq!(
            sealer.verify(&seal, SUBJECT, &tags(&[("bucketscan-result", "clean")])),
            None
        );
        // Claiming the other origin with the same MAC fails too.
        let flipped = seal.replacen('w', "s", 1);
        assert_eq!(sealer.verify(&flipped, SUBJECT, &ours), None);
    }

    #[test]
    fn another_key_or_garbage_does_not_verify() {
        let ours = tags(&[("bucketscan-result", "clean")]);
        let seal = Sealer::new(b"0123456789abcdef".to_vec()).seal(SealOrigin::Scanned, SUBJECT, &ours);
        assert_eq!(Sealer::ephemeral().verify(&seal, SUBJECT, &ours), None);
        let sealer = Sealer::new(b"0123456789abcdef".to_vec());
        for garbage in ["", "s1-", "x1-00", "s1-zz", "clean"] {
            assert_eq!(sealer.verify(garbage, SUBJECT, &ours), None, "{garbage}");
        }
    }

    #[test]
    fn tag_order_does_not_matter() {
        let sealer = Sealer::new(b"0123456789abcdef".to_vec());
        let a = tags(&[("x", "1"), ("y", "2")]);
        let b = tags(&[("y", "2"), ("x", "1")]);
        let seal = sealer.seal(SealOrigin::Scanned, SUBJECT, &a);
        assert!(sealer.verify(&seal, SUBJECT, &b).is_some());
    }

    #[test]
    fn a_mark_binds_its_purpose_and_every_field() {
        let sealer = Sealer::new(b"0123456789abcdef0123".to_vec());
        let mark = sealer.mark("retro", &["production", "a.pdf"]);
        assert!(sealer.verify_mark("retro", &["production", "a.pdf"], &mark));
        assert!(!sealer.verify_mark("retro", &["production", "b.pdf"], &mark));
        assert!(!sealer.verify_mark("other", &["production", "a.pdf"], &mark));
        // Moving a character between fields changes the mark.
        assert!(!sealer.verify_mark("retro", &["productiona", ".pdf"], &mark));
        assert!(!Sealer::ephemeral().verify_mark("retro", &["production", "a.pdf"], &mark));
        assert!(!sealer.verify_mark("retro", &["production", "a.pdf"], "m1-00"));
    }
}
