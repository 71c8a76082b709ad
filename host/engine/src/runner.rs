//! Runs a pipeline's stages over one object: each stage in a fresh
//! sandbox, inspectors folded into a verdict by `bucketscan_core::pipeline`,
//! then the actions that apply to that verdict. A failing stage never stops
//! the engine: it becomes an `error` verdict (for an inspector) or a failed
//! action, named with the plugin, its version and the cause.
//!
//! When actions may run at all, and what happens around them (result tags,
//! notification, deferred deletes), is the scan path's (`bucketscan-scan`).

use crate::capabilities::Services;
use crate::contract::Called;
use crate::engine::Engine;
use crate::pipelines::PipelineStage;
use crate::sandbox::{ScanObject, StageEnv, StageFailure, StageState, StageTiming};
use bucketscan_core::formats::{Format, IncompleteKind};
use bucketscan_core::pipeline::{Flow, StageKind, VerdictFold, action_applies};
use bucketscan_core::report::{StageOutcome, StageReport};
use bucketscan_core::storage::StageStorage;
use bucketscan_core::text::cap;
use bucketscan_core::{Decision, UnscannableReason, Verdict};
use std::sync::Arc;
use std::time::{Duration, Instant};
use wasmtime::Store;

/// Longest failure message kept from a stage (plugin errors and traps are
/// the plugin's text).
const MAX_FAILURE: usize = 2048;

/// The outcome of a pipeline's inspectors.
#[derive(Debug)]
pub struct Inspected {
    pub verdict: Verdict,
    /// Verdicts of inspectors that ran after `verdict` was reached (only
    /// with [`InspectPolicy::keep_going`]).
    pub later: Vec<Verdict>,
    pub stages: Vec<StageReport>,
}

/// How the host holds the inspectors' answers to what it knows itself.
#[derive(Debug, Clone, Default)]
pub struct InspectPolicy {
    /// Formats the pipeline lets an engine call clean without opening them
    /// (`[buckets.NAME] let-through`).
    pub let_through: Vec<Format>,
    /// Run every inspector, also after one reached a verdict: for bytes
    /// whose finding the allow-list may lift, so that the policy stages
    /// after the finding still have their say.
    pub keep_going: bool,
}

/// Runs the inspectors of `stages` and folds their decisions into a verdict.
pub async fn inspect(engine: &Engine, services: &Services, stages: &[PipelineStage], object: &ScanObject) -> Inspected {
    inspect_with(engine, services, stages, object, &InspectPolicy::default()).await
}

/// [`inspect`] under `policy`.
pub async fn inspect_with(
    engine: &Engine,
    services: &Services,
    stages: &[PipelineStage],
    object: &ScanObject,
    policy: &InspectPolicy,
) -> Inspected {
    let mut reports = Vec::with_capacity(stages.len());
    let mut fold = VerdictFold::new();
    let mut flow = Flow::Next;
    // Inspectors never touch storage: their backend refuses everything.
    let storage: Arc<dyn StageStorage> = Arc::new(bucketscan_core::storage::NoStorage);
    for stage in stages.iter().filter(|s| s.plugin.kind == StageKind::Inspector) {
        if flow == Flow::Stop && !policy.keep_going {
            reports.push(skipped(stage, StageOutcome::Skipped));
            continue;
        }
        let env = stage_env(stage, fold.so_far().cloned(), &storage, &reports);
        let (decision, run) = run_stage(engine, services, stage, object, env, async |store| {
            stage.plugin.exports.inspect(store, object).await
        })
        .await;
        let (decision, report) = match decision {
            Ok(decision) => {
                let decision = match run.clamd_answered {
                    true => hold_to_what_clamd_opens(services, object, policy, decision).await,
                    false => decision,
                };
                let outcome = match &decision {
                    Decision::Continue => StageOutcome::Continue,
                    Decision::Verdict(v) => StageOutcome::Verdict(v.result_name()),
                };
                (decision, run.report(outcome, None))
            }
            Err(failure) => {
                let message = failure_message(stage, &failure);
                tracing::warn!(key = %bucketscan_core::object::printable(&object.info.key), cause = failure.cause().as_str(), "{message}");
                let report = run.report(StageOutcome::Failed, Some((message.clone(), failure)));
                (Decision::Verdict(Verdict::error(message)), report)
            }
        };
        reports.push(report);
        flow = fold.record(decision);
    }
    let (verdict, later) = fold.finish();
    Inspected {
        verdict,
        later,
        stages: reports,
    }
}

