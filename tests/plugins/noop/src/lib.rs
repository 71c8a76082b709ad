//! A plugin that does nothing: the per-object overhead baseline in benches.

use bucketscan_plugin_sdk::{Decision, Inspector, PluginError, PluginInfo, Stage};

struct Noop;

impl Inspector for Noop {
    fn info() -> PluginInfo {
        PluginInfo::new("noop", "0.1.0", "answers continue without reading anything")
    }

    fn inspect(_stage: &Stage) -> Result<Decision, PluginError> {
        Ok(Decision::Continue)
    }
}

bucketscan_plugin_sdk::export_inspector!(Noop);
