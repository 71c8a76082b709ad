//! The port to the pipeline's stages: inspect an object, act on a
//! verdict. The scan path decides *when*; a [`Stages`] runs them — the
//! wasm engine's runner in production ([`WasmStages`]), a stand-in with
//! chosen answers in the scan path's own unit tests.

use async_trait::async_trait;
use bucketscan_core::object::ScanObject;
use bucketscan_core::report::StageReport;
use bucketscan_core::storage::StageStorage;
use bucketscan_core::verdict::Verdict;
use bucketscan_engine::runner::{self, InspectPolicy, Inspected};
use bucketscan_engine::{Engine, PipelineStage, Services};
use std::sync::Arc;

#[async_trait]
pub trait Stages: Send + Sync {
    /// The inspectors of `stages` over `object`, folded into a verdict.
    async fn inspect(&self, stages: &[PipelineStage], object: &ScanObject, policy: &InspectPolicy) -> Inspected;

    /// The actions of `stages` that apply to `verdict`, each performing
    /// its storage actions through `storage`; `before` are the reports of
    /// the stages that ran already.
    async fn act(
        &self,
        stages: &[PipelineStage],
        object: &ScanObject,
        verdict: &Verdict,
        storage: &Arc<dyn StageStorage>,
        before: &[StageReport],
    ) -> Vec<StageReport>;

    /// Reports for actions that do not run (an `error`, a held object).
    fn not_run(&self, stages: &[PipelineStage]) -> Vec<StageReport>;
}

/// The stages as the wasm engine runs them: each plugin in its sandbox.
pub struct WasmStages {
    pub engine: Arc<Engine>,
    pub services: Arc<Services>,
}

#[async_trait]
impl Stages for WasmStages {
    async fn inspect(&self, stages: &[PipelineStage], object: &ScanObject, policy: &InspectPolicy) -> Inspected {
        runner::inspect_with(&self.engine, &self.services, stages, object, policy).await
    }

    async fn act(
        &self,
        stages: &[PipelineStage],
        object: &ScanObject,
        verdict: &Verdict,
        storage: &Arc<dyn StageStorage>,
        before: &[StageReport],
    ) -> Vec<StageReport> {
        runner::act(&self.engine, &self.services, stages, object, verdict, storage, before).await
    }

    fn not_run(&self, stages: &[PipelineStage]) -> Vec<StageReport> {
        runner::actions_not_run(stages)
    }
}