/// A clean answer from a stage that asked clamd holds only for what clamd
/// opens: bytes holding any other container or compression format (that
/// the pipeline does not let through) were not looked into, and bytes the
/// host could not survey to the end are unproven. (Also when clamd found
/// something the stage's policy ignores, a PUA say: the rest was unseen
/// all the same.)
async fn hold_to_what_clamd_opens(
    services: &Services,
    object: &ScanObject,
    policy: &InspectPolicy,
    decision: Decision,
) -> Decision {
    if decision != Decision::Verdict(Verdict::Clean) {
        return decision;
    }
    let survey = &object.survey;
    if survey.formats.is_empty() && survey.incomplete.is_none() {
        return decision;
    }
    let opens = services.clamd.opens().await;
    let unopened: Vec<String> = match &opens {
        Ok(opens) => survey
            .unopened(opens, &policy.let_through)
            .iter()
            .map(|found| format!("{} ({})", found.format, found.path))
            .collect(),
        Err(_) => survey
            .formats
            .iter()
            .filter(|found| !policy.let_through.contains(&found.format))
            .map(|found| format!("{} ({})", found.format, found.path))
            .collect(),
    };
    if !unopened.is_empty() {
        let why = match opens {
            Ok(_) => "clamd answered OK but does not open".to_owned(),
            Err(why) => format!("what clamd opens is unknown ({why}); it answered OK for"),
        };
        return Decision::Verdict(Verdict::Unscannable {
            reason: UnscannableReason::UnsupportedContainer,
            detail: cap(&format!("{why} {}", unopened.join(", ")), MAX_FAILURE),
        });
    }
    match survey.unseen(&policy.let_through) {
        Some(incomplete) => Decision::Verdict(Verdict::Unscannable {
            reason: match incomplete.kind {
                IncompleteKind::Limit | IncompleteKind::NoRoom => UnscannableReason::LimitsExceeded,
                IncompleteKind::Malformed => UnscannableReason::Malformed,
                IncompleteKind::Unwalkable(_) => UnscannableReason::UnsupportedContainer,
            },
            detail: cap(
                &format!(
                    "the host could not see all that the object holds: {}",
                    incomplete.detail
                ),
                MAX_FAILURE,
            ),
        }),
        None => decision,
    }
}

/// Runs the actions of `stages` whose `on` matches `verdict`, each with
/// `storage` performing its storage actions. `before` are the reports of
/// the stages that ran already (a stage's `earlier-stages`).
pub async fn act(
    engine: &Engine,
    services: &Services,
    stages: &[PipelineStage],
    object: &ScanObject,
    verdict: &Verdict,
    storage: &Arc<dyn StageStorage>,
    before: &[StageReport],
) -> Vec<StageReport> {
    let mut reports = before.to_vec();
    for stage in actions(stages) {
        if !action_applies(&stage.on, verdict) {
            reports.push(skipped(stage, StageOutcome::NotApplicable));
            continue;
        }
        let env = stage_env(stage, Some(verdict.clone()), storage, &reports);
        let (lines, run) = run_stage(engine, services, stage, object, env, async |store| {
            stage.plugin.exports.act(store, object, verdict).await
        })
        .await;
        // Success past a failed storage action is not success: the plugin
        // would be reporting containment that did not happen.
        let lines = match (lines, &run.unresolved) {
            (Ok(_), Some(failed)) => Err(StageFailure::UnhandledFailure(failed.clone())),
            (lines, _) => lines,
        };
        let report = match lines {
            Ok(mut lines) => {
                let mut report = run.report(StageOutcome::Done, None);
                report.actions.append(&mut lines);
                report
            }
            Err(failure) => {
                let message = failure_message(stage, &failure);
                tracing::warn!(key = %bucketscan_core::object::printable(&object.info.key), cause = failure.cause().as_str(), "{message}");
                run.report(StageOutcome::Failed, Some((message, failure)))
            }
        };
        reports.push(report);
    }
    reports.split_off(before.len())
}

/// Reports for the actions of `stages` that cannot run (an `error`
/// verdict, a held object): each `not applicable`.
pub fn actions_not_run(stages: &[PipelineStage]) -> Vec<StageReport> {
    actions(stages)
        .map(|stage| skipped(stage, StageOutcome::NotApplicable))
        .collect()
}

fn actions(stages: &[PipelineStage]) -> impl Iterator<Item = &PipelineStage> {
    stages.iter().filter(|s| s.plugin.kind == StageKind::Action)
}

fn failure_message(stage: &PipelineStage, failure: &StageFailure) -> String {
    cap(
        &format!("plugin {} failed: {failure}", stage.plugin.label()),
        MAX_FAILURE,
    )
}

