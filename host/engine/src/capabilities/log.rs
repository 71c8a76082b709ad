//! `bucketscan:plugin/log`: plugin log lines into the host's tracing log,
//! attributed to the stage. Always available; sizes are capped so a plugin
//! cannot flood the log.

use crate::bindings::log::Host;
use crate::bindings::types::Level;
use crate::sandbox::StageState;

const MAX_MESSAGE: usize = 4096;
const MAX_FIELDS: usize = 32;

fn truncate(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

impl Host for StageState {
    async fn log(&mut self, level: Level, message: String, fields: Vec<(String, String)>) -> wasmtime::Result<()> {
        let message = truncate(&message, MAX_MESSAGE);
        let fields: Vec<String> = fields
            .iter()
            .take(MAX_FIELDS)
            .map(|(k, v)| format!("{}={}", truncate(k, 64), truncate(v, 512)))
            .collect();
        let fields = fields.join(" ");
        let stage = self.stage_label.as_str();
        let key = self.object.info.key.as_str();
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
