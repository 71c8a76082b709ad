//! The inspect-only entry: bytes that are not (yet) an object anywhere —
//! an upload to `POST /v1/scan` — through a pipeline's inspectors with the
//! same preparation (survey), engine checks and allow-list as every
//! object. Nothing is tagged, moved or published.

use crate::{Routing, Scanner};
use bucketscan_core::object::{ObjectBody, ObjectInfo};
use bucketscan_core::report::ScanReport;
use bucketscan_engine::PipelineStage;

impl Scanner {
    /// Scans `body`, described by `info` (its `bucket` names the pipeline),
    /// with the inspectors of `stages`. `Err` when the bytes could not be
    /// prepared now (no room in the spool).
    pub async fn inspect_only(
        &self,
        pipelines: &dyn Routing,
        stages: &[PipelineStage],
        info: ObjectInfo,
        body: ObjectBody,
    ) -> Result<ScanReport, crate::FetchError> {
        let limit = pipelines.max_object_bytes(&info.bucket).max(info.size);
        let inspected = self.inspect_bytes(pipelines, stages, &info, body, limit).await?;
        let (verdict, allowed) =
            self.allow_list
                .load()
                .apply(info.sha256.as_deref(), inspected.verdict, &inspected.later);
        let mut report = ScanReport::new(&info, verdict);
        report.stages = inspected.stages;
        report.host_actions = inspected.notes;
        report.allowed = allowed;
        report.decoded = inspected.object.decoded.clone();
        report.contents = inspected.object.survey.formats.clone();
        Ok(report)
    }
}
