//! The phases of the scan path, in the order `bucketscan_core::phases`
//! gives them. Each phase either moves on or ends the pass with an
//! [`Outcome`]; nothing destructive happens before the result is published.

use crate::actions::{ObjectActions, Recorded};
use crate::content::{self, Prepared};
use crate::store::{FetchError, Opened, Target};
use crate::take_back::take_back;
use crate::{Routing, Scanner, now_rfc3339};
use bucketscan_core::object::{ObjectBody, ObjectInfo, ScanObject};
use bucketscan_core::phases::{self, Admission};
use bucketscan_core::report::{Outcome, ScanReport, StageReport};
use bucketscan_core::seal::SealOrigin;
use bucketscan_core::storage::{StorageBackend, StorageError};
use bucketscan_core::tags::{self, ResultValues, TagTarget};
use bucketscan_core::verdict::ResultName;
use bucketscan_core::{UnscannableReason, Verdict};
use bucketscan_engine::runner::{self, InspectPolicy};
use std::sync::Arc;
use std::time::Instant;

/// How often one event may restart because the key was overwritten while
/// it was scanned, before it is left for a retry.
const MAX_RESTARTS: u32 = 2;

enum Pass {
    Finished(Box<ScanReport>),
    /// The key holds other bytes than the pass started with: start again on
    /// what it holds now. Carries what this pass learnt, if anything.
    Superseded(String, Option<Box<ScanReport>>),
}

impl Scanner {
    /// Takes `target` through the scan path with `pipelines`. The report's
    /// outcome says whether its event may be acknowledged.
    pub async fn scan(&self, pipelines: &dyn Routing, target: &Target) -> ScanReport {
        let started = Instant::now();
        let mut target = target.clone();
        let mut notes = Vec::new();
        for _ in 0..=MAX_RESTARTS {
            match self.pass(pipelines, &target).await {
                Pass::Finished(report) => {
                    let mut report = *report;
                    notes.append(&mut report.host_actions);
                    report.host_actions = notes;
                    report.duration_ms = started.elapsed().as_secs_f64() * 1000.0;
                    return report;
                }
                Pass::Superseded(why, learnt) => {
                    tracing::info!(bucket = %target.bucket, key = %bucketscan_core::object::printable(&target.key), "{why}; scanning what the key holds now");
                    if let Some(report) = learnt {
                        self.publish_superseded(&report, &why, &mut notes).await;
                    }
                    notes.push(why);
                    target = target.current();
                }
            }
        }
        let mut report = not_scanned(&target, "the key kept changing while it was scanned");
        report.outcome = Outcome::Retry(format!(
            "{}: overwritten {} times during its scan",
            target.url(),
            MAX_RESTARTS + 1
        ));
        report.host_actions = notes;
        report
    }

    /// Bytes found infected or blocked and then overwritten are gone, but
    /// someone uploaded them: say so (best effort; the newer bytes get
    /// their own result).
    async fn publish_superseded(&self, report: &ScanReport, why: &str, notes: &mut Vec<String>) {
        if !report.verdict.contains() || !phases::settles(&report.verdict) {
            return;
        }
        let Some(publisher) = &self.publisher else { return };
        let mut report = report.clone();
        report.outcome = Outcome::Skipped(why.to_owned());
        match publisher.publish(&report).await {
            Ok(line) => notes.push(format!("{line} (the scanned bytes were overwritten)")),
            Err(err) => tracing::error!("{}: publishing the result of overwritten bytes: {err}", why),
        }
    }

