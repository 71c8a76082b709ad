//! `bucketscan:plugin/log`: plugin log lines into the host's tracing log,
//! attributed to the stage. Always available, and bounded: each message and
//! field is capped and cleaned (see `text`), and each stage has a budget of
//! lines and bytes; past it the stage's further lines are dropped and one
//! line says so.

use crate::bindings::log::Host;
use crate::bindings::types::Level;
use crate::sandbox::StageState;
use crate::text::cap;

const MAX_MESSAGE: usize = 4096;
const MAX_FIELDS: usize = 32;
/// Lines and bytes one stage may log for one object.
pub const STAGE_LOG_LINES: u32 = 100;
pub const STAGE_LOG_BYTES: usize = 64 * 1024;

/// What a stage has logged so far.
#[derive(Debug, Default)]
pub struct LogBudget {
    lines: u32,
    bytes: usize,
    exhausted: bool,
}

impl Host for StageState {
    async fn log(&mut self, level: Level, message: String, fields: Vec<(String, String)>) -> wasmtime::Result<()> {
        let message = cap(&message, MAX_MESSAGE);
        let fields: Vec<String> = fields
            .iter()
            .take(MAX_FIELDS)
            .map(|(k, v)| format!("{}={}", cap(k, 64), cap(v, 512)))
            .collect();
        let fields = fields.join(" ");
        let stage = self.stage_label.as_str();
        let key = bucketscan_core::object::printable(&self.object.info.key);
        let key = key.as_ref();
        let budget = &mut self.log_budget;
        if budget.exhausted {
            return Ok(());
        }
        budget.lines += 1;
        budget.bytes += message.len() + fields.len();
        if budget.lines > STAGE_LOG_LINES || budget.bytes > STAGE_LOG_BYTES {
            budget.exhausted = true;
            tracing::warn!(
                stage,
                key,
                "log budget of this stage ({STAGE_LOG_LINES} lines, {STAGE_LOG_BYTES} bytes) used up; its further lines are dropped"
            );
            return Ok(());
        }
        match level {
            Level::Trace => tracing::trace!(stage, key, fields, "{message}"),
            Level::Debug => tracing::debug!(stage, key, fields, "{message}"),
            Level::Info => tracing::info!(stage, key, fields, "{message}"),
            Level::Warn => tracing::warn!(stage, key, fields, "{message}"),
            Level::Error => tracing::error!(stage, key, fields, "{message}"),
        }
        Ok(())
    }
}
