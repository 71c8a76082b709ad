//! {{name}}: a bucketscan inspector plugin.
//!
//! Blocks objects whose key ends with one of the suffixes in the
//! `deny-suffixes` setting (a list); everything else goes on to the next
//! stage (`continue`). Replace `decide` with your own logic.
//!
//! The contract is `wit/` (bucketscan:plugin@{{contract}}); every type and
//! import is documented there. Everything the stage is given comes through
//! the `stage` resource: `stage.object()`, `stage.settings()`, …

wit_bindgen::generate!({
    world: "inspector-plugin",
    path: "wit",
    generate_all,
});

use bucketscan::plugin::stage::Stage;
use bucketscan::plugin::types::{Decision, PluginError, PluginInfo, SettingValue, Verdict};
use exports::bucketscan::plugin::inspector::Guest;

/// The plugin's logic, apart from the bindings so it is easy to unit test.
fn decide(key: &str, settings: &[(String, SettingValue)]) -> Result<Decision, PluginError> {
    let mut denied = Vec::new();
    for (name, value) in settings {
        match (name.as_str(), value) {
            ("deny-suffixes", SettingValue::Items(items)) => denied.extend(items.iter().cloned()),
            ("deny-suffixes", SettingValue::Text(one)) => denied.push(one.clone()),
            ("deny-suffixes", _) => {
                return Err(PluginError::InvalidSettings(
                    "setting `deny-suffixes`: expected a list of strings".into(),
                ));
            }
            _ => {
                return Err(PluginError::InvalidSettings(format!(
                    "unknown setting `{name}` (known: deny-suffixes)"
                )));
            }
        }
    }
    for suffix in denied.iter().map(|s| s.trim()).filter(|s| !s.is_empty()) {
        if key.ends_with(suffix) {
            return Ok(Decision::Verdict(Verdict::Blocked(format!("key ends with `{suffix}`"))));
        }
    }
    Ok(Decision::Continue)
}

struct Plugin;

impl Guest for Plugin {
    fn info() -> PluginInfo {
        PluginInfo {
            name: "{{name}}".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: "blocks keys with denied suffixes".into(),
        }
    }

    fn inspect(stage: &Stage) -> Result<Decision, PluginError> {
        decide(&stage.object().key(), &stage.settings())
    }
}

export!(Plugin);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_denied_suffixes_only() {
        let settings = vec![(
            "deny-suffixes".to_string(),
            SettingValue::Items(vec![".exe".into(), ".block".into()]),
        )];
        assert!(matches!(decide("a/b.exe", &settings), Ok(Decision::Verdict(Verdict::Blocked(_)))));
        assert!(matches!(decide("a/b.txt", &settings), Ok(Decision::Continue)));
        let typo = vec![("typo".to_string(), SettingValue::Text("x".into()))];
        assert!(matches!(decide("a", &typo), Err(PluginError::InvalidSettings(_))));
    }
}
