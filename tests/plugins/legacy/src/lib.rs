//! A plugin built against contract 0.1.0 (`tests/contracts/0.1.0`), straight
//! from wit-bindgen: what a plugin compiled before 0.1.1 looks like. It
//! blocks objects that start with `LEGACY-BLOCK` and logs what it saw.

wit_bindgen::generate!({
    world: "inspector-plugin",
    path: "../../contracts/0.1.0",
    generate_all,
});

use bucketscan::plugin::log::log;
use bucketscan::plugin::object::Object;
use bucketscan::plugin::types::{Decision, Level, PluginInfo, Verdict};
use exports::bucketscan::plugin::inspector::Guest;

struct Legacy;

impl Guest for Legacy {
    fn describe() -> PluginInfo {
        PluginInfo {
            name: "legacy".into(),
            version: "0.1.0".into(),
            description: "built against contract 0.1.0".into(),
        }
    }

    fn inspect(
        object: &Object,
        _settings: Vec<(String, String)>,
        _so_far: Option<Verdict>,
    ) -> Result<Decision, String> {
        let head = object.read(0, 12)?;
        log(
            Level::Info,
            "legacy plugin inspected",
            &[("bytes".into(), head.len().to_string())],
        );
        if head.starts_with(b"LEGACY-BLOCK") {
            return Ok(Decision::Verdict(Verdict::Blocked("legacy rule matched".into())));
        }
        Ok(Decision::Continue)
    }
}

export!(Legacy);
