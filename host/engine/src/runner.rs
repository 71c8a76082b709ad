//! Runs a pipeline over one object: each stage in a fresh sandbox, inspectors
//! folded into a verdict by `bucketscan_core::pipeline`, then the actions
//! that apply to that verdict. A failing stage never stops the host: it
//! becomes an `error` verdict (for an inspector) or a failed action, named
//! with the plugin, its version and the cause.

use crate::capabilities::HostServices;
use crate::convert;
use crate::host::PluginHost;
use crate::pipelines::PipelineStage;
use crate::sandbox::{ScanObject, StageEnv, StageFailure, StageState, StageTiming};
use bucketscan_core::pipeline::{Flow, Inspection, StageKind, action_applies};
use bucketscan_core::report::{ScanReport, StageReport};
use bucketscan_core::{Decision, Verdict};
use std::sync::Arc;
use std::time::{Duration, Instant};
use wasmtime::Store;

/// Runs `stages` over `object` and reports what happened: [`inspect`],
/// then [`act`].
pub async fn run_pipeline(
    host: &PluginHost,
    services: &Arc<HostServices>,
    stages: &[PipelineStage],
    object: ScanObject,
) -> ScanReport {
    let inspected = inspect(host, services, stages, &object).await;
    act(host, services, stages, &object, inspected).await
}

/// The outcome of a pipeline's inspectors, before its actions run.
#[derive(Debug)]
pub struct Inspected {
    pub verdict: Verdict,
    pub stages: Vec<StageReport>,
    started: Instant,
}

impl Inspected {
    /// The scan engine's version, from the first stage that scanned.
    pub fn engine_version(&self) -> Option<String> {
        self.stages.iter().find_map(|stage| stage.engine_version.clone())
    }
}

/// Runs the inspectors of `stages` and folds their decisions into a verdict.
pub async fn inspect(
    host: &PluginHost,
    services: &Arc<HostServices>,
    stages: &[PipelineStage],
    object: &ScanObject,
) -> Inspected {
    let started = Instant::now();
    let mut reports = Vec::with_capacity(stages.len());
    let mut inspection = Inspection::new();
    let mut flow = Flow::Next;
    for stage in stages.iter().filter(|s| s.plugin.kind == StageKind::Inspector) {
        if flow == Flow::Stop {
            reports.push(skipped(stage, "skipped"));
            continue;
        }
        let so_far = inspection.so_far().map(convert::verdict_to_wit);
        let (result, run) = run_stage(
            host,
            services,
            stage,
            object,
            &reports,
            |pre, mut store, handle| async move {
                let pre = pre.inspector_pre().expect("inspector stage");
                let result = async {
                    let instance = pre.instantiate_async(&mut store).await?;
                    instance
                        .bucketscan_plugin_inspector()
                        .call_inspect(&mut store, handle, &stage.settings, so_far.as_ref())
                        .await
                }
                .await;
                (store, result)
            },
        )
        .await;
        let (decision, report) = match result
            .and_then(|r| r.map_err(StageFailure::Plugin))
            .and_then(|d| convert::decision_from_wit(d).map_err(StageFailure::Malformed))
        {
            Ok(decision) => {
                let outcome = match &decision {
                    Decision::Continue => "continue".to_owned(),
                    Decision::Verdict(v) => v.result_name().to_owned(),
                };
                (decision, run.report(outcome, None))
            }
            Err(failure) => {
                let message = format!("plugin {} failed: {failure}", stage.plugin.label());
                tracing::warn!(key = %object.info.key, cause = failure.cause(), "{message}");
                let cause = failure.cause();
                (
                    Decision::Verdict(Verdict::error(message.clone())),
                    run.report("failed".into(), Some((message, cause))),
                )
            }
        };
        reports.push(report);
        flow = inspection.record(decision);
    }
    Inspected {
        verdict: inspection.finish(),
        stages: reports,
        started,
    }
}

