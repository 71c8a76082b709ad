//! The scan path: [`Scanner`] and its phases, in the order
//! `bucketscan_core::phases` gives them — route, open, fetch, trust,
//! inspect, allow, record, act, notify, release. Each phase is one method
//! that returns what the next needs, or ends the pass ([`Step`]'s `Err`)
//! with why; nothing destructive happens before the result is published.

use crate::actions::{ObjectActions, Recorded};
use crate::content::{self, Prepared};
use crate::hashes::HashSource;
use crate::members::Container;
use crate::spool::SpoolConfig;
use crate::stages::Stages;
use crate::store::{FetchError, Opened, Store, Target};
use crate::take_back::take_back;
use crate::{Publisher, RoutedAs, Routing, ScanSlot, now_rfc3339};
use arc_swap::ArcSwap;
use bucketscan_core::allow::{AllowList, AllowMatch};
use bucketscan_core::object::{ObjectBody, ObjectInfo, ScanObject, printable};
use bucketscan_core::phases::{self, Admission};
use bucketscan_core::report::{Coverage, Outcome, ScanReport, StageReport};
use bucketscan_core::seal::{SealOrigin, SealSubject, Sealer};
use bucketscan_core::storage::{StageStorage, StorageError};
use bucketscan_core::tags::{self, ResultValues, TagKeys, TagPlan, TagTarget};
use bucketscan_core::verdict::ResultName;
use bucketscan_core::{UnscannableReason, Verdict};
use bucketscan_engine::PipelineStage;
use bucketscan_engine::runner::{InspectPolicy, Inspected};
use bucketscan_unpack::members::{WALK_HEAD_BYTES, WalkLimits, declared_container, declares_a_container};
use std::sync::Arc;
use std::time::Instant;

/// Everything the scan path needs; shared by all objects in flight.
pub struct Scanner {
    /// Runs the pipeline's stages (the wasm engine's runner).
    pub stages: Arc<dyn Stages>,
    pub store: Arc<dyn Store>,
    pub publisher: Option<Arc<dyn Publisher>>,
    pub tag_keys: TagKeys,
    pub sealer: Sealer,
    /// Digests of bytes released as false positives; swapped whole when the
    /// list is reloaded.
    pub allow_list: Arc<ArcSwap<AllowList>>,
    /// Where decoded content is spooled.
    pub spool: SpoolConfig,
    /// The whole-file hash signatures clamd runs, for objects too large
    /// for it that are not walked; `None`: no database is known.
    pub hashes: Option<Arc<dyn HashSource>>,
}

/// How often one event may restart because the key was overwritten while
/// it was scanned, before it is left for a retry.
const MAX_RESTARTS: u32 = 2;

/// How one pass over the object ended.
enum Pass {
    Finished(Box<ScanReport>),
    /// The key holds other bytes than the pass started with: start again on
    /// what it holds now. Carries what this pass learnt, if anything.
    Superseded(String, Option<Box<ScanReport>>),
}

/// A phase's result: what the next phase needs, or the end of the pass.
type Step<T> = Result<T, Pass>;

/// One object on its way through the phases.
struct Scan<'t> {
    target: &'t Target,
    /// Where the pipeline applies, for logs.
    scope: String,
    stages: Arc<[PipelineStage]>,
    /// The largest object the pipeline scans (and decodes to).
    limit: u64,
    info: ObjectInfo,
    host_actions: Vec<String>,
    /// When this pass began: the published report says how long it took.
    started: Instant,
}

impl Scan<'_> {
    /// `report` with the actions so far and the time taken, as published.
    fn to_publish(&self, report: &mut ScanReport) {
        report.host_actions = self.host_actions.clone();
        report.retro = self.target.retro.clone();
        report.sweep = self.target.sweep.clone();
        report.duration_ms = self.started.elapsed().as_secs_f64() * 1000.0;
    }
}

/// What opening found: the bytes to read, or why there are none.
enum Opening {
    Body(Box<dyn crate::store::PendingBody>),
    /// Over the size limit: nothing downloaded.
    TooLarge,
    /// The store will not hand over the bytes: the verdict is this.
    Refused(Verdict),
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
    /// How much of the object the verdict covers; `None`: not read.
    pub(crate) coverage: Option<Coverage>,
}

