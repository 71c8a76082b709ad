//! A stage's `settings`: the plugin's own configuration, handed to it as
//! typed values (contract 0.2) or as strings (contract 0.1).

use std::fmt;

/// One setting's value. Lists stay lists (their items in their TOML
/// spelling), so an item with a comma in it is not split.
#[derive(Debug, Clone, PartialEq)]
pub enum SettingValue {
    Text(String),
    Integer(i64),
    Float(f64),
    Boolean(bool),
    List(Vec<String>),
}

impl SettingValue {
    /// The value from the config, refused when it is a table or a nested
    /// list (plugins get flat settings).
    pub fn from_toml(value: &toml::Value) -> Result<Self, &'static str> {
        Ok(match value {
            toml::Value::String(s) => Self::Text(s.clone()),
            toml::Value::Integer(i) => Self::Integer(*i),
            toml::Value::Float(f) => Self::Float(*f),
            toml::Value::Boolean(b) => Self::Boolean(*b),
            toml::Value::Datetime(d) => Self::Text(d.to_string()),
            toml::Value::Array(items) => Self::List(
                items
                    .iter()
                    .map(|item| match item {
                        toml::Value::Array(_) | toml::Value::Table(_) => {
                            Err("arrays in settings may hold only strings, numbers and booleans")
                        }
                        scalar => Ok(Self::from_toml(scalar)?.to_string()),
                    })
                    .collect::<Result<_, _>>()?,
            ),
            toml::Value::Table(_) => return Err("settings values may not be tables"),
        })
    }

    /// A value given on a command line (`--set KEY=VALUE`): TOML when it
    /// reads as TOML (`true`, `42`, `["a", "b"]`), text otherwise.
    pub fn from_command_line(raw: &str) -> Self {
        toml::from_str::<toml::Table>(&format!("value = {raw}"))
            .ok()
            .and_then(|table| Self::from_toml(&table["value"]).ok())
            .unwrap_or_else(|| Self::Text(raw.to_owned()))
    }

    /// The value as contract 0.1 hands it over: a string, lists joined
    /// with commas.
    pub fn to_legacy_string(&self) -> String {
        match self {
            Self::List(items) => items.join(","),
            scalar => scalar.to_string(),
        }
    }
}

impl fmt::Display for SettingValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Text(s) => f.write_str(s),
            Self::Integer(i) => write!(f, "{i}"),
            Self::Float(x) => write!(f, "{x}"),
            Self::Boolean(b) => write!(f, "{b}"),
            Self::List(items) => write!(f, "[{}]", items.join(", ")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_stay_lists_and_legacy_strings_join_them() {
        let value: toml::Value = toml::from_str::<toml::Table>("v = [\"a,b\", 2, true]").unwrap()["v"].clone();
        let setting = SettingValue::from_toml(&value).unwrap();
        assert_eq!(
            setting,
            SettingValue::List(vec!["a,b".into(), "2".into(), "true".into()])
        );
        assert_eq!(setting.to_legacy_string(), "a,b,2,true");
        let nested: toml::Value = toml::from_str::<toml::Table>("v = [[1]]").unwrap()["v"].clone();
        assert!(SettingValue::from_toml(&nested).is_err());
    }

    #[test]
    fn command_line_values_are_toml_when_they_can_be() {
        assert_eq!(SettingValue::from_command_line("true"), SettingValue::Boolean(true));
        assert_eq!(SettingValue::from_command_line("12"), SettingValue::Integer(12));
        assert_eq!(
            SettingValue::from_command_line(r#"["a", "b"]"#),
            SettingValue::List(vec!["a".into(), "b".into()])
        );
        assert_eq!(SettingValue::from_command_line("a,b"), SettingValue::Text("a,b".into()));
        assert_eq!(
            SettingValue::from_command_line("100MB"),
            SettingValue::Text("100MB".into())
        );
    }
}
