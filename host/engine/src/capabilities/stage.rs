//! What one stage is given: the object, its settings, the verdict so far
//! (or the final one, for actions), the agent's id and how the stages
//! before it went. Read-only and always available. (Contract 0.1 hands the
//! settings and verdict over as parameters; 0.2 through the `stage`
//! resource, so new inputs are new methods.)

use crate::shared::{ScanObject, StageShared, StageTiming};
use bucketscan_core::Verdict;
use bucketscan_core::config::SettingValue;
use wasmtime::component::{HasData, Resource};

/// The stage's inputs, in its store.
pub struct StageCtx {
    pub object: ScanObject,
    pub settings: Vec<(String, SettingValue)>,
    pub verdict: Option<Verdict>,
    pub timings: Vec<StageTiming>,
    pub agent_id: String,
}

impl StageCtx {
    pub fn new(
        object: ScanObject,
        settings: Vec<(String, SettingValue)>,
        verdict: Option<Verdict>,
        timings: Vec<StageTiming>,
        agent_id: String,
    ) -> Self {
        Self {
            object,
            settings,
            verdict,
            timings,
            agent_id,
        }
    }
}

/// The `stage` resource's handle: the data is the store's [`StageCtx`].
#[derive(Debug, Clone, Copy)]
pub struct StageHandle;

/// What the stage's inputs see of the store.
pub struct StageCtxView<'a> {
    pub ctx: &'a StageCtx,
    pub shared: &'a mut StageShared,
}

/// The projection from a store's state to the stage's inputs.
pub trait StageView: Send {
    fn stage(&mut self) -> StageCtxView<'_>;
}

/// Marks the stage's inputs for `add_to_linker`.
pub struct HasStage;

impl HasData for HasStage {
    type Data<'a> = StageCtxView<'a>;
}

impl StageCtxView<'_> {
    /// A new handle to the stage's object; traps when the stage already
    /// holds as many handles as it may.
    pub fn object(&mut self) -> wasmtime::Result<Resource<ScanObject>> {
        let object = self.ctx.object.clone();
        self.shared.push(object)
    }

    pub fn setting(&self, name: &str) -> Option<&SettingValue> {
        self.ctx.settings.iter().find(|(k, _)| k == name).map(|(_, v)| v)
    }
}
