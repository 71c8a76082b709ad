//! Verdicts: what a pipeline concludes about one object.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Something a scan engine found in an object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Finding {
    /// The engine that reported it (`clamav`, `filetype-filter`, …).
    pub engine: String,
    /// Signature or rule name.
    pub signature: String,
    /// Where in the object it was found, for an object scanned member by
    /// member: the member's path (`big.zip!/dir/inner.tar!/x.exe`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
}

impl Finding {
    /// A finding in the object as a whole.
    pub fn new(engine: impl Into<String>, signature: impl Into<String>) -> Self {
        Self {
            engine: engine.into(),
            signature: signature.into(),
            location: None,
        }
    }
}

/// Why an object could not be scanned. None of these is clean.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum UnscannableReason {
    Encrypted,
    TooLarge,
    LimitsExceeded,
    StaleSignatures,
    NotScanned,
    /// A `Content-Encoding` the host cannot decode: what a client receives
    /// could not be read.
    UnsupportedEncoding,
    /// The bytes hold a container or compression format the engine that
    /// answered does not open (its `OK` meant "could not look").
    UnsupportedContainer,
    /// The bytes are not what their encoding or container says (a broken
    /// gzip, a truncated archive).
    Malformed,
    /// Encrypted with a customer-provided key (SSE-C): S3 serves the bytes
    /// only to whoever holds it.
    CustomerKey,
    /// In an archive storage class (Glacier, Deep Archive, an archive
    /// tier): not readable until restored.
    Archived,
    /// S3 (or KMS) refused the agent the bytes.
    AccessDenied,
}

impl UnscannableReason {
    pub const ALL: [UnscannableReason; 11] = [
        Self::Encrypted,
        Self::TooLarge,
        Self::LimitsExceeded,
        Self::StaleSignatures,
        Self::NotScanned,
        Self::UnsupportedEncoding,
        Self::UnsupportedContainer,
        Self::Malformed,
        Self::CustomerKey,
        Self::Archived,
        Self::AccessDenied,
    ];

    /// The reason `name` (its `as_str`) names.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|reason| reason.as_str() == name)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Encrypted => "encrypted",
            Self::TooLarge => "too-large",
            Self::LimitsExceeded => "limits-exceeded",
            Self::StaleSignatures => "stale-signatures",
            Self::NotScanned => "not-scanned",
            Self::UnsupportedEncoding => "unsupported-encoding",
            Self::UnsupportedContainer => "unsupported-container",
            Self::Malformed => "malformed",
            Self::CustomerKey => "customer-key",
            Self::Archived => "archived",
            Self::AccessDenied => "access-denied",
        }
    }
}

/// The answer of a pipeline (or one inspector) about one object.
///
/// Only [`Verdict::Clean`] lets an object through; everything else keeps it
/// out of production.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "verdict", rename_all = "kebab-case")]
pub enum Verdict {
    Clean,
    Infected { findings: Vec<Finding> },
    Blocked { reason: String },
    Unscannable { reason: UnscannableReason, detail: String },
    Error { message: String },
}

/// The name of a verdict's kind: the value of the result tag, the
/// `scan-result` notification attribute, and what `on = [...]` filters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ResultName {
    Clean,
    Infected,
    Blocked,
    Unscannable,
    Error,
}

impl ResultName {
    pub const ALL: [ResultName; 5] = [
        Self::Clean,
        Self::Infected,
        Self::Blocked,
        Self::Unscannable,
        Self::Error,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Clean => "clean",
            Self::Infected => "infected",
            Self::Blocked => "blocked",
            Self::Unscannable => "unscannable",
            Self::Error => "error",
        }
    }
}

impl fmt::Display for ResultName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl PartialEq<&str> for ResultName {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl Verdict {
    /// The documented result value written to tags and notifications:
    /// `clean`, `infected`, `blocked`, `unscannable` or `error`.
    pub fn result_name(&self) -> ResultName {
        match self {
            Self::Clean => ResultName::Clean,
            Self::Infected { .. } => ResultName::Infected,
            Self::Blocked { .. } => ResultName::Blocked,
            Self::Unscannable { .. } => ResultName::Unscannable,
            Self::Error { .. } => ResultName::Error,
        }
    }

    /// Whether the verdict keeps the object out: everything but clean.
    pub fn contains(&self) -> bool {
        !self.is_clean()
    }

    pub fn is_clean(&self) -> bool {
        matches!(self, Self::Clean)
    }

    pub fn findings(&self) -> &[Finding] {
        match self {
            Self::Infected { findings } => findings,
            _ => &[],
        }
    }

    pub fn error(message: impl Into<String>) -> Self {
        Self::Error {
            message: message.into(),
        }
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Clean => f.write_str("clean"),
            Self::Infected { findings } => {
                f.write_str("infected (")?;
                for (i, finding) in findings.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{}: {}", finding.engine, finding.signature)?;
                    if let Some(location) = &finding.location {
                        write!(f, " in {location}")?;
                    }
                }
                f.write_str(")")
            }
            Self::Blocked { reason } => write!(f, "blocked ({reason})"),
            Self::Unscannable { reason, detail } => {
                write!(f, "unscannable ({}: {detail})", reason.as_str())
            }
            Self::Error { message } => write!(f, "error ({message})"),
        }
    }
}

/// What one inspector answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// No verdict from this stage.
    Continue,
    /// This stage reached a verdict.
    Verdict(Verdict),
}
