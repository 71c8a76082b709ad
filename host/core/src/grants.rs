//! Capability grants: what one stage may do beyond reading its object.
//!
//! A plugin can import every capability of the contract; the config decides
//! which ones work for each stage. The host checks every call against these
//! grants and ends the stage when a call was not granted.

use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use std::fmt;

/// The capabilities granted to one stage (`grants = { … }` in the config).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Grants {
    /// May scan the object with ClamAV.
    #[serde(default)]
    pub clamav: bool,
    /// YARA rule sets (`[yara.rule-sets.NAME]`) this stage may run.
    #[serde(default)]
    pub yara: Vec<String>,
    /// Buckets this stage may write to (copy, move, delete, tag).
    #[serde(default)]
    pub storage: Vec<String>,
    /// Hosts this stage may POST to.
    #[serde(default)]
    pub http: Vec<String>,
    /// Private networks (loopback, RFC 1918, CGNAT, ULA, …) this stage's
    /// HTTP requests may reach, as CIDRs, e.g. `["10.20.0.0/16"]`. Without
    /// it every such address is refused, whatever name led to it. Cloud
    /// metadata and credential addresses stay refused regardless.
    #[serde(default)]
    pub http_private: Vec<IpNet>,
    /// Any bucket may be written to. Never set from a config file: only
    /// `bucketscan plugin run`, whose storage is a dry run, uses it.
    #[serde(skip)]
    pub any_bucket: bool,
}

/// A capability of the contract, as named in errors and in `plugin inspect`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Capability {
    Clamav,
    Yara,
    Storage,
    Http,
}

impl Capability {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Clamav => "clamav",
            Self::Yara => "yara",
            Self::Storage => "storage",
            Self::Http => "http",
        }
    }
}

impl fmt::Display for Capability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A call the grants did not allow.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("capability `{capability}` not granted: {detail}")]
pub struct NotGranted {
    pub capability: Capability,
    pub detail: String,
}

impl Grants {
    pub fn check_clamav(&self) -> Result<(), NotGranted> {
        if self.clamav {
            Ok(())
        } else {
            Err(NotGranted {
                capability: Capability::Clamav,
                detail: "the stage has no `clamav = true` grant".into(),
            })
        }
    }

    pub fn check_yara(&self, rule_set: &str) -> Result<(), NotGranted> {
        if self.yara.iter().any(|granted| granted == rule_set) {
            Ok(())
        } else {
            Err(NotGranted {
                capability: Capability::Yara,
                detail: format!("rule set `{rule_set}` is not in the stage's yara grant {:?}", self.yara),
            })
        }
    }

    pub fn check_storage(&self, bucket: &str) -> Result<(), NotGranted> {
        if self.any_bucket || self.storage.iter().any(|granted| granted == bucket) {
            Ok(())
        } else {
            Err(NotGranted {
                capability: Capability::Storage,
                detail: format!(
                    "bucket `{bucket}` is not in the stage's storage grant {:?}",
                    self.storage
                ),
            })
        }
    }

    /// Hosts match exactly, case-insensitively; `*.example.com` matches
    /// subdomains of example.com (not example.com itself).
    pub fn check_http(&self, host: &str) -> Result<(), NotGranted> {
        let host = host.to_ascii_lowercase();
        let allowed = self.http.iter().any(|pattern| {
            let pattern = pattern.to_ascii_lowercase();
            match pattern.strip_prefix("*.") {
                Some(suffix) => host.ends_with(&format!(".{suffix}")),
                None => host == pattern,
            }
        });
        if allowed {
            Ok(())
        } else {
            Err(NotGranted {
                capability: Capability::Http,
                detail: format!("host `{host}` is not in the stage's http grant {:?}", self.http),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_is_granted_by_default() {
        let grants = Grants::default();
        assert!(grants.check_clamav().is_err());
        assert!(grants.check_storage("b").is_err());
        assert!(grants.check_http("example.com").is_err());
    }

    #[test]
    fn http_wildcards_match_subdomains_only() {
        let grants = Grants {
            http: vec!["*.example.com".into(), "hooks.local".into()],
            ..Grants::default()
        };
        assert!(grants.check_http("a.example.com").is_ok());
        assert!(grants.check_http("HOOKS.local").is_ok());
        assert!(grants.check_http("example.com").is_err());
        assert!(grants.check_http("evilexample.com").is_err());
    }

    #[test]
    fn storage_names_the_bucket_that_was_refused() {
        let grants = Grants {
            storage: vec!["prod".into()],
            ..Grants::default()
        };
        assert!(grants.check_storage("prod").is_ok());
        let err = grants.check_storage("other").unwrap_err();
        assert!(err.to_string().contains("`other`"), "{err}");
    }
}
