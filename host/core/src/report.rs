//! What a pipeline run reports about one object: the JSON of
//! `bucketscan plugin run --output json` and, later, the agent's log events.

use crate::object::ObjectInfo;
use crate::pipeline::StageKind;
use crate::verdict::{Finding, Verdict};
use serde::Serialize;

/// The report of one pipeline run over one object.
#[derive(Debug, Clone, Serialize)]
pub struct ScanReport {
    pub bucket: String,
    pub key: String,
    pub version_id: Option<String>,
    pub size: u64,
    /// `clean`, `infected`, `blocked`, `unscannable` or `error`.
    pub result: &'static str,
    pub verdict: Verdict,
    pub findings: Vec<Finding>,
    pub stages: Vec<StageReport>,
    /// True when every action that ran succeeded.
    pub actions_ok: bool,
    pub duration_ms: f64,
}

impl ScanReport {
    pub fn new(object: &ObjectInfo, verdict: Verdict, stages: Vec<StageReport>, duration_ms: f64) -> Self {
        let actions_ok = stages
            .iter()
            .filter(|stage| stage.kind == StageKind::Action)
            .all(|stage| stage.error.is_none());
        Self {
            bucket: object.bucket.clone(),
            key: object.key.clone(),
            version_id: object.version_id.clone(),
            size: object.size,
            result: verdict.result_name(),
            findings: verdict.findings().to_vec(),
            verdict,
            stages,
            actions_ok,
            duration_ms,
        }
    }
}

/// What one stage did.
#[derive(Debug, Clone, Serialize)]
pub struct StageReport {
    pub plugin: String,
    pub plugin_version: String,
    pub kind: StageKind,
    /// `continue`, a result name, `skipped` (action not applicable) or `failed`.
    pub outcome: String,
    /// Lines an action reported as done, and storage actions the host performed.
    pub actions: Vec<String>,
    /// Why the stage failed, naming the plugin and the cause.
    pub error: Option<String>,
    /// The failure's short cause (`timeout`, `memory`, `trap`,
    /// `not-granted`, `malformed-output`, `plugin-error`, `instantiate`),
    /// for metrics.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cause: Option<&'static str>,
    /// clamd's VERSION answer (engine and signature DB version) when the
    /// stage scanned with ClamAV.
    pub engine_version: Option<String>,
    pub duration_ms: f64,
}
