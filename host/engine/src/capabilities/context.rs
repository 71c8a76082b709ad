//! `bucketscan:plugin/context` (contract 0.1.1): who is scanning and how the
//! stages before this one went. Read-only and always available.

use crate::bindings::context::{Host, StageTiming};
use crate::sandbox::StageState;

impl Host for StageState {
    async fn agent_id(&mut self) -> wasmtime::Result<String> {
        Ok(self.services.agent_id.clone())
    }

    async fn stage_timings(&mut self) -> wasmtime::Result<Vec<StageTiming>> {
        Ok(self
            .timings
            .iter()
            .map(|timing| StageTiming {
                plugin: timing.plugin.clone(),
                outcome: timing.outcome.as_str().to_owned(),
                duration_us: timing.duration.as_micros().min(u64::MAX as u128) as u64,
            })
            .collect())
    }
}