fn stage_env(
    stage: &PipelineStage,
    verdict: Option<Verdict>,
    storage: &Arc<dyn StageStorage>,
    before: &[StageReport],
) -> StageEnv {
    StageEnv {
        label: stage.plugin.label(),
        grants: stage.grants.clone(),
        settings: stage.settings.clone(),
        verdict,
        signing_secret: stage.signing_secret.clone(),
        storage: storage.clone(),
        timings: before
            .iter()
            .map(|report| StageTiming {
                plugin: report.plugin.clone(),
                outcome: report.outcome,
                duration: Duration::from_secs_f64(report.duration_ms / 1000.0),
            })
            .collect(),
    }
}

/// What one stage run left behind besides its result.
struct StageRun<'a> {
    stage: &'a PipelineStage,
    actions: Vec<String>,
    /// A storage failure no later action made good.
    unresolved: Option<String>,
    engine_version: Option<String>,
    rule_sets: Vec<String>,
    /// The stage asked clamd, and clamd answered.
    clamd_answered: bool,
    duration: Duration,
}

impl StageRun<'_> {
    fn report(&self, outcome: StageOutcome, failure: Option<(String, StageFailure)>) -> StageReport {
        let (error, cause) = match failure {
            Some((message, failure)) => (Some(message), Some(failure.cause())),
            None => (None, None),
        };
        StageReport {
            cause,
            plugin: self.stage.plugin.name.clone(),
            plugin_version: self.stage.plugin.identity.version.clone(),
            kind: self.stage.plugin.kind,
            outcome,
            actions: self.actions.clone(),
            error,
            engine_version: self.engine_version.clone(),
            rule_sets: self.rule_sets.clone(),
            duration_ms: millis(self.duration),
        }
    }
}

fn skipped(stage: &PipelineStage, outcome: StageOutcome) -> StageReport {
    StageReport {
        plugin: stage.plugin.name.clone(),
        plugin_version: stage.plugin.identity.version.clone(),
        kind: stage.plugin.kind,
        outcome,
        actions: Vec::new(),
        error: None,
        cause: None,
        engine_version: None,
        rule_sets: Vec::new(),
        duration_ms: 0.0,
    }
}

/// Runs one stage in a fresh store under the wall-clock timeout, and turns
/// whatever went wrong into a [`StageFailure`].
async fn run_stage<'a, R>(
    engine: &Engine,
    services: &Services,
    stage: &'a PipelineStage,
    object: &ScanObject,
    env: StageEnv,
    call: impl AsyncFnOnce(&mut Store<StageState>) -> wasmtime::Result<Called<R>>,
) -> (Result<R, StageFailure>, StageRun<'a>) {
    let started = Instant::now();
    let mut store = engine.new_store(services, env, object.clone());
    let timeout = Duration::from_millis(engine.limits().stage_timeout_ms);
    // On timeout the call is dropped mid-flight; the store is never used
    // again, but what the host recorded in it (actions done, the clamd
    // engine) still belongs in the report.
    let result = match tokio::time::timeout(timeout, call(&mut store)).await {
        Err(_) => Err(StageFailure::Timeout(timeout)),
        Ok(Err(err)) => Err(classify(err, store.data_mut())),
        Ok(Ok(called)) => called.map_err(|failure| match failure {
            StageFailure::Plugin(message) => StageFailure::Plugin(cap(&message, MAX_FAILURE)),
            other => other,
        }),
    };
    let state = store.data_mut();
    let run = StageRun {
        stage,
        actions: std::mem::take(&mut state.storage.actions),
        unresolved: state.storage.unresolved.take(),
        engine_version: state.clamav.engine_version.take(),
        rule_sets: std::mem::take(&mut state.yara.ran),
        clamd_answered: state.clamav.answered(),
        duration: started.elapsed(),
    };
    (result, run)
}

/// The best explanation of a failed call: what the host saw first (a limit
/// or a grant), else the trap itself.
fn classify(err: wasmtime::Error, state: &mut StageState) -> StageFailure {
    if let Some(failure) = state.shared.failure.take() {
        return failure;
    }
    if let Some(refused) = state.limiter.refused.take() {
        return StageFailure::Memory(refused);
    }
    // Trap texts carry the plugin's own symbol names: capped like any
    // other text from it.
    match err.downcast_ref::<wasmtime::Trap>() {
        Some(trap) => StageFailure::Trap(cap(&trap.to_string(), MAX_FAILURE)),
        // Not a trap: instantiation refused (e.g. an instance limit) or a
        // host error; its own message says which.
        None => StageFailure::Trap(cap(&format!("{err:#}"), MAX_FAILURE)),
    }
}

fn millis(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}
