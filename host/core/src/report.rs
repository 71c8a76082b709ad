//! What the scan path reports about one object: the JSON of `bucketscan
//! plugin run --output json` and `scan --output json`, the body of result
//! notifications, and the agent's per-object log event.

use crate::allow::AllowMatch;
use crate::formats::Contained;
use crate::object::{Decoded, ObjectInfo};
use crate::pipeline::StageKind;
use crate::tags::TagPlan;
use crate::verdict::{Finding, ResultName, Verdict};
use serde::{Serialize, Serializer};

/// The report of one object's pass through the scan path.
#[derive(Debug, Clone)]
pub struct ScanReport {
    pub bucket: String,
    pub key: String,
    pub version_id: Option<String>,
    pub etag: Option<String>,
    pub size: u64,
    /// SHA-256 (hex) of the bytes scanned; `None` when they were not read.
    pub sha256: Option<String>,
    pub verdict: Verdict,
    pub stages: Vec<StageReport>,
    /// The result tags recorded (or, in a dry run, that would be), with
    /// what the tag limit cost; `None` when the path stopped before.
    pub tags: Option<TagPlan>,
    /// What the host did around the stages: recording the result,
    /// deferred deletes, the notification.
    pub host_actions: Vec<String>,
    pub outcome: Outcome,
    pub duration_ms: f64,
    /// Set when the allow-list turned the pipeline's verdict clean.
    pub allowed: Option<AllowMatch>,
    /// Set when the host decoded a `Content-Encoding` before the scan.
    pub decoded: Option<Decoded>,
    /// The container and compression formats the host found inside.
    pub contents: Vec<Contained>,
    /// How much of the object the verdict covers; `None` when its bytes
    /// were not read.
    pub coverage: Option<Coverage>,
    /// Copies the actions made (a promotion, a quarantine): where the
    /// scanned bytes now also live.
    pub copies: Vec<CopyRef>,
    /// Set when this was a retro-scan: an object found clean earlier,
    /// scanned again where it lives because the signatures changed.
    pub retro: Option<RetroScan>,
    /// The sweep (`scan --enqueue`, a retro-scan) that queued the object.
    pub sweep: Option<String>,
}

/// One copy an action made of the scanned bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct CopyRef {
    pub bucket: String,
    pub key: String,
    pub version_id: Option<String>,
    pub etag: Option<String>,
}

/// What a retro-scan carries from the result it looks at again: the alert
/// of a retro-detection says which database found what the earlier one
/// missed, and since when the object was served.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct RetroScan {
    /// The signature database whose installation asked for this rescan
    /// (clamd's VERSION, as the `engine` tag has it).
    pub database: String,
    /// The engine and database of the earlier clean result, when recorded.
    pub previous_engine: Option<String>,
    /// When the earlier clean result was recorded (RFC 3339): the object
    /// has been where it is since about then.
    pub clean_since: String,
    /// The object that earlier result was about (the upload in staging):
    /// its bucket's pipeline scans the copy.
    pub origin_bucket: String,
    pub origin_key: String,
}

/// How much of an object its verdict covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Coverage {
    /// What a client receives went through the inspectors at once.
    Whole,
    /// Too large for the engine whole, the object is a container the host
    /// walked: each member went through the inspectors on its own
    /// (findings name the member).
    Members,
    /// Too large for the engine and no container the host walks: only the
    /// whole-file hash signatures were applied (every byte read once).
    Hashes,
}

impl Coverage {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Whole => "whole",
            Self::Members => "members",
            Self::Hashes => "hashes",
        }
    }
}

/// How one object's pass ended, for the event that brought it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "status", content = "reason", rename_all = "kebab-case")]
pub enum Outcome {
    /// Every phase done: the event may be acknowledged.
    Done,
    /// Clean, but its own tags leave no slot for the result: not tagged,
    /// not promoted, published; the event is acknowledged.
    Held(String),
    /// Nothing to do: no pipeline, an agent's own write, a newer upload,
    /// gone.
    Skipped(String),
    /// Not done: leave the event for redelivery.
    Retry(String),
}

impl Outcome {
    /// Its stable name, as JSON and SNS attributes spell it.
    pub fn status(&self) -> &'static str {
        match self {
            Self::Done => "done",
            Self::Held(_) => "held",
            Self::Skipped(_) => "skipped",
            Self::Retry(_) => "retry",
        }
    }

    /// Whether the event that brought the object may be deleted.
    pub fn settles(&self) -> bool {
        !matches!(self, Self::Retry(_))
    }
}

impl ScanReport {
    /// A report with no stages run yet.
    pub fn new(object: &ObjectInfo, verdict: Verdict) -> Self {
        Self {
            bucket: object.bucket.clone(),
            key: object.key.clone(),
            version_id: object.version_id.clone(),
            etag: object.etag.clone(),
            size: object.size,
            sha256: object.sha256.clone(),
            verdict,
            stages: Vec::new(),
            tags: None,
            host_actions: Vec::new(),
            outcome: Outcome::Done,
            duration_ms: 0.0,
            allowed: None,
            decoded: None,
            contents: Vec::new(),
            coverage: None,
            copies: Vec::new(),
            retro: None,
            sweep: None,
        }
    }

    pub fn result(&self) -> ResultName {
        self.verdict.result_name()
    }

    pub fn findings(&self) -> &[Finding] {
        self.verdict.findings()
    }

    /// True when every action stage that ran succeeded.
    pub fn actions_ok(&self) -> bool {
        self.stages
            .iter()
            .filter(|stage| stage.kind == StageKind::Action)
            .all(|stage| stage.error.is_none())
    }

