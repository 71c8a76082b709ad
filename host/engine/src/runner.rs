//! Runs a pipeline's stages over one object: each stage in a fresh
//! sandbox, inspectors folded into a verdict by `bucketscan_core::pipeline`,
//! then the actions that apply to that verdict. A failing stage never stops
//! the host: it becomes an `error` verdict (for an inspector) or a failed
//! action, named with the plugin, its version and the cause.
//!
//! When actions may run at all, and what happens around them (result tags,
//! notification, deferred deletes), is the scan path's (`bucketscan-scan`).

use crate::capabilities::Services;
use crate::convert;
use crate::engine::Engine;
use crate::pipelines::PipelineStage;
use crate::sandbox::{ScanObject, StageEnv, StageFailure, StageState, StageTiming};
use crate::text::cap;
use bucketscan_core::pipeline::{Flow, Inspection, StageKind, action_applies};
use bucketscan_core::report::{StageOutcome, StageReport};
use bucketscan_core::storage::StorageBackend;
use bucketscan_core::{Decision, Verdict};
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
    pub stages: Vec<StageReport>,
}

/// Runs the inspectors of `stages` and folds their decisions into a verdict.
pub async fn inspect(
    host: &Engine,
    services: &Arc<Services>,
    stages: &[PipelineStage],
    object: &ScanObject,
) -> Inspected {
    let mut reports = Vec::with_capacity(stages.len());
    let mut inspection = Inspection::new();
    let mut flow = Flow::Next;
    // Inspectors never touch storage: their backend refuses everything.
    let storage: Arc<dyn StorageBackend> = Arc::new(bucketscan_core::storage::NoStorage);
    for stage in stages.iter().filter(|s| s.plugin.kind == StageKind::Inspector) {
        if flow == Flow::Stop {
            reports.push(skipped(stage, StageOutcome::Skipped));
            continue;
        }
        let so_far = inspection.so_far().map(convert::verdict_to_wit);
        let env = stage_env(stage, &storage, &reports);
        let (result, run) = run_stage(
            host,
            services,
            stage,
            object,
            env,
            |plugin, mut store, handle| async move {
                let pre = plugin.inspector_pre().expect("the filter above keeps inspectors only");
                let result = async {
                    let instance = pre.instantiate_async(&mut store).await?;
                    instance
                        .bucketscan_plugin_inspector()
                        .call_inspect(&mut store, handle, &legacy_settings(stage), so_far.as_ref())
                        .await
                }
                .await;
                (store, result)
            },
        )
        .await;
        let decision = result
            .and_then(|r| r.map_err(|message| StageFailure::Plugin(cap(&message, MAX_FAILURE))))
            .and_then(|d| convert::decision_from_wit(d).map_err(StageFailure::Malformed));
        let (decision, report) = match decision {
            Ok(decision) => {
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
        flow = inspection.record(decision);
    }
    Inspected {
        verdict: inspection.finish(),
        stages: reports,
    }
}

/// Runs the actions of `stages` whose `on` matches `verdict`, each with
/// `storage` performing its storage actions. `before` are the reports of
/// the stages that ran already (for the `context` import).
pub async fn act(
    host: &Engine,
    services: &Arc<Services>,
    stages: &[PipelineStage],
    object: &ScanObject,
    verdict: &Verdict,
    storage: &Arc<dyn StorageBackend>,
    before: &[StageReport],
) -> Vec<StageReport> {
    let mut reports = before.to_vec();
    for stage in actions(stages) {
        if !action_applies(&stage.on, verdict) {
            reports.push(skipped(stage, StageOutcome::NotApplicable));
            continue;
        }
        let wit_verdict = convert::verdict_to_wit(verdict);
        let env = stage_env(stage, storage, &reports);
        let (result, run) = run_stage(
            host,
            services,
            stage,
            object,
            env,
            |plugin, mut store, handle| async move {
                let pre = plugin.action_pre().expect("the filter above keeps actions only");
                let result = async {
                    let instance = pre.instantiate_async(&mut store).await?;
                    instance
                        .bucketscan_plugin_action()
                        .call_act(&mut store, handle, &legacy_settings(stage), &wit_verdict)
                        .await
                }
                .await;
                (store, result)
            },
        )
        .await;
        let lines = result
            .and_then(|r| r.map_err(|message| StageFailure::Plugin(cap(&message, MAX_FAILURE))))
            .and_then(|lines| convert::action_lines_from_wit(lines).map_err(StageFailure::Malformed));
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

/// Settings as contract 0.1 hands them over: strings.
fn legacy_settings(stage: &PipelineStage) -> Vec<(String, String)> {
    stage
        .settings
        .iter()
        .map(|(k, v)| (k.clone(), v.to_legacy_string()))
        .collect()
}

fn failure_message(stage: &PipelineStage, failure: &StageFailure) -> String {
    cap(
        &format!("plugin {} failed: {failure}", stage.plugin.label()),
        MAX_FAILURE,
    )
}

fn stage_env(stage: &PipelineStage, storage: &Arc<dyn StorageBackend>, before: &[StageReport]) -> StageEnv {
    StageEnv {
        label: stage.plugin.label(),
        grants: stage.grants.clone(),
        signing_secret: stage.signing_secret.clone(),
        storage: storage.clone(),
        // Per object and stage: only for plugins that can ask for it.
        timings: if stage.plugin.uses_context {
            before
                .iter()
                .map(|report| StageTiming {
                    plugin: report.plugin.clone(),
                    outcome: report.outcome,
                    duration: Duration::from_secs_f64(report.duration_ms / 1000.0),
                })
                .collect()
        } else {
            Vec::new()
        },
    }
}

/// What one stage run left behind besides its result.
struct StageRun<'a> {
    stage: &'a PipelineStage,
    actions: Vec<String>,
    engine_version: Option<String>,
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
        duration_ms: 0.0,
    }
}

/// Runs one stage in a fresh store under the wall-clock timeout, and turns
/// whatever went wrong into a [`StageFailure`].
async fn run_stage<'a, R, F, Fut>(
    host: &Engine,
    services: &Arc<Services>,
    stage: &'a PipelineStage,
    object: &ScanObject,
    env: StageEnv,
    call: F,
) -> (Result<R, StageFailure>, StageRun<'a>)
where
    F: FnOnce(&'a crate::Plugin, Store<StageState>, wasmtime::component::Resource<ScanObject>) -> Fut,
    Fut: Future<Output = (Store<StageState>, wasmtime::Result<R>)>,
{
    let started = Instant::now();
    let mut store = host.new_store(services.clone(), env, object.clone());
    let handle = match store.data_mut().table.push(object.clone()) {
        Ok(handle) => handle,
        Err(err) => {
            let run = StageRun {
                stage,
                actions: Vec::new(),
                engine_version: None,
                duration: started.elapsed(),
            };
            return (Err(StageFailure::Instantiate(err.to_string())), run);
        }
    };
    let timeout = Duration::from_millis(host.limits().stage_timeout_ms);
    // The store moves into the call and comes back with its result, so
    // what the host recorded (failure cause, actions) can be read after.
    // On timeout the call is dropped mid-flight and its store with it.
    match tokio::time::timeout(timeout, call(&stage.plugin, store, handle)).await {
        Err(_) => {
            let run = StageRun {
                stage,
                actions: Vec::new(),
                engine_version: None,
                duration: started.elapsed(),
            };
            (Err(StageFailure::Timeout(timeout)), run)
        }
        Ok((mut store, result)) => {
            let state = store.data_mut();
            let result = result.map_err(|err| classify(err, state));
            let run = StageRun {
                stage,
                actions: std::mem::take(&mut state.actions),
                engine_version: state.engine_version.take(),
                duration: started.elapsed(),
            };
            (result, run)
        }
    }
}

/// The best explanation of a failed call: what the host saw first (a limit
/// or a grant), else the trap itself.
fn classify(err: wasmtime::Error, state: &mut StageState) -> StageFailure {
    if let Some(failure) = state.failure.take() {
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