/// The verdict to record, after the allow-list.
struct Decided {
    verdict: Verdict,
    allowed: Option<AllowMatch>,
    stages: Vec<StageReport>,
    object: ScanObject,
    coverage: Option<Coverage>,
}

/// The result as recorded on the object.
struct Written {
    report: ScanReport,
    values: ResultValues,
    plan: TagPlan,
    object: ScanObject,
    stages: Vec<StageReport>,
}

impl Scanner {
    /// Takes `target` through the scan path with `pipelines`. The report's
    /// outcome says whether its event may be acknowledged.
    pub async fn scan(&self, pipelines: &dyn Routing, target: &Target) -> ScanReport {
        self.scan_in(pipelines, target, &ScanSlot::unbounded()).await
    }

    /// [`Scanner::scan`] in `slot`, given back once the object is
    /// contained (see [`ScanSlot`]).
    pub async fn scan_in(&self, pipelines: &dyn Routing, target: &Target, slot: &ScanSlot) -> ScanReport {
        let mut report = match &target.retro {
            Some(retro) => {
                let origin = RoutedAs {
                    inner: pipelines,
                    bucket: &retro.origin_bucket,
                    key: &retro.origin_key,
                };
                self.scan_routed(&origin, target, slot).await
            }
            None => self.scan_routed(pipelines, target, slot).await,
        };
        report.retro = target.retro.clone();
        report.sweep = target.sweep.clone();
        report
    }

