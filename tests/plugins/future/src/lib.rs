//! A plugin built against a made-up breaking contract 0.3.0
//! (`tests/contracts/0.3.0`): the host must refuse to load it.

wit_bindgen::generate!({
    world: "inspector-plugin",
    path: "../../contracts/0.3.0",
    generate_all,
});

use bucketscan::plugin::object::Object;
use bucketscan::plugin::types::{Decision, PluginInfo, Verdict};
use exports::bucketscan::plugin::inspector::Guest;

struct Future;

impl Guest for Future {
    fn describe() -> PluginInfo {
        PluginInfo {
            name: "future".into(),
            version: "0.1.0".into(),
            description: "built against contract 0.3.0".into(),
        }
    }

    fn inspect(
        _object: &Object,
        _settings: Vec<(String, String)>,
        _so_far: Option<Verdict>,
        _attempt: u32,
    ) -> Result<Decision, String> {
        Ok(Decision::Continue)
    }
}

export!(Future);
