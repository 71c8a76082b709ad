//! Typed access to a stage's settings, with errors that name the setting.
//!
//! The host hands settings over typed (`setting-value`): TOML strings,
//! integers, floats, booleans and arrays arrive as themselves. The readers
//! here also accept the text spelling a person types on a command line
//! (`--set limit=10MB`, `--set enabled=true`), so a plugin reads a setting
//! the same way whatever the source.

use crate::{PluginError, SettingValue, Stage};

/// The settings of one stage, as the pipeline config (or `plugin run --set`)
/// gave them.
#[derive(Debug, Clone, Default)]
pub struct Settings(Vec<(String, SettingValue)>);

impl Settings {
    /// Wraps the settings the host handed over.
    pub fn new(pairs: Vec<(String, SettingValue)>) -> Self {
        Self(pairs)
    }

    /// The settings of `stage`.
    pub fn of(stage: &Stage) -> Self {
        Self(stage.settings())
    }

    /// The value of `key`, if set (the last one wins).
    pub fn get(&self, key: &str) -> Option<&SettingValue> {
        self.0.iter().rev().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    /// A text setting, if set.
    pub fn text(&self, key: &str) -> Result<Option<&str>, PluginError> {
        match self.get(key) {
            None => Ok(None),
            Some(SettingValue::Text(text)) => Ok(Some(text)),
            Some(other) => Err(invalid(key, "a string", other)),
        }
    }

    /// A boolean setting, or `default` when unset.
    pub fn bool_or(&self, key: &str, default: bool) -> Result<bool, PluginError> {
        match self.get(key) {
            None => Ok(default),
            Some(SettingValue::Boolean(value)) => Ok(*value),
            Some(SettingValue::Text(text)) if text == "true" => Ok(true),
            Some(SettingValue::Text(text)) if text == "false" => Ok(false),
            Some(other) => Err(invalid(key, "true or false", other)),
        }
    }

    /// An unsigned integer setting: an integer, or text with a `KB`, `MB`
    /// or `GB` suffix (powers of 1024) for sizes.
    pub fn u64(&self, key: &str) -> Result<Option<u64>, PluginError> {
        match self.get(key) {
            None => Ok(None),
            Some(SettingValue::Integer(n)) => u64::try_from(*n)
                .map(Some)
                .map_err(|_| invalid(key, "a number of 0 or more", &SettingValue::Integer(*n))),
            Some(SettingValue::Text(raw)) => parse_size(raw)
                .map(Some)
                .ok_or_else(|| invalid(key, "a number (units: KB, MB, GB)", &SettingValue::Text(raw.clone()))),
            Some(other) => Err(invalid(key, "a number", other)),
        }
    }

    /// A list setting; empty when unset. A single string is a list of one.
    pub fn list(&self, key: &str) -> Result<Vec<String>, PluginError> {
        match self.get(key) {
            None => Ok(Vec::new()),
            Some(SettingValue::Items(items)) => Ok(items.clone()),
            Some(SettingValue::Text(text)) => Ok(vec![text.clone()]),
            Some(other) => Err(invalid(key, "a list of strings", other)),
        }
    }

    /// A setting restricted to one of `choices`, or `default` when unset.
    pub fn choice<'a>(&self, key: &str, choices: &[&'a str], default: &'a str) -> Result<&'a str, PluginError> {
        match self.text(key)? {
            None => Ok(default),
            Some(value) => choices.iter().copied().find(|c| *c == value).ok_or_else(|| {
                PluginError::InvalidSettings(format!(
                    "setting `{key}`: `{value}` is not one of {}",
                    choices.join(", ")
                ))
            }),
        }
    }

    /// Fails when a setting is not one of `known`, so a typo is not
    /// silently ignored.
    pub fn reject_unknown(&self, known: &[&str]) -> Result<(), PluginError> {
        for (key, _) in &self.0 {
            if !known.contains(&key.as_str()) {
                return Err(PluginError::InvalidSettings(format!(
                    "unknown setting `{key}` (known: {})",
                    known.join(", ")
                )));
            }
        }
        Ok(())
    }
}

