//! Result tags written onto scanned objects, merged with the tags the
//! object already has: other tags are never dropped, and S3's limits
//! (10 tags, 128-character keys, 256-character values, a restricted
//! character set) are handled with a clear error instead of a silent loss.

use crate::verdict::Verdict;
use serde::{Deserialize, Serialize};

/// S3's maximum number of tags on one object.
pub const MAX_TAGS: usize = 10;
const MAX_KEY: usize = 128;
const MAX_VALUE: usize = 256;

/// The tag keys bucketscan writes (`[tags]` in the config).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
pub struct TagKeys {
    /// `clean`, `infected`, `blocked`, `unscannable` or `error`.
    pub result: String,
    /// When the scan finished, RFC 3339 UTC.
    pub date: String,
    /// The engine and signature database version (clamd's VERSION).
    pub engine: String,
    /// The first finding's signature name, or the reason for other results.
    pub signature: String,
}

impl Default for TagKeys {
    fn default() -> Self {
        Self {
            result: "bucketscan-result".into(),
            date: "bucketscan-date".into(),
            engine: "bucketscan-engine".into(),
            signature: "bucketscan-signature".into(),
        }
    }
}

impl TagKeys {
    fn all(&self) -> [&str; 4] {
        [&self.result, &self.date, &self.engine, &self.signature]
    }

    /// Whether `key` is one of ours (so it may be replaced by a new scan).
    pub fn owns(&self, key: &str) -> bool {
        self.all().contains(&key)
    }
}

/// The result tags for one scan.
pub fn result_tags(keys: &TagKeys, verdict: &Verdict, date: &str, engine: Option<&str>) -> Vec<(String, String)> {
    let mut tags = vec![
        (keys.result.clone(), verdict.result_name().to_owned()),
        (keys.date.clone(), date.to_owned()),
    ];
    if let Some(engine) = engine {
        tags.push((keys.engine.clone(), sanitize(engine)));
    }
    let detail = match verdict {
        Verdict::Clean => None,
        Verdict::Infected { findings } => findings.first().map(|f| f.signature.clone()),
        Verdict::Blocked { reason } => Some(reason.clone()),
        Verdict::Unscannable { reason, .. } => Some(reason.as_str().to_owned()),
        Verdict::Error { message } => Some(message.clone()),
    };
    if let Some(detail) = detail {
        tags.push((keys.signature.clone(), sanitize(&detail)));
    }
    tags
}

/// Too many tags after merging.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "the object has {existing} tags of its own and bucketscan needs {needed} more; S3 allows {MAX_TAGS}. \
     Remove some tags or set fewer result tag keys"
)]
pub struct TooManyTags {
    pub existing: usize,
    pub needed: usize,
}

/// Merges `ours` into `existing`: our keys replace earlier values of the
/// same keys (including stale results of our own), every other tag stays.
pub fn merge(existing: &[(String, String)], ours: &[(String, String)]) -> Result<Vec<(String, String)>, TooManyTags> {
    let mut merged: Vec<(String, String)> = existing
        .iter()
        .filter(|(key, _)| !ours.iter().any(|(k, _)| k == key))
        .cloned()
        .collect();
    let kept = merged.len();
    merged.extend(ours.iter().cloned());
    if merged.len() > MAX_TAGS {
        return Err(TooManyTags {
            existing: kept,
            needed: ours.len(),
        });
    }
    Ok(merged)
}

/// Keeps a value within S3's tag character set and length: letters, digits,
/// spaces and `+ - = . _ : / @`; anything else becomes `_`.
pub fn sanitize(value: &str) -> String {
    let cleaned: String = value
        .chars()
        .map(|c| {
            if c.is_alphanumeric() || " +-=._:/@".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    cleaned.chars().take(MAX_VALUE).collect()
}

/// Checks a tag key set from the config.
pub fn validate_key(key: &str) -> Result<(), String> {
    if key.is_empty() || key.chars().count() > MAX_KEY || sanitize(key) != key {
        Err(format!(
            "`{key}` is not a valid S3 tag key (1-{MAX_KEY} letters, digits, spaces, + - = . _ : / @)"
        ))
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verdict::Finding;

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn merging_keeps_other_tags_and_replaces_ours() {
        let existing = pairs(&[("team", "finance"), ("bucketscan-result", "error")]);
        let ours = pairs(&[("bucketscan-result", "clean")]);
        assert_eq!(
            merge(&existing, &ours).unwrap(),
            pairs(&[("team", "finance"), ("bucketscan-result", "clean")])
        );
    }

    #[test]
    fn the_ten_tag_limit_is_a_clear_error() {
        let existing: Vec<_> = (0..8).map(|i| (format!("k{i}"), "v".to_string())).collect();
        let ours = pairs(&[("a", "1"), ("b", "2"), ("c", "3")]);
        let err = merge(&existing, &ours).unwrap_err();
        assert_eq!(err, TooManyTags { existing: 8, needed: 3 });
        assert!(err.to_string().contains("S3 allows 10"));
    }

    #[test]
    fn result_tags_name_the_signature() {
        let verdict = Verdict::Infected {
            findings: vec![Finding {
                engine: "clamav".into(),
                signature: "Eicar-Test-Signature.UNOFFICIAL".into(),
            }],
        };
        let tags = result_tags(
            &TagKeys::default(),
            &verdict,
            "2026-11-25T10:00:00Z",
            Some("ClamAV 1.4.6/27000"),
        );
        assert_eq!(
            tags,
            pairs(&[
                ("bucketscan-result", "infected"),
                ("bucketscan-date", "2026-11-25T10:00:00Z"),
                ("bucketscan-engine", "ClamAV 1.4.6/27000"),
                ("bucketscan-signature", "Eicar-Test-Signature.UNOFFICIAL"),
            ])
        );
    }

    #[test]
    fn values_are_sanitized() {
        assert_eq!(sanitize("file type (PE)!"), "file type _PE__");
        assert!(validate_key("bucketscan-result").is_ok());
        assert!(validate_key("bad,key").is_err());
    }
}