    async fn scan_routed(&self, pipelines: &dyn Routing, target: &Target, slot: &ScanSlot) -> ScanReport {
        let started = Instant::now();
        let mut target = target.clone();
        let mut notes = Vec::new();
        for _ in 0..=MAX_RESTARTS {
            match self.pass(pipelines, &target, slot).await {
                Pass::Finished(report) => {
                    let mut report = *report;
                    notes.append(&mut report.host_actions);
                    report.host_actions = notes;
                    report.duration_ms = started.elapsed().as_secs_f64() * 1000.0;
                    return report;
                }
                Pass::Superseded(why, learnt) => {
                    tracing::info!(bucket = %target.bucket, key = %printable(&target.key), "{why}; scanning what the key holds now");
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

    async fn pass(&self, pipelines: &dyn Routing, target: &Target, slot: &ScanSlot) -> Pass {
        match self.phases(pipelines, target, slot).await {
            Ok(pass) | Err(pass) => pass,
        }
    }

    /// The phases, in order.
    async fn phases(&self, pipelines: &dyn Routing, target: &Target, slot: &ScanSlot) -> Step<Pass> {
        let mut scan = Self::route(pipelines, target)?;
        let opening = self.open(&mut scan).await?;
        let body = self.fetch(&mut scan, opening).await?;
        self.trust(&mut scan).await?;
        let inspection = self.inspect(pipelines, &mut scan, body).await?;
        let decided = self.allow(&mut scan, inspection);
        let written = self.record(&mut scan, decided).await?;
        let (report, actions, plan) = self.act(&mut scan, written).await?;
        // Contained: what is left waits on the publishers and the deletes,
        // not on this agent's CPU. Only an object that gave its slot back
        // may wait for a batch.
        let batched = slot.contained();
        let report = self.notify(&mut scan, report, &plan, batched).await?;
        self.release(scan, report, &actions, plan).await
    }

    /// Route: the bucket's pipeline for the key; none, nothing to do.
    fn route<'t>(pipelines: &dyn Routing, target: &'t Target) -> Step<Scan<'t>> {
        let Some((scope, stages)) = pipelines.route(&target.bucket, &target.key) else {
            return Err(skipped(target, format!("{}: no pipeline", target.url())));
        };
        Ok(Scan {
            target,
            scope,
            stages,
            limit: pipelines.max_object_bytes(&target.bucket),
            info: ObjectInfo::default(),
            host_actions: Vec::new(),
            started: Instant::now(),
        })
    }

    /// Open (and admit): the object's metadata and tags; over the limit,
    /// nothing is downloaded.
    async fn open(&self, scan: &mut Scan<'_>) -> Step<Opening> {
        let target = scan.target;
        let (info, opening) = match self.store.open(target, scan.limit).await {
            Ok(Opened::Ready { info, body }) => (info, Opening::Body(body)),
            Ok(Opened::TooLarge(info)) => (info, Opening::TooLarge),
            Ok(Opened::Unreadable { info, verdict }) => (info, Opening::Refused(verdict)),
            Err(FetchError::Gone(why)) => return Err(skipped(target, why)),
            // The key holds newer bytes than the event named: whatever tags
            // they carry (ours, landed there after a failure, included) are
            // checked by scanning what is there now.
            Err(FetchError::Replaced(why)) => return Err(Pass::Superseded(why, None)),
            Err(err) => {
                let report = not_scanned(target, &err.to_string());
                return Err(finished(report, Outcome::Retry(err.to_string())));
            }
        };
        scan.info = info;
        Ok(opening)
    }

    /// Fetch: the bytes and their SHA-256, the identity seals bind.
    async fn fetch(&self, scan: &mut Scan<'_>, opening: Opening) -> Step<Fetched> {
        let pending = match opening {
            Opening::Body(pending) => pending,
            Opening::TooLarge => return Ok(Fetched::NotRead(None)),
            Opening::Refused(verdict) => return Ok(Fetched::NotRead(Some(verdict))),
        };
        match pending.read().await {
            Ok(body) => {
                scan.info.sha256 = Some(body.sha256);
                Ok(Fetched::Read(body.bytes))
            }
            Err(err) => Err(self.read_failed(scan, err)),
        }
    }

    /// Trust: results an agent sealed for exactly these bytes. An agent's
    /// own write, or a result already current, needs no scan; result tags
    /// no agent sealed for these bytes are removed before the scan, so
    /// nothing trusts them while it runs.
    async fn trust(&self, scan: &mut Scan<'_>) -> Step<()> {
        let info = &scan.info;
        let trusted = self.tag_keys.verify(&self.sealer, info.seal_subject(), &info.tags);
        let written = self.tag_keys.verify(
            &self.sealer,
            SealSubject {
                version_id: None,
                ..info.seal_subject()
            },
            &info.tags,
        );
        if !scan.target.rescan {
            // Skipping an agent's own write (a promotion or quarantine
            // copy) is what keeps a pipeline that writes into a watched
            // bucket from looping.
            if written == Some(SealOrigin::Written) {
                return Err(skipped(
                    scan.target,
                    format!("{}: written by a bucketscan agent", info.url()),
                ));
            }
        }
        // Asked for by sweeps and retro-scans (a retro-scan rescans an
        // agent's copy, yet not twice with one database).
        if let Some(why) = self.already_current(info, trusted, scan.target) {
            return Err(skipped(scan.target, why));
        }
        let foreign = self.tag_keys.foreign(&info.tags);
        if foreign.len() == info.tags.len() || trusted.or(written).is_some() {
            return Ok(());
        }
        match self.store.put_tags(info, &foreign).await {
            Ok(None) => {
                let verb = if self.store.dry_run() {
                    "would remove"
                } else {
                    "removed"
                };
                let line = format!("{verb} result tags on {} that no agent wrote", info.url());
                scan.host_actions.push(line);
                scan.info.tags = foreign;
                Ok(())
            }
            Ok(Some(now)) => Err(Pass::Superseded(replaced(info, &now), None)),
            Err(StorageError::Gone(why)) => Err(skipped(scan.target, why)),
            Err(err) => Err(self.retry(scan, format!("removing untrusted result tags: {err}"))),
        }
    }

    /// Inspect: what a client receives (the encoding undone, the
    /// containers surveyed), through the inspectors; or the verdict that
    /// stands without them (too large, unreadable).
    async fn inspect(&self, pipelines: &dyn Routing, scan: &mut Scan<'_>, fetched: Fetched) -> Step<Inspection> {
        let info = scan.info.clone();
        let not_read =
            |verdict| Inspection::decided(ScanObject::new(Arc::new(info.clone()), ObjectBody::NotFetched), verdict);
        match (fetched, phases::admit(info.size, scan.limit)) {
            (Fetched::NotRead(Some(verdict)), _) => Ok(not_read(verdict)),
            (Fetched::Read(bytes), Admission::Fetch) => {
                let inspected = self
                    .inspect_bytes(pipelines, &scan.stages, &info, bytes, scan.limit)
                    .await;
                inspected.map_err(|err| self.retry(scan, err.to_string()))
            }
            (Fetched::NotRead(None), Admission::TooLarge(verdict)) => self.too_large(pipelines, scan, verdict).await,
            (_, Admission::TooLarge(verdict)) => Ok(not_read(verdict)),
            (Fetched::NotRead(None), Admission::Fetch) => Ok(not_read(Verdict::Unscannable {
                reason: UnscannableReason::TooLarge,
                detail: format!("over the {}-byte limit; not downloaded", scan.limit),
            })),
        }
    }

    /// An object over the size limit: walked member by member when it is
    /// a container the host reads (and its bucket lets it be), else
    /// checked against the whole-file hash signatures; what those do not
    /// settle stays `verdict`.
    async fn too_large(&self, pipelines: &dyn Routing, scan: &mut Scan<'_>, verdict: Verdict) -> Step<Inspection> {
        let info = scan.info.clone();
        let limits = match self.walk_plan(pipelines, scan).await? {
            Ok(limits) => limits,
            Err(why) => {
                let mut inspection =
                    Inspection::decided(ScanObject::new(Arc::new(info), ObjectBody::NotFetched), verdict);
                inspection.notes.push(format!("not walked member by member: {why}"));
                let hashed = self.apply_hashes(pipelines, inspection).await;
                let inspection = hashed.map_err(|err| self.read_failed(scan, err))?;
                scan.info.walked_sha256 = inspection.object.info.walked_sha256.clone();
                return Ok(inspection);
            }
        };
        let walked = self
            .inspect_members(pipelines, &scan.stages, &info, limits, Container::Stored)
            .await;
        match walked {
            Ok(mut inspection) => {
                inspection.coverage = Some(Coverage::Members);
                scan.info.walked_sha256 = inspection.object.info.walked_sha256.clone();
                Ok(inspection)
            }
            Err(err) => Err(self.read_failed(scan, err)),
        }
    }

    /// How the object is walked member by member, or why it is not (its
    /// first bytes read when its name and type declare a container).
    async fn walk_plan(&self, pipelines: &dyn Routing, scan: &mut Scan<'_>) -> Step<Result<WalkLimits, String>> {
        let info = &scan.info;
        let Some(limits) = pipelines.walk_limits(&info.bucket) else {
            return Ok(Err("large-objects.walk is off for this bucket".into()));
        };
        if let Some(coding) = &info.headers.content_encoding {
            // A client receives the decoded stream, which cannot be read
            // by ranges: what it holds stays unproven.
            return Ok(Err(format!("stored with Content-Encoding `{coding}`")));
        }
        if !declares_a_container(&info.key, info.content_type.as_deref()) {
            return Ok(Err("its name and type declare no container the host walks".into()));
        }
        let head = match self.store.read_range(info, 0, WALK_HEAD_BYTES as u64).await {
            Ok(head) => head,
            Err(err) => return Err(self.read_failed(scan, err)),
        };
        Ok(declared_container(&info.key, info.content_type.as_deref(), &head).map(|_| limits))
    }

    /// The end of a pass whose bytes could not be read.
    fn read_failed(&self, scan: &mut Scan<'_>, err: FetchError) -> Pass {
        match err {
            FetchError::Gone(why) => skipped(scan.target, why),
            FetchError::Replaced(why) => Pass::Superseded(why, None),
            other => self.retry(scan, other.to_string()),
        }
    }

    /// The inspectors over what a client receives of `bytes` (and over the
    /// stored bytes too, when they were decoded); `Err` when that could
    /// not be produced now (a retry may).
    pub(crate) async fn inspect_bytes(
        &self,
        pipelines: &dyn Routing,
        stages: &[PipelineStage],
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
        let inspected = self.stages.inspect(stages, &object, &policy).await;
        let mut inspection = Inspection {
            verdict: inspected.verdict,
            later: inspected.later,
            stages: inspected.stages,
            object,
            notes: Vec::new(),
            coverage: Some(Coverage::Whole),
        };
        if let Some(stored) = stored {
            // A client that does not decode gets the stored bytes.
            let raw = self.stages.inspect(stages, &stored, &policy).await;
            inspection.add_stored(raw);
        }
        Ok(inspection)
    }

    /// Allow: bytes an operator released as a false positive pass, and the
    /// report keeps what the pipeline said of them.
    fn allow(&self, scan: &mut Scan<'_>, inspection: Inspection) -> Decided {
        scan.host_actions.extend(inspection.notes);
        let (verdict, allowed) =
            self.allow_list
                .load()
                .apply(scan.info.sha256.as_deref(), inspection.verdict, &inspection.later);
        if let Some(allowed) = &allowed {
            scan.host_actions.push(format!(
                "allow-listed ({}): the pipeline said {}; passed as clean",
                allowed.entry.source, allowed.verdict
            ));
        }
        Decided {
            verdict,
            allowed,
            stages: inspection.stages,
            object: inspection.object,
            coverage: inspection.coverage,
        }
    }

    /// Record: the result tags, sealed; containment first. Tags that
    /// landed on newer bytes are taken back, and the newer bytes scanned.
    async fn record(&self, scan: &mut Scan<'_>, decided: Decided) -> Step<Written> {
        let info = &scan.info;
        let mut report = ScanReport::new(info, decided.verdict.clone());
        report.allowed = decided.allowed.clone();
        report.decoded = decided.object.decoded.clone();
        report.contents = decided.object.survey.formats.clone();
        report.coverage = decided.coverage;
        let values = self.result_values(&decided);
        let plan = tags::plan(
            &self.tag_keys,
            &self.sealer,
            &info.tags,
            &values,
            TagTarget {
                subject: info.seal_subject(),
                origin: SealOrigin::Scanned,
                contain: decided.verdict.contains(),
            },
        );
        if plan.held.is_none() {
            match self.store.put_tags(info, &plan.tags).await {
                Ok(None) => {
                    let verb = if self.store.dry_run() { "would tag" } else { "tagged" };
                    let line = format!("{verb} {} {}={}", info.url(), self.tag_keys.result, values.result);
                    scan.host_actions.push(line);
                }
                Ok(Some(now)) => {
                    report.stages = decided.stages;
                    let why = replaced(info, &now);
                    if let Err(err) = take_back(&*self.store, &self.tag_keys, &self.sealer, info, &values).await {
                        return Err(self.retry_report(scan, report, format!("{why}; {err}")));
                    }
                    return Err(Pass::Superseded(why, Some(Box::new(report))));
                }
                Err(StorageError::Gone(why)) => return Err(skipped(scan.target, why)),
                Err(err) => {
                    report.stages = decided.stages;
                    return Err(self.retry_report(scan, report, format!("writing the result tags: {err}")));
                }
            }
        }
        report.tags = Some(plan.clone());
        Ok(Written {
            report,
            values,
            plan,
            object: decided.object,
            stages: decided.stages,
        })
    }

    /// The result tags' values for a decided verdict.
    fn result_values(&self, decided: &Decided) -> ResultValues {
        let engine = engine_tag(&decided.stages);
        let mut values = ResultValues::new(
            self.tag_keys.profile,
            &decided.verdict,
            &now_rfc3339(),
            engine.as_deref(),
        );
        values.decoded = decided.object.decoded.as_ref().map(|d| d.content_encoding.join("+"));
        // Written only when not whole: a whole scan is what a result means.
        values.coverage = decided
            .coverage
            .filter(|coverage| *coverage != Coverage::Whole)
            .map(|coverage| coverage.as_str().to_owned());
        if let Some(allowed) = &decided.allowed {
            let what = match allowed.verdict.findings().first() {
                Some(finding) => finding.signature.clone(),
                None => allowed.verdict.result_name().as_str().to_owned(),
            };
            values.signature = Some(tags::sanitize(&format!("allow-listed {what}")));
        }
        values
    }

    /// Act: the action stages — not for a verdict that does not settle,
    /// not for a held object, not to promote a version that is not the
    /// current one. Deletes they ask for wait for [`Scanner::release`].
    async fn act(&self, scan: &mut Scan<'_>, written: Written) -> Step<(ScanReport, Arc<ObjectActions>, TagPlan)> {
        let Written {
            mut report,
            values,
            plan,
            object,
            mut stages,
        } = written;
        let verdict = report.verdict.clone();
        let actions = Arc::new(ObjectActions::new(
            self.store.clone(),
            self.tag_keys.clone(),
            self.sealer.clone(),
            Recorded {
                values,
                contain: verdict.contains(),
                tags: plan.tags.clone(),
                arrived: scan.info.tags.clone(),
            },
        ));
        let rollback = scan.target.contain_only && !verdict.contains();
        if rollback {
            let why = match scan.target.retro {
                Some(_) => "a retro-scan where it lives; clean, so no action ran",
                None => "not the current version; clean, so no action ran (promoting it would roll the key back)",
            };
            scan.host_actions.push(format!("{}: {why}", scan.info.url()));
        }
        let mut acted = if phases::runs_actions(&verdict, &plan) && !rollback {
            let storage: Arc<dyn StageStorage> = actions.clone();
            self.stages
                .act(&scan.stages, &object, &verdict, &storage, &stages)
                .await
        } else {
            self.stages.not_run(&scan.stages)
        };
        stages.append(&mut acted);
        report.stages = stages;
        report.copies = actions.copies();
        note_dropped(&mut report, &mut scan.host_actions, actions.dropped());
        if !phases::settles(&verdict) {
            let why = format!("{}: {verdict}; no action ran, the event comes back", scan.info.url());
            return Err(self.retry_report(scan, report, why));
        }
        if !report.actions_ok() {
            return Err(match actions.lasting_refusal() {
                Some(why) => self.held_by_refusal(scan, report, why).await,
                None => self.actions_failed(scan, report).await,
            });
        }
        Ok((report, actions, plan))
    }

    /// Actions failed: the alert goes out anyway (a quarantine that keeps
    /// failing must not keep the finding quiet), published with outcome
    /// `retry` on every attempt; nothing was deleted (deletes wait for a
    /// pass that finishes).
    async fn actions_failed(&self, scan: &mut Scan<'_>, mut report: ScanReport) -> Pass {
        let errors: Vec<&str> = report.stages.iter().filter_map(|s| s.error.as_deref()).collect();
        let why = format!("{}: actions failed: {}", scan.info.url(), errors.join("; "));
        scan.to_publish(&mut report);
        report.outcome = Outcome::Retry(why.clone());
        if let Some(publisher) = self.publisher.as_ref().filter(|_| phases::publishes(&report.verdict)) {
            match publisher.publish(&report).await {
                Ok(line) => scan.host_actions.push(line),
                Err(err) => scan.host_actions.push(format!("not published: {err}")),
            }
        }
        self.retry_report(scan, report, why)
    }

    /// An action refused in a way every retry would repeat: the object
    /// stays where it is, held, with its result published; none of the
    /// actions' deletes run (what they would have moved was not moved).
    async fn held_by_refusal(&self, scan: &mut Scan<'_>, mut report: ScanReport, why: String) -> Pass {
        let why = format!(
            "{}: {why}; held where it is (a retry would be refused again)",
            scan.info.url()
        );
        scan.to_publish(&mut report);
        report.outcome = Outcome::Held(why.clone());
        let Some(publisher) = self.publisher.as_ref().filter(|_| phases::publishes(&report.verdict)) else {
            return finished(report, Outcome::Held(why));
        };
        match publisher.publish(&report).await {
            Ok(line) => {
                report.host_actions.push(line);
                finished(report, Outcome::Held(why))
            }
            Err(err) => self.retry_report(scan, report, err.to_string()),
        }
    }

    /// Notify: the result is published, before anything is deleted
    /// (`batched`: it may wait for a batch, see [`Publisher`]).
    async fn notify(
        &self,
        scan: &mut Scan<'_>,
        mut report: ScanReport,
        plan: &TagPlan,
        batched: bool,
    ) -> Step<ScanReport> {
        scan.to_publish(&mut report);
        report.outcome = settled(plan);
        let Some(publisher) = self.publisher.as_ref().filter(|_| phases::publishes(&report.verdict)) else {
            return Ok(report);
        };
        match publisher.publish_as(&report, batched).await {
            Ok(line) => {
                scan.host_actions.push(line);
                Ok(report)
            }
            Err(err) => Err(self.retry_report(scan, report, err.to_string())),
        }
    }

    /// Release: the deferred deletes, conditional on the scanned version
    /// or ETag; then the pass is done and its event may be acknowledged.
    async fn release(
        &self,
        mut scan: Scan<'_>,
        mut report: ScanReport,
        actions: &ObjectActions,
        plan: TagPlan,
    ) -> Step<Pass> {
        match actions.release().await {
            Ok(mut lines) => scan.host_actions.append(&mut lines),
            Err(err) => {
                let why = format!("{}: deleting after the result was published: {err}", scan.info.url());
                return Err(self.retry_report(&mut scan, report, why));
            }
        }
        report.host_actions = scan.host_actions;
        tracing::debug!(pipeline = %scan.scope, "{}: {}", scan.info.url(), report.verdict);
        Ok(finished(report, settled(&plan)))
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
            .map(|(_, v)| clamd_part(v));
        let settled = !matches!(result, ResultName::Error | ResultName::Unscannable);
        (tagged_engine == Some(engine) && settled).then(|| format!("{}: already {result} with {engine}", info.url()))
    }

    /// Ends the pass for a retry, with an `error` report naming `why`.
    fn retry(&self, scan: &mut Scan<'_>, why: String) -> Pass {
        let report = ScanReport::new(&scan.info, Verdict::error(why.clone()));
        self.retry_report(scan, report, why)
    }

    /// Ends the pass for a retry, keeping what `report` found.
    fn retry_report(&self, scan: &mut Scan<'_>, mut report: ScanReport, why: String) -> Pass {
        report.host_actions = std::mem::take(&mut scan.host_actions);
        finished(report, Outcome::Retry(why))
    }
}

/// The bytes, if they were read.
enum Fetched {
    Read(ObjectBody),
    /// Not read: over the limit (`None`), or refused with this verdict.
    NotRead(Option<Verdict>),
}

impl Inspection {
    /// A verdict reached without running the inspectors.
    pub(crate) fn decided(object: ScanObject, verdict: Verdict) -> Self {
        Self {
            verdict,
            later: Vec::new(),
            stages: Vec::new(),
            object,
            notes: Vec::new(),
            coverage: None,
        }
    }

    /// Folds in the inspection of the stored bytes of a decoded object:
    /// the first verdict other than clean (decoded bytes first) stands,
    /// and the other joins the later ones. A policy's `blocked` about the
    /// stored bytes does not count: names and types describe the content,
    /// and the stored bytes of `page.html` are gzip by design.
    fn add_stored(&mut self, raw: Inspected) {
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

/// How a pass that ran every phase ends: done, or held (clean, no slot for
/// the result tags).
fn settled(plan: &TagPlan) -> Outcome {
    match &plan.held {
        Some(why) => Outcome::Held(why.clone()),
        None => Outcome::Done,
    }
}

fn finished(mut report: ScanReport, outcome: Outcome) -> Pass {
    report.outcome = outcome;
    Pass::Finished(Box::new(report))
}

/// The end of a pass with nothing to do.
fn skipped(target: &Target, why: String) -> Pass {
    finished(not_scanned(target, &why), Outcome::Skipped(why))
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

/// Between clamd's version and the YARA rule sets in the `engine` tag.
const RULES_IN_ENGINE_TAG: &str = " + yara ";

/// The `engine` tag: clamd's version, then the YARA rule sets that ran
/// (`ClamAV 1.4.3/27000/… + yara webshells@3f2a…`; `yara webshells@3f2a…`
/// when a rule decided before clamd ran).
fn engine_tag(stages: &[StageReport]) -> Option<String> {
    let sets = bucketscan_core::report::rule_sets_of(stages);
    let rules = sets.join(" ");
    match (first_engine(stages), sets.is_empty()) {
        (engine, true) => engine.map(str::to_owned),
        (Some(engine), false) => Some(format!("{engine}{RULES_IN_ENGINE_TAG}{rules}")),
        // A rule decided before clamd ran.
        (None, false) => Some(format!("yara {rules}")),
    }
}

/// The clamd part of an `engine` tag.
fn clamd_part(tag: &str) -> &str {
    tag.split(RULES_IN_ENGINE_TAG).next().unwrap_or(tag)
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

#[cfg(test)]
mod tests;
