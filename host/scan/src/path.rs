//! The phases of the scan path, in the order `bucketscan_core::phases`
//! gives them. Each phase either moves on or ends the pass with an
//! [`Outcome`]; nothing destructive happens before the result is published.

use crate::actions::{ObjectActions, Recorded};
use crate::store::{FetchError, Opened, Target};
use crate::{Routing, Scanner, now_rfc3339};
use bucketscan_core::object::{ObjectBody, ObjectInfo, ScanObject};
use bucketscan_core::phases::{self, Admission};
use bucketscan_core::report::{Outcome, ScanReport};
use bucketscan_core::seal::{SealOrigin, SealSubject};
use bucketscan_core::storage::{StorageBackend, StorageError};
use bucketscan_core::tags::{self, ResultValues, TagTarget};
use bucketscan_core::{UnscannableReason, Verdict};
use bucketscan_engine::runner;
use std::sync::Arc;
use std::time::Instant;

/// How often one event may restart because the key was overwritten while
/// it was scanned, before it is left for a retry.
const MAX_RESTARTS: u32 = 2;

enum Pass {
    Finished(Box<ScanReport>),
    /// The key was overwritten during the pass: start again on what it
    /// holds now.
    Superseded(String),
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
                Pass::Superseded(why) => {
                    tracing::info!(bucket = %target.bucket, key = %target.key, "{why}; scanning what the key holds now");
                    notes.push(why);
                    target = Target {
                        version_id: None,
                        etag: None,
                        size: None,
                        ..target
                    };
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

    async fn pass(&self, pipelines: &dyn Routing, target: &Target) -> Pass {
        let finished = |mut report: ScanReport, outcome: Outcome| {
            report.outcome = outcome;
            Pass::Finished(Box::new(report))
        };
        let skipped = |why: String| finished(not_scanned(target, &why), Outcome::Skipped(why));

        // Route.
        let Some((scope, stages)) = pipelines.route(&target.bucket, &target.key) else {
            return skipped(format!("{}: no pipeline", target.url()));
        };
        // Admit and open: over the limit, nothing is downloaded.
        let limit = pipelines.max_object_bytes(&target.bucket);
        let opened = match self.store.open(target, limit).await {
            Ok(opened) => opened,
            Err(err @ (FetchError::Gone(_) | FetchError::Replaced(_))) => return skipped(err.to_string()),
            Err(err) => {
                let report = not_scanned(target, &err.to_string());
                return finished(report, Outcome::Retry(err.to_string()));
            }
        };
        let (mut info, pending) = match opened {
            Opened::Ready { info, body } => (info, Some(body)),
            Opened::TooLarge(info) => (info, None),
        };
        let etag = info.etag.clone().unwrap_or_default();
        let subject = SealSubject {
            bucket: &info.bucket,
            key: &info.key,
            etag: &etag,
        };
        let mut host_actions = Vec::new();

        // An agent's own write (a promotion or quarantine copy, sealed for
        // exactly these bytes) needs no scan: skipping it is what keeps a
        // pipeline that writes into a watched bucket from looping.
        let trusted = self.tag_keys.verify(&self.sealer, subject, &info.tags);
        if trusted == Some(SealOrigin::Written) {
            return skipped(format!("{}: written by a bucketscan agent", info.url()));
        }
        // Result tags the object arrived with are not ours: gone before
        // the scan, so nothing trusts them while it runs.
        let foreign = self.tag_keys.foreign(&info.tags);
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
                Ok(Some(now)) => return Pass::Superseded(replaced(&info, &now)),
                Err(err) => return self.retry(&info, host_actions, format!("removing untrusted result tags: {err}")),
            }
        }

        // Fetch and inspect.
        let admission = phases::admit(info.size, limit);
        let (verdict, mut stage_reports, object) = match (pending, admission) {
            (Some(body), Admission::Fetch) => {
                let body = match body.read().await {
                    Ok(body) => body,
                    Err(err @ (FetchError::Gone(_) | FetchError::Replaced(_))) => return skipped(err.to_string()),
                    Err(err) => return self.retry(&info, host_actions, err.to_string()),
                };
                let object = ScanObject {
                    info: Arc::new(info.clone()),
                    body,
                };
                let inspected = runner::inspect(&self.host, &self.services, &stages, &object).await;
                (inspected.verdict, inspected.stages, object)
            }
            (_, admission) => {
                let verdict = match admission {
                    Admission::TooLarge(verdict) => verdict,
                    Admission::Fetch => Verdict::Unscannable {
                        reason: UnscannableReason::TooLarge,
                        detail: format!("over the {limit}-byte limit; not downloaded"),
                    },
                };
                let object = ScanObject {
                    info: Arc::new(info.clone()),
                    body: ObjectBody::NotFetched,
                };
                (verdict, Vec::new(), object)
            }
        };
        let mut report = ScanReport::new(&info, verdict.clone());

