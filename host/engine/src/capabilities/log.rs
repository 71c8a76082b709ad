//! Plugin log lines into the host's tracing log, attributed to the stage.
//! Always available, and bounded: each message and field is capped and
//! cleaned (see `text`), and each stage has a budget of lines and bytes;
//! past it the stage's further lines are dropped and one line says so.

use crate::shared::StageShared;
use bucketscan_core::text::cap;
use wasmtime::component::HasData;

const MAX_MESSAGE: usize = 4096;
const MAX_FIELDS: usize = 32;
/// Lines and bytes one stage may log for one object.
pub const STAGE_LOG_LINES: u32 = 100;
pub const STAGE_LOG_BYTES: usize = 64 * 1024;

/// Severity, as plugins give it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Trace,
    Debug,
    Info,
    Warn,
    Error,
}

/// What a stage has logged so far.
#[derive(Debug, Default)]
pub struct LogCtx {
    lines: u32,
    bytes: usize,
    exhausted: bool,
}

/// What logging sees of the store.
pub struct LogCtxView<'a> {
    pub ctx: &'a mut LogCtx,
    pub shared: &'a mut StageShared,
}

/// The projection from a store's state to logging.
pub trait LogView: Send {
    fn log(&mut self) -> LogCtxView<'_>;
}

/// Marks logging for `add_to_linker`.
pub struct HasLog;

impl HasData for HasLog {
    type Data<'a> = LogCtxView<'a>;
}

impl LogCtxView<'_> {
    pub fn log(&mut self, level: Level, message: &str, fields: &[(String, String)]) {
        let budget = &mut *self.ctx;
        if budget.exhausted {
            return;
        }
        let message = cap(message, MAX_MESSAGE);
        let fields: Vec<String> = fields
            .iter()
            .take(MAX_FIELDS)
            .map(|(k, v)| format!("{}={}", cap(k, 64), cap(v, 512)))
            .collect();
        let fields = fields.join(" ");
        let stage = &*self.shared.label;
        let key = bucketscan_core::object::printable(&self.shared.object.info.key);
        let key = key.as_ref();
        budget.lines += 1;
        budget.bytes += message.len() + fields.len();
        if budget.lines > STAGE_LOG_LINES || budget.bytes > STAGE_LOG_BYTES {
            budget.exhausted = true;
            tracing::warn!(
                stage,
                key,
                "log budget of this stage ({STAGE_LOG_LINES} lines, {STAGE_LOG_BYTES} bytes) used up; its further lines are dropped"
            );
            return;
        }
        match level {
            Level::Trace => tracing::trace!(stage, key, fields, "{message}"),
            Level::Debug => tracing::debug!(stage, key, fields, "{message}"),
            Level::Info => tracing::info!(stage, key, fields, "{message}"),
            Level::Warn => tracing::warn!(stage, key, fields, "{message}"),
            Level::Error => tracing::error!(stage, key, fields, "{message}"),
        }
    }
}
