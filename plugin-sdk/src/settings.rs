//! Typed access to a stage's settings, with errors that name the setting.

/// The settings of one stage, as the pipeline config (or `plugin run --set`)
/// gave them.
#[derive(Debug, Clone, Default)]
pub struct Settings(Vec<(String, String)>);

impl Settings {
    /// Wraps the key/value pairs the host handed over.
    pub fn new(pairs: Vec<(String, String)>) -> Self {
        Self(pairs)
    }

    /// The raw value of `key`, if set (the last one wins).
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.iter().rev().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }

    /// A boolean setting (`true`/`false`), or `default` when unset.
    pub fn bool_or(&self, key: &str, default: bool) -> Result<bool, String> {
        match self.get(key) {
            None => Ok(default),
            Some("true") => Ok(true),
            Some("false") => Ok(false),
            Some(other) => Err(format!("setting `{key}`: expected true or false, got `{other}`")),
        }
    }

    /// An unsigned integer setting; accepts `KB`, `MB`, `GB` suffixes
    /// (powers of 1024) for sizes.
    pub fn u64(&self, key: &str) -> Result<Option<u64>, String> {
        let Some(raw) = self.get(key) else { return Ok(None) };
        let trimmed = raw.trim();
        let (digits, unit) = match trimmed.find(|c: char| !c.is_ascii_digit()) {
            Some(at) => trimmed.split_at(at),
            None => (trimmed, ""),
        };
        let multiplier = match unit.trim().to_ascii_uppercase().as_str() {
            "" | "B" => 1,
            "KB" | "KIB" => 1 << 10,
            "MB" | "MIB" => 1 << 20,
            "GB" | "GIB" => 1 << 30,
            _ => return Err(format!("setting `{key}`: `{raw}` is not a number (units: KB, MB, GB)")),
        };
        digits
            .parse::<u64>()
            .ok()
            .and_then(|n| n.checked_mul(multiplier))
            .map(Some)
            .ok_or_else(|| format!("setting `{key}`: `{raw}` is not a number (units: KB, MB, GB)"))
    }

    /// A comma-separated list setting; empty when unset.
    pub fn list(&self, key: &str) -> Vec<String> {
        self.get(key)
            .map(|raw| {
                raw.split(',')
                    .map(str::trim)
                    .filter(|item| !item.is_empty())
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default()
    }

    /// A setting restricted to one of `choices`, or `default` when unset.
    pub fn choice<'a>(&self, key: &str, choices: &[&'a str], default: &'a str) -> Result<&'a str, String> {
        match self.get(key) {
            None => Ok(default),
            Some(value) => choices
                .iter()
                .copied()
                .find(|c| *c == value)
                .ok_or_else(|| format!("setting `{key}`: `{value}` is not one of {}", choices.join(", "))),
        }
    }

    /// Fails when a setting is not one of `known`, so a typo is not
    /// silently ignored.
    pub fn reject_unknown(&self, known: &[&str]) -> Result<(), String> {
        for (key, _) in &self.0 {
            if !known.contains(&key.as_str()) {
                return Err(format!("unknown setting `{key}` (known: {})", known.join(", ")));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(pairs: &[(&str, &str)]) -> Settings {
        Settings::new(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect())
    }

    #[test]
    fn sizes_take_units() {
        let s = settings(&[("a", "10MB"), ("b", "7"), ("c", "ten")]);
        assert_eq!(s.u64("a").unwrap(), Some(10 << 20));
        assert_eq!(s.u64("b").unwrap(), Some(7));
        assert!(s.u64("c").unwrap_err().contains("`c`"));
        assert_eq!(s.u64("d").unwrap(), None);
    }

    #[test]
    fn lists_split_on_commas() {
        let s = settings(&[("deny", "executable, script,,")]);
        assert_eq!(s.list("deny"), vec!["executable", "script"]);
    }

    #[test]
    fn unknown_settings_are_named() {
        let s = settings(&[("dney", "x")]);
        assert!(s.reject_unknown(&["deny"]).unwrap_err().contains("`dney`"));
    }
}