        // Record: the result tags, sealed; containment first.
        let values = ResultValues::new(&verdict, &now_rfc3339(), first_engine(&stage_reports));
        let target_tags = TagTarget {
            subject,
            origin: SealOrigin::Scanned,
            contain: verdict.contains(),
        };
        let plan = tags::plan(&self.tag_keys, &self.sealer, &info.tags, &values, target_tags);
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
                    self.undo_misplaced(&info, &values, &now).await;
                    return Pass::Superseded(replaced(&info, &now));
                }
                Err(StorageError::Gone(why)) => return skipped(why),
                Err(err) => {
                    report.stages = stage_reports;
                    return self.retry_report(report, host_actions, format!("writing the result tags: {err}"));
                }
            }
        }
        report.tags = Some(plan.clone());

        // Act: not for an error, not for a held object.
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
        if phases::runs_actions(&verdict, &plan) {
            let storage: Arc<dyn StorageBackend> = actions.clone();
            let mut acted = runner::act(
                &self.host,
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
        let dropped = actions.dropped();
        if !dropped.is_empty() {
            host_actions.push(format!(
                "own tags left off copies by S3's tag limit (kept in their metadata `{}` where it fits): {}",
                crate::actions::DROPPED_TAGS_METADATA,
                tags::encode_pairs(&dropped)
            ));
            // The report (and the notification) lists every own tag the
            // limit cost anywhere.
            if let Some(plan) = report.tags.as_mut() {
                for pair in dropped {
                    if !plan.dropped.contains(&pair) {
                        plan.dropped.push(pair);
                    }
                }
            }
        }
        if !phases::settles(&verdict) {
            let why = format!("{}: {verdict}; no action ran, the event comes back", info.url());
            return self.retry_report(report, host_actions, why);
        }
        if !report.actions_ok() {
            let errors: Vec<&str> = report.stages.iter().filter_map(|s| s.error.as_deref()).collect();
            let why = format!("{}: actions failed: {}", info.url(), errors.join("; "));
            return self.retry_report(report, host_actions, why);
        }

        // Notify, before anything is deleted.
        report.host_actions = host_actions.clone();
        if phases::publishes(&verdict)
            && let Some(publisher) = &self.publisher
        {
            match publisher.publish(&report).await {
                Ok(line) => host_actions.push(line),
                Err(err) => return self.retry_report(report, host_actions, err),
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

    fn retry(&self, info: &ObjectInfo, host_actions: Vec<String>, why: String) -> Pass {
        let mut report = ScanReport::new(info, Verdict::error(why.clone()));
        report.host_actions = host_actions;
        report.outcome = Outcome::Retry(why);
        Pass::Finished(Box::new(report))
    }

    fn retry_report(&self, mut report: ScanReport, host_actions: Vec<String>, why: String) -> Pass {
        report.host_actions = host_actions;
        report.outcome = Outcome::Retry(why);
        Pass::Finished(Box::new(report))
    }

    /// After result tags went to a key that meanwhile holds other bytes:
    /// if they landed on the newer object (the seal names the scanned
    /// ETag, not the one it has), take them off again — a result must
    /// never describe bytes it was not about.
    async fn undo_misplaced(&self, scanned: &ObjectInfo, values: &ResultValues, _now: &str) {
        let Ok(Some(current)) = self.store.current(&scanned.bucket, &scanned.key).await else {
            return;
        };
        let old = SealSubject {
            bucket: &scanned.bucket,
            key: &scanned.key,
            etag: scanned.etag.as_deref().unwrap_or_default(),
        };
        let ours_landed = self.tag_keys.verify(&self.sealer, old, &current.tags).is_some()
            && self.tag_keys.result_of(&current.tags) == Some(values.result.as_str());
        if !ours_landed {
            return;
        }
        let newer = ObjectInfo {
            bucket: scanned.bucket.clone(),
            key: scanned.key.clone(),
            version_id: current.version_id.clone(),
            etag: Some(current.etag.clone()),
            ..ObjectInfo::default()
        };
        let foreign = self.tag_keys.foreign(&current.tags);
        match self.store.put_tags(&newer, &foreign).await {
            Ok(_) => tracing::warn!(
                "{}: result tags of the scanned bytes landed on a newer upload (ETag {}); removed them",
                scanned.url(),
                current.etag
            ),
            Err(err) => tracing::error!(
                "{}: result tags of the scanned bytes landed on a newer upload and could not be removed: {err}",
                scanned.url()
            ),
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

fn first_engine(stages: &[bucketscan_core::report::StageReport]) -> Option<&str> {
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