    async fn pass(&self, pipelines: &dyn Routing, target: &Target) -> Pass {
        let skipped = |why: String| finished(not_scanned(target, &why), Outcome::Skipped(why));

        // Route.
        let Some((scope, stages)) = pipelines.route(&target.bucket, &target.key) else {
            return skipped(format!("{}: no pipeline", target.url()));
        };
        // Admit and open: over the limit, nothing is downloaded.
        let limit = pipelines.max_object_bytes(&target.bucket);
        let (mut info, pending, refused) = match self.store.open(target, limit).await {
            Ok(Opened::Ready { info, body }) => (info, Some(body), None),
            Ok(Opened::TooLarge(info)) => (info, None, None),
            Ok(Opened::Unreadable { info, verdict }) => (info, None, Some(verdict)),
            Err(FetchError::Gone(why)) => return skipped(why),
            // The key holds newer bytes than the event named: whatever tags
            // they carry (ours, landed there after a failure, included) are
            // checked by scanning what is there now.
            Err(FetchError::Replaced(why)) => return Pass::Superseded(why, None),
            Err(err) => {
                let report = not_scanned(target, &err.to_string());
                return finished(report, Outcome::Retry(err.to_string()));
            }
        };
        let mut host_actions = Vec::new();

        // Fetch: the bytes and their SHA-256, the identity seals bind.
        let body = match pending {
            Some(pending) => match pending.read().await {
                Ok(body) => {
                    info.sha256 = Some(body.sha256);
                    Some(body.bytes)
                }
                Err(FetchError::Gone(why)) => return skipped(why),
                Err(FetchError::Replaced(why)) => return Pass::Superseded(why, None),
                Err(err) => return self.retry(&info, host_actions, err.to_string()),
            },
            None => None,
        };

        // Results an agent sealed for exactly these bytes.
        let trusted = self.tag_keys.verify(&self.sealer, info.seal_subject(), &info.tags);
        let written = self.tag_keys.verify(
            &self.sealer,
            bucketscan_core::seal::SealSubject {
                version_id: None,
                ..info.seal_subject()
            },
            &info.tags,
        );
        if !target.rescan {
            // An agent's own write (a promotion or quarantine copy) needs no
            // scan: skipping it is what keeps a pipeline that writes into a
            // watched bucket from looping.
            if written == Some(SealOrigin::Written) {
                return skipped(format!("{}: written by a bucketscan agent", info.url()));
            }
            if let Some(why) = self.already_current(&info, trusted, target) {
                return skipped(why);
            }
        }
        // Result tags the object arrived with that no agent sealed for these
        // bytes are gone before the scan, so nothing trusts them while it
        // runs.
        let foreign = self.tag_keys.foreign(&info.tags);
        let trusted = trusted.or(written);
        if foreign.len() != info.tags.len() && trusted.is_none() {
            match self.store.put_tags(&info, &foreign).await {
                Ok(None) => {
                    let verb = if self.store.dry_run() {
                        "would remove"
                    } else {
                        "removed"
                    };
                    host_actions.push(format!("{verb} result tags on {} that no agent wrote", info.url()));
                    info.tags = foreign;
                }
                Ok(Some(now)) => return Pass::Superseded(replaced(&info, &now), None),
                Err(StorageError::Gone(why)) => return skipped(why),
                Err(err) => return self.retry(&info, host_actions, format!("removing untrusted result tags: {err}")),
            }
        }

        // Inspect: what a client receives (the encoding undone, the
        // containers surveyed), then the inspectors.
        let admission = phases::admit(info.size, limit);
        let inspected = match (body, admission) {
            _ if refused.is_some() => {
                let object = ScanObject::new(Arc::new(info.clone()), ObjectBody::NotFetched);
                Inspection::decided(object, refused.expect("checked"))
            }
            (Some(bytes), Admission::Fetch) => match self.inspect(pipelines, &stages, &info, bytes, limit).await {
                Ok(inspected) => inspected,
                Err(err) => return self.retry(&info, host_actions, err.to_string()),
            },
            (_, admission) => {
                let verdict = match admission {
                    Admission::TooLarge(verdict) => verdict,
                    Admission::Fetch => Verdict::Unscannable {
                        reason: UnscannableReason::TooLarge,
                        detail: format!("over the {limit}-byte limit; not downloaded"),
                    },
                };
                Inspection::decided(ScanObject::new(Arc::new(info.clone()), ObjectBody::NotFetched), verdict)
            }
        };
        let Inspection {
            verdict,
            later,
            stages: mut stage_reports,
            object,
            notes,
        } = inspected;
        host_actions.extend(notes);
        // Allow: bytes an operator released as a false positive pass, and
        // the report keeps what the pipeline said of them.
        let (verdict, allowed) = self.allow_list.load().apply(info.sha256.as_deref(), verdict, &later);
        if let Some(allowed) = &allowed {
            host_actions.push(format!(
                "allow-listed ({}): the pipeline said {}; passed as clean",
                allowed.entry.source, allowed.verdict
            ));
        }
        let mut report = ScanReport::new(&info, verdict.clone());
        report.allowed = allowed.clone();
        report.decoded = object.decoded.clone();
        report.contents = object.survey.formats.clone();

        // Record: the result tags, sealed; containment first.
        let mut values = ResultValues::new(
            self.tag_keys.profile,
            &verdict,
            &now_rfc3339(),
            first_engine(&stage_reports),
        );
        values.decoded = object.decoded.as_ref().map(|d| d.content_encoding.join("+"));
        if let Some(allowed) = &allowed {
            let what = match allowed.verdict.findings().first() {
                Some(finding) => finding.signature.clone(),
                None => allowed.verdict.result_name().as_str().to_owned(),
            };
            values.signature = Some(tags::sanitize(&format!("allow-listed {what}")));
        }
        let plan = tags::plan(
            &self.tag_keys,
            &self.sealer,
            &info.tags,
            &values,
            TagTarget {
                subject: info.seal_subject(),
                origin: SealOrigin::Scanned,
                contain: verdict.contains(),
            },
        );
        if plan.held.is_none() {
            match self.store.put_tags(&info, &plan.tags).await {
                Ok(None) => host_actions.push(format!(
                    "{} {} {}={}",
                    if self.store.dry_run() { "would tag" } else { "tagged" },
                    info.url(),
                    self.tag_keys.result,
                    values.result
                )),
                Ok(Some(now)) => {
                    report.stages = stage_reports;
                    let why = replaced(&info, &now);
                    if let Err(err) = take_back(&*self.store, &self.tag_keys, &self.sealer, &info, &values).await {
                        return self.retry_report(report, host_actions, format!("{why}; {err}"));
                    }
                    return Pass::Superseded(why, Some(Box::new(report)));
                }
                Err(StorageError::Gone(why)) => return skipped(why),
                Err(err) => {
                    report.stages = stage_reports;
                    return self.retry_report(report, host_actions, format!("writing the result tags: {err}"));
                }
            }
        }
        report.tags = Some(plan.clone());

        // Act: not for a verdict that does not settle, not for a held object.
        let actions = Arc::new(ObjectActions::new(
            self.store.clone(),
            self.tag_keys.clone(),
            self.sealer.clone(),
            Recorded {
                values,
                contain: verdict.contains(),
                tags: plan.tags.clone(),
                arrived: info.tags.clone(),
            },
        ));
        let rollback = target.contain_only && !verdict.contains();
        if rollback {
            host_actions.push(format!(
                "{}: not the current version; clean, so no action ran (promoting it would roll the key back)",
                info.url()
            ));
        }
        if phases::runs_actions(&verdict, &plan) && !rollback {
            let storage: Arc<dyn StorageBackend> = actions.clone();
            let mut acted = runner::act(
                &self.engine,
                &self.services,
                &stages,
                &object,
                &verdict,
                &storage,
                &stage_reports,
            )
            .await;
            stage_reports.append(&mut acted);
        } else {
            stage_reports.append(&mut runner::actions_not_run(&stages));
        }
        report.stages = stage_reports;
        note_dropped(&mut report, &mut host_actions, actions.dropped());
        if !phases::settles(&verdict) {
            let why = format!("{}: {verdict}; no action ran, the event comes back", info.url());
            return self.retry_report(report, host_actions, why);
        }
        if !report.actions_ok() {
            let errors: Vec<&str> = report.stages.iter().filter_map(|s| s.error.as_deref()).collect();
            let why = format!("{}: actions failed: {}", info.url(), errors.join("; "));
            // The alert goes out even though containment is not finished
            // (a quarantine that keeps failing must not keep the finding
            // quiet): published with outcome `retry`, on every attempt.
            // Nothing was deleted: deletes wait for a pass that finishes.
            report.host_actions = host_actions.clone();
            report.outcome = Outcome::Retry(why.clone());
            if let Some(publisher) = self.publisher.as_ref().filter(|_| phases::publishes(&verdict)) {
                match publisher.publish(&report).await {
                    Ok(line) => host_actions.push(line),
                    Err(err) => host_actions.push(format!("not published: {err}")),
                }
            }
            return self.retry_report(report, host_actions, why);
        }

        // Notify, before anything is deleted.
        report.host_actions = host_actions.clone();
        report.outcome = match &plan.held {
            Some(why) => Outcome::Held(why.clone()),
            None => Outcome::Done,
        };
        if let Some(publisher) = self.publisher.as_ref().filter(|_| phases::publishes(&verdict)) {
            match publisher.publish(&report).await {
                Ok(line) => host_actions.push(line),
                Err(err) => return self.retry_report(report, host_actions, err.to_string()),
            }
        }

        // Release the deferred deletes.
        match actions.release().await {
            Ok(mut lines) => host_actions.append(&mut lines),
            Err(err) => {
                let why = format!("{}: deleting after the result was published: {err}", info.url());
                return self.retry_report(report, host_actions, why);
            }
        }
        report.host_actions = host_actions;
        let outcome = match plan.held {
            Some(why) => Outcome::Held(why),
            None => Outcome::Done,
        };
        tracing::debug!(pipeline = %scope, "{}: {}", info.url(), report.verdict);
        finished(report, outcome)
    }