    /// The scan engine's version, from the first stage that scanned.
    pub fn engine_version(&self) -> Option<&str> {
        self.stages.iter().find_map(|stage| stage.engine_version.as_deref())
    }

    /// Every YARA rule set the stages ran, `NAME@VERSION`, once each.
    pub fn rule_sets(&self) -> Vec<&str> {
        rule_sets_of(&self.stages)
    }
}

/// Every YARA rule set `stages` ran, `NAME@VERSION`, once each, in the
/// order they ran.
pub fn rule_sets_of(stages: &[StageReport]) -> Vec<&str> {
    let mut sets: Vec<&str> = Vec::new();
    for set in stages.iter().flat_map(|stage| &stage.rule_sets) {
        if !sets.contains(&set.as_str()) {
            sets.push(set);
        }
    }
    sets
}

impl Serialize for ScanReport {
    /// Field names are stable (they are what JSON and SNS consumers read);
    /// `result` and `findings` are views of `verdict`, written out for
    /// consumers that filter on them.
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Json<'a> {
            bucket: &'a str,
            key: &'a str,
            version_id: &'a Option<String>,
            etag: &'a Option<String>,
            size: u64,
            #[serde(skip_serializing_if = "Option::is_none")]
            sha256: &'a Option<String>,
            result: ResultName,
            verdict: &'a Verdict,
            findings: &'a [Finding],
            stages: &'a [StageReport],
            #[serde(skip_serializing_if = "Option::is_none")]
            tags: &'a Option<TagPlan>,
            host_actions: &'a [String],
            actions_ok: bool,
            outcome: &'a Outcome,
            duration_ms: f64,
            #[serde(skip_serializing_if = "Option::is_none")]
            allowed: &'a Option<AllowMatch>,
            #[serde(skip_serializing_if = "Option::is_none")]
            decoded: &'a Option<Decoded>,
            #[serde(skip_serializing_if = "<[Contained]>::is_empty")]
            contents: &'a [Contained],
            #[serde(skip_serializing_if = "Option::is_none")]
            coverage: Option<Coverage>,
            #[serde(skip_serializing_if = "<[CopyRef]>::is_empty")]
            copies: &'a [CopyRef],
            #[serde(skip_serializing_if = "Option::is_none")]
            retro: &'a Option<RetroScan>,
            #[serde(skip_serializing_if = "Option::is_none")]
            sweep: &'a Option<String>,
            /// The YARA rule sets that ran, `NAME@VERSION`.
            #[serde(skip_serializing_if = "Vec::is_empty")]
            rule_sets: Vec<&'a str>,
        }
        Json {
            bucket: &self.bucket,
            key: &self.key,
            version_id: &self.version_id,
            etag: &self.etag,
            size: self.size,
            sha256: &self.sha256,
            result: self.result(),
            verdict: &self.verdict,
            findings: self.findings(),
            stages: &self.stages,
            tags: &self.tags,
            host_actions: &self.host_actions,
            actions_ok: self.actions_ok(),
            outcome: &self.outcome,
            duration_ms: self.duration_ms,
            allowed: &self.allowed,
            decoded: &self.decoded,
            contents: &self.contents,
            coverage: self.coverage,
            copies: &self.copies,
            retro: &self.retro,
            sweep: &self.sweep,
            rule_sets: self.rule_sets(),
        }
        .serialize(serializer)
    }
}

/// How one stage went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StageOutcome {
    /// An inspector with no verdict.
    Continue,
    /// An inspector's verdict.
    Verdict(ResultName),
    /// An action that ran.
    Done,
    /// The stage failed (see its error and cause).
    Failed,
    /// An inspector after inspection ended.
    Skipped,
    /// An action whose `on` does not include the verdict, or that cannot
    /// run for it (error, held).
    NotApplicable,
}

impl StageOutcome {
    /// The stable name in JSON, SNS and the `context` import.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Continue => "continue",
            Self::Verdict(result) => result.as_str(),
            Self::Done => "done",
            Self::Failed => "failed",
            Self::Skipped => "skipped",
            Self::NotApplicable => "not applicable",
        }
    }
}

impl PartialEq<&str> for StageOutcome {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl Serialize for StageOutcome {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

/// Why a stage failed, in short, for reports and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum FailureCause {
    Timeout,
    Memory,
    Trap,
    NotGranted,
    MalformedOutput,
    PluginError,
    Instantiate,
    /// More calls to a capability, or more live handles, than one stage
    /// may make or hold.
    CallLimit,
    /// A storage action failed and the plugin reported success anyway.
    UnhandledFailure,
}

impl FailureCause {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Timeout => "timeout",
            Self::Memory => "memory",
            Self::Trap => "trap",
            Self::NotGranted => "not-granted",
            Self::MalformedOutput => "malformed-output",
            Self::PluginError => "plugin-error",
            Self::Instantiate => "instantiate",
            Self::CallLimit => "call-limit",
            Self::UnhandledFailure => "unhandled-failure",
        }
    }
}

/// What one stage did.
#[derive(Debug, Clone, Serialize)]
pub struct StageReport {
    pub plugin: String,
    pub plugin_version: String,
    pub kind: StageKind,
    pub outcome: StageOutcome,
    /// Lines an action reported as done, and storage actions the host
    /// performed for it.
    pub actions: Vec<String>,
    /// Why the stage failed, naming the plugin and the cause.
    pub error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cause: Option<FailureCause>,
    /// clamd's VERSION answer when the stage scanned with ClamAV.
    pub engine_version: Option<String>,
    /// The YARA rule sets the stage ran, `NAME@VERSION` (empty: none).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub rule_sets: Vec<String>,
    pub duration_ms: f64,
}