/// Runs the actions of `stages` that apply to the inspected verdict.
pub async fn act(
    host: &PluginHost,
    services: &Arc<HostServices>,
    stages: &[PipelineStage],
    object: &ScanObject,
    inspected: Inspected,
) -> ScanReport {
    let Inspected {
        verdict,
        stages: mut reports,
        started,
    } = inspected;
    for stage in stages.iter().filter(|s| s.plugin.kind == StageKind::Action) {
        if !action_applies(&stage.on, &verdict) {
            reports.push(skipped(stage, "not applicable"));
            continue;
        }
        let wit_verdict = convert::verdict_to_wit(&verdict);
        let (result, run) = run_stage(
            host,
            services,
            stage,
            object,
            &reports,
            |pre, mut store, handle| async move {
                let pre = pre.action_pre().expect("action stage");
                let result = async {
                    let instance = pre.instantiate_async(&mut store).await?;
                    instance
                        .bucketscan_plugin_action()
                        .call_act(&mut store, handle, &stage.settings, &wit_verdict)
                        .await
                }
                .await;
                (store, result)
            },
        )
        .await;
        let report = match result
            .and_then(|r| r.map_err(StageFailure::Plugin))
            .and_then(|lines| convert::action_lines_from_wit(lines).map_err(StageFailure::Malformed))
        {
            Ok(mut lines) => {
                let mut all = run.actions.clone();
                all.append(&mut lines);
                let mut report = run.report("done".into(), None);
                report.actions = all;
                report
            }
            Err(failure) => {
                let message = format!("plugin {} failed: {failure}", stage.plugin.label());
                tracing::warn!(key = %object.info.key, cause = failure.cause(), "{message}");
                run.report("failed".into(), Some((message, failure.cause())))
            }
        };
        reports.push(report);
    }

    ScanReport::new(&object.info, verdict, reports, millis(started.elapsed()))
}

/// What one stage run left behind besides its result.
struct StageRun<'a> {
    stage: &'a PipelineStage,
    actions: Vec<String>,
    engine_version: Option<String>,
    duration: Duration,
}

impl StageRun<'_> {
    fn report(&self, outcome: String, failure: Option<(String, &'static str)>) -> StageReport {
        let (error, cause) = failure.unzip();
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

fn skipped(stage: &PipelineStage, outcome: &str) -> StageReport {
    StageReport {
        plugin: stage.plugin.name.clone(),
        plugin_version: stage.plugin.identity.version.clone(),
        kind: stage.plugin.kind,
        outcome: outcome.into(),
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
    host: &PluginHost,
    services: &Arc<HostServices>,
    stage: &'a PipelineStage,
    object: &ScanObject,
    before: &[StageReport],
    call: F,
) -> (Result<R, StageFailure>, StageRun<'a>)
where
    F: FnOnce(&'a crate::Plugin, Store<StageState>, wasmtime::component::Resource<ScanObject>) -> Fut,
    Fut: Future<Output = (Store<StageState>, wasmtime::Result<R>)>,
{
    let started = Instant::now();
    let env = StageEnv {
        label: stage.plugin.label(),
        grants: stage.grants.clone(),
        signing_secret: stage.signing_secret.clone(),
        // Per object and stage: only for plugins that can ask for it.
        timings: if stage.plugin.uses_context {
            before
                .iter()
                .map(|report| StageTiming {
                    plugin: report.plugin.clone(),
                    outcome: report.outcome.clone(),
                    duration: Duration::from_secs_f64(report.duration_ms / 1000.0),
                })
                .collect()
        } else {
            Vec::new()
        },
    };
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
    match err.downcast_ref::<wasmtime::Trap>() {
        Some(trap) => StageFailure::Trap(trap.to_string()),
        // Not a trap: instantiation refused (e.g. an instance limit) or a
        // host error; its own message says which.
        None => StageFailure::Trap(format!("{err:#}")),
    }
}

fn millis(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}