    /// The inspectors over what a client receives of `bytes`; `Err` when
    /// that could not be produced now (a retry may).
    pub(crate) async fn inspect(
        &self,
        pipelines: &dyn Routing,
        stages: &[bucketscan_engine::PipelineStage],
        info: &ObjectInfo,
        bytes: ObjectBody,
        limit: u64,
    ) -> Result<Inspection, FetchError> {
        let prepared = content::prepare(Arc::new(info.clone()), bytes, limit, &self.spool).await?;
        let (object, stored) = match prepared {
            Prepared::Ready { object, stored } => (object, stored),
            Prepared::Refused { object, verdict } => return Ok(Inspection::decided(object, verdict)),
        };
        let policy = InspectPolicy {
            let_through: pipelines.let_through(&info.bucket),
            keep_going: self.allow_list.load().may_lift(info.sha256.as_deref()),
        };
        let inspected = runner::inspect_with(&self.engine, &self.services, stages, &object, &policy).await;
        let mut inspection = Inspection {
            verdict: inspected.verdict,
            later: inspected.later,
            stages: inspected.stages,
            object,
            notes: Vec::new(),
        };
        if let Some(stored) = stored {
            // A client that does not decode gets the stored bytes.
            let raw = runner::inspect_with(&self.engine, &self.services, stages, &stored, &policy).await;
            inspection.add_stored(raw);
        }
        Ok(inspection)
    }