fn invalid(key: &str, expected: &str, got: &SettingValue) -> PluginError {
    PluginError::InvalidSettings(format!("setting `{key}`: expected {expected}, got {}", spelled(got)))
}

/// A value as the config would spell it, for error messages.
fn spelled(value: &SettingValue) -> String {
    match value {
        SettingValue::Text(text) => format!("\"{text}\""),
        SettingValue::Integer(n) => n.to_string(),
        SettingValue::Float(x) => x.to_string(),
        SettingValue::Boolean(b) => b.to_string(),
        SettingValue::Items(items) => format!("[{}]", items.join(", ")),
    }
}

fn parse_size(raw: &str) -> Option<u64> {
    let trimmed = raw.trim();
    let (digits, unit) = match trimmed.find(|c: char| !c.is_ascii_digit()) {
        Some(at) => trimmed.split_at(at),
        None => (trimmed, ""),
    };
    let multiplier: u64 = match unit.trim().to_ascii_uppercase().as_str() {
        "" | "B" => 1,
        "KB" | "KIB" => 1 << 10,
        "MB" | "MIB" => 1 << 20,
        "GB" | "GIB" => 1 << 30,
        _ => return None,
    };
    digits.parse::<u64>().ok()?.checked_mul(multiplier)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(pairs: &[(&str, &str)]) -> Settings {
        Settings::new(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), SettingValue::Text(v.to_string())))
                .collect(),
        )
    }

    fn message(err: PluginError) -> String {
        match err {
            PluginError::InvalidSettings(m) => m,
            other => panic!("expected invalid-settings, got {other:?}"),
        }
    }

    #[test]
    fn sizes_take_units_or_integers() {
        let s = text(&[("a", "10MB"), ("b", "7"), ("c", "ten")]);
        assert_eq!(s.u64("a").unwrap(), Some(10 << 20));
        assert_eq!(s.u64("b").unwrap(), Some(7));
        assert!(message(s.u64("c").unwrap_err()).contains("`c`"));
        assert_eq!(s.u64("d").unwrap(), None);
        let typed = Settings::new(vec![
            ("n".into(), SettingValue::Integer(42)),
            ("neg".into(), SettingValue::Integer(-1)),
        ]);
        assert_eq!(typed.u64("n").unwrap(), Some(42));
        assert!(message(typed.u64("neg").unwrap_err()).contains("`neg`"));
    }

    #[test]
    fn lists_stay_whole() {
        let s = Settings::new(vec![(
            "deny".into(),
            SettingValue::Items(vec!["a,b".into(), "c".into()]),
        )]);
        assert_eq!(s.list("deny").unwrap(), vec!["a,b", "c"]);
        assert_eq!(text(&[("one", "x")]).list("one").unwrap(), vec!["x"]);
        let wrong = Settings::new(vec![("deny".into(), SettingValue::Boolean(true))]);
        assert!(message(wrong.list("deny").unwrap_err()).contains("expected a list"));
    }

    #[test]
    fn booleans_typed_or_spelled() {
        let s = Settings::new(vec![
            ("a".into(), SettingValue::Boolean(false)),
            ("b".into(), SettingValue::Text("true".into())),
            ("c".into(), SettingValue::Integer(1)),
        ]);
        assert!(!s.bool_or("a", true).unwrap());
        assert!(s.bool_or("b", false).unwrap());
        assert!(message(s.bool_or("c", false).unwrap_err()).contains("`c`"));
        assert!(s.bool_or("unset", true).unwrap());
    }

    #[test]
    fn unknown_settings_are_named() {
        let s = text(&[("dney", "x")]);
        assert!(message(s.reject_unknown(&["deny"]).unwrap_err()).contains("`dney`"));
    }
}
