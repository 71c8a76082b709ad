//! The inspect-only entry: bytes that are not (yet) an object anywhere —
//! an upload to `POST /v1/scan` — through a pipeline's inspectors with the
//! same preparation (survey), engine checks and allow-list as every
//! object. Nothing is tagged, moved or published.

use crate::members::Container;
use crate::{Routing, Scanner};
use bucketscan_core::Verdict;
use bucketscan_core::object::{ObjectBody, ObjectInfo};
use bucketscan_core::report::{Coverage, ScanReport};
use bucketscan_engine::PipelineStage;
use bucketscan_unpack::members::{WALK_HEAD_BYTES, declared_container};

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
        let inspected = match self.upload_walk(pipelines, &info, &body) {
            Some(limits) => {
                let container = Container::Local(body);
                let mut walked = self
                    .inspect_members(pipelines, stages, &info, limits, container)
                    .await?;
                walked.coverage = Some(Coverage::Members);
                walked
            }
            None => {
                // Within the limit, or no container the host walks: whole,
                // and an engine's own limit answers for what it cannot take.
                let over_limit = info.size > pipelines.max_object_bytes(&info.bucket);
                let hash_body = over_limit.then(|| body.clone());
                let limit = pipelines.max_object_bytes(&info.bucket).max(info.size);
                let mut inspected = self.inspect_bytes(pipelines, stages, &info, body, limit).await?;
                if let Some(body) = hash_body {
                    self.hash_upload(&info, body, &mut inspected).await;
                }
                inspected
            }
        };
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
        report.coverage = inspected.coverage;
        Ok(report)
    }

    /// An upload over its pipeline's size limit that is not walked gets
    /// the whole-file hash signatures too, as an object would: the engine
    /// may have refused it for its size. A match makes it infected.
    async fn hash_upload(&self, info: &ObjectInfo, body: ObjectBody, inspected: &mut crate::path::Inspection) {
        if matches!(inspected.verdict, Verdict::Infected { .. }) {
            return;
        }
        let signatures = match self.hashes.as_ref().map(|source| source.hash_signatures()) {
            Some(Ok(signatures)) if signatures.covers(info.size) => signatures,
            Some(Ok(signatures)) => {
                let why = format!("they were indexed for uploads over {} bytes", signatures.floor());
                return inspected
                    .notes
                    .push(format!("whole-file hash signatures not applied: {why}"));
            }
            Some(Err(why)) => {
                return inspected
                    .notes
                    .push(format!("whole-file hash signatures not applied: {why}"));
            }
            None => {
                let why = "no signature database is known ([signatures])";
                return inspected
                    .notes
                    .push(format!("whole-file hash signatures not applied: {why}"));
            }
        };
        if signatures.kinds_for(info.size).is_empty() {
            return inspected.notes.push(format!(
                "no whole-file hash signature is for {} bytes: none can match",
                info.size
            ));
        }
        let size = info.size;
        let matched = tokio::task::spawn_blocking(move || {
            crate::hashes::match_stream(&signatures, size, &mut body.reader(), &|| false)
        })
        .await;
        match matched {
            Ok(Ok(Some(found))) => inspected.verdict = crate::hashes::infected_by(found, &mut inspected.notes, None),
            Ok(Ok(None)) => inspected.notes.push("no whole-file hash signature matched".into()),
            Ok(Err(err)) => inspected.notes.push(format!(
                "whole-file hash signatures not applied: reading the upload: {err}"
            )),
            Err(err) => inspected
                .notes
                .push(format!("whole-file hash signatures not applied: {err}")),
        }
    }

    /// How an upload over its pipeline's size limit is walked member by
    /// member, as an object would be (its name and type declaring the
    /// container its first bytes are); `None`: it is not.
    fn upload_walk(
        &self,
        pipelines: &dyn Routing,
        info: &ObjectInfo,
        body: &ObjectBody,
    ) -> Option<bucketscan_unpack::members::WalkLimits> {
        if info.size <= pipelines.max_object_bytes(&info.bucket) {
            return None;
        }
        let limits = pipelines.walk_limits(&info.bucket)?;
        let head = body.read_at(0, WALK_HEAD_BYTES.min(info.size as usize)).ok()?;
        declared_container(&info.key, info.content_type.as_deref(), &head).ok()?;
        Some(limits)
    }
}