    /// A sweep's "already scanned with the current signatures": an agent
    /// sealed a settled result on exactly these bytes with this engine.
    fn already_current(&self, info: &ObjectInfo, trusted: Option<SealOrigin>, target: &Target) -> Option<String> {
        let engine = target.skip_if_scanned_with.as_deref()?;
        if trusted != Some(SealOrigin::Scanned) {
            return None;
        }
        let result = self.tag_keys.result_name_of(&info.tags)?;
        let tagged_engine = info
            .tags
            .iter()
            .find(|(k, _)| *k == self.tag_keys.engine)
            .map(|(_, v)| v.as_str());
        let settled = !matches!(result, ResultName::Error | ResultName::Unscannable);
        (tagged_engine == Some(engine) && settled).then(|| format!("{}: already {result} with {engine}", info.url()))
    }

    fn retry(&self, info: &ObjectInfo, host_actions: Vec<String>, why: String) -> Pass {
        let mut report = ScanReport::new(info, Verdict::error(why.clone()));
        report.host_actions = host_actions;
        finished(report, Outcome::Retry(why))
    }

    fn retry_report(&self, mut report: ScanReport, host_actions: Vec<String>, why: String) -> Pass {
        report.host_actions = host_actions;
        finished(report, Outcome::Retry(why))
    }
}

