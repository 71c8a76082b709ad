//! {{name}}: a bucketscan inspector plugin.
//!
//! Blocks objects whose key ends with one of the suffixes in the
//! `deny-suffixes` setting (comma-separated); everything else goes on to
//! the next stage (`continue`). Replace `decide` with your own logic.
//!
//! The contract is `wit/plugin.wit` (bucketscan:plugin@{{contract}}); every
//! type and import is documented there.

wit_bindgen::generate!({
    world: "inspector-plugin",
    path: "wit",
    generate_all,
});

use bucketscan::plugin::object::Object;
use bucketscan::plugin::types::{Decision, PluginInfo, Verdict};
use exports::bucketscan::plugin::inspector::Guest;

/// The plugin's logic, apart from the bindings so it is easy to unit test.
fn decide(key: &str, settings: &[(String, String)]) -> Result<Decision, String> {
    for (name, _) in settings {
        if name != "deny-suffixes" {
            return Err(format!("unknown setting `{name}` (known: deny-suffixes)"));
        }
    }
    let denied = settings.iter().filter(|(name, _)| name == "deny-suffixes").flat_map(|(_, v)| v.split(','));
    for suffix in denied.map(str::trim).filter(|s| !s.is_empty()) {
        if key.ends_with(suffix) {
            return Ok(Decision::Verdict(Verdict::Blocked(format!("key ends with `{suffix}`"))));
        }
    }
    Ok(Decision::Continue)
}

struct Plugin;

impl Guest for Plugin {
    fn describe() -> PluginInfo {
        PluginInfo {
            name: "{{name}}".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: "blocks keys with denied suffixes".into(),
        }
    }

    fn inspect(object: &Object, settings: Vec<(String, String)>, _so_far: Option<Verdict>) -> Result<Decision, String> {
        decide(&object.info().key, &settings)
    }
}

export!(Plugin);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_denied_suffixes_only() {
        let settings = vec![("deny-suffixes".to_string(), ".exe, .block".to_string())];
        assert!(matches!(decide("a/b.exe", &settings), Ok(Decision::Verdict(Verdict::Blocked(_)))));
        assert!(matches!(decide("a/b.txt", &settings), Ok(Decision::Continue)));
        assert!(decide("a", &[("typo".into(), "x".into())]).is_err());
    }
}