/// What inspection concluded, and about which bytes.
pub(crate) struct Inspection {
    pub(crate) verdict: Verdict,
    /// Verdicts of inspectors that ran after `verdict` was reached.
    pub(crate) later: Vec<Verdict>,
    pub(crate) stages: Vec<StageReport>,
    pub(crate) object: ScanObject,
    /// What the report should say about how it was reached.
    pub(crate) notes: Vec<String>,
}

impl Inspection {
    /// A verdict reached without running the inspectors.
    fn decided(object: ScanObject, verdict: Verdict) -> Self {
        Self {
            verdict,
            later: Vec::new(),
            stages: Vec::new(),
            object,
            notes: Vec::new(),
        }
    }

    /// Folds in the inspection of the stored bytes of a decoded object:
    /// the first verdict other than clean (decoded bytes first) stands,
    /// and the other joins the later ones. A policy's `blocked` about the
    /// stored bytes does not count: names and types describe the content,
    /// and the stored bytes of `page.html` are gzip by design.
    fn add_stored(&mut self, raw: runner::Inspected) {
        let policy = |verdict: &Verdict| matches!(verdict, Verdict::Blocked { .. });
        self.notes.push(format!(
            "the stored bytes (as sent, {}) were inspected too: {}{}",
            self.object
                .decoded
                .as_ref()
                .map(|d| d.content_encoding.join(", "))
                .unwrap_or_default(),
            raw.verdict,
            if policy(&raw.verdict) {
                " (a policy about the decoded content; not applied)"
            } else {
                ""
            }
        ));
        let counted = if policy(&raw.verdict) {
            Verdict::Clean
        } else {
            raw.verdict
        };
        if self.verdict.is_clean() && !counted.is_clean() {
            let decoded = std::mem::replace(&mut self.verdict, counted);
            self.later.push(decoded);
        } else {
            self.later.push(counted);
        }
        self.later.extend(raw.later.into_iter().filter(|v| !policy(v)));
    }
}

fn finished(mut report: ScanReport, outcome: Outcome) -> Pass {
    report.outcome = outcome;
    Pass::Finished(Box::new(report))
}

/// Lists, in the report, every own tag the limit cost on copies.
fn note_dropped(report: &mut ScanReport, host_actions: &mut Vec<String>, dropped: Vec<(String, String)>) {
    if dropped.is_empty() {
        return;
    }
    host_actions.push(format!(
        "own tags left off copies by S3's tag limit (kept in their metadata `{}` where it fits): {}",
        crate::actions::DROPPED_TAGS_METADATA,
        tags::encode_pairs(&dropped)
    ));
    if let Some(plan) = report.tags.as_mut() {
        for pair in dropped {
            if !plan.dropped.contains(&pair) {
                plan.dropped.push(pair);
            }
        }
    }
}

fn replaced(info: &ObjectInfo, now: &str) -> String {
    format!(
        "{} was overwritten during its scan (scanned ETag {}, now {now})",
        info.url(),
        info.etag.as_deref().unwrap_or("?")
    )
}

fn first_engine(stages: &[StageReport]) -> Option<&str> {
    stages.iter().find_map(|stage| stage.engine_version.as_deref())
}

/// A report for an object the path did not scan.
fn not_scanned(target: &Target, why: &str) -> ScanReport {
    let info = ObjectInfo {
        bucket: target.bucket.clone(),
        key: target.key.clone(),
        version_id: target.version_id.clone(),
        etag: target.etag.clone(),
        size: target.size.unwrap_or(0),
        ..ObjectInfo::default()
    };
    ScanReport::new(
        &info,
        Verdict::Unscannable {
            reason: UnscannableReason::NotScanned,
            detail: why.to_owned(),
        },
    )
}
