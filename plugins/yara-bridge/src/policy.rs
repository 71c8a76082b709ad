//! Which matches make an object infected. Pure, so it is unit-tested on
//! the host.

use bucketscan_plugin_sdk::yara::RuleMatch;
use bucketscan_plugin_sdk::{Finding, PluginError, Settings};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OverLimit {
    Unscannable,
    Continue,
}

#[derive(Debug, Clone)]
pub struct Policy {
    pub rule_set: String,
    infected_tags: Vec<String>,
    infected_metadata: Vec<(String, String)>,
    pub over_limit: OverLimit,
}

/// The matches, sorted.
pub struct Judged<'a> {
    pub infected: Vec<Finding>,
    pub findings_only: Vec<&'a RuleMatch>,
}

impl Policy {
    pub fn from_settings(settings: &Settings) -> Result<Self, PluginError> {
        settings.reject_unknown(&["rule-set", "infected-tags", "infected-metadata", "over-limit"])?;
        let rule_set = settings
            .text("rule-set")?
            .filter(|name| !name.is_empty())
            .ok_or_else(|| PluginError::InvalidSettings("setting `rule-set` is required: the rule set to run".into()))?
            .to_owned();
        let infected_tags = match settings.get("infected-tags") {
            Some(_) => settings.list("infected-tags")?,
            None => vec!["malware".into()],
        };
        let metadata = match settings.get("infected-metadata") {
            Some(_) => settings.list("infected-metadata")?,
            None => ["malware=true", "severity=high", "severity=critical"]
                .map(String::from)
                .to_vec(),
        };
        let infected_metadata = metadata
            .iter()
            .map(|pair| {
                pair.split_once('=')
                    .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
                    .ok_or_else(|| {
                        PluginError::InvalidSettings(format!("infected-metadata `{pair}`: expected KEY=VALUE"))
                    })
            })
            .collect::<Result<_, _>>()?;
        let over_limit = match settings.choice("over-limit", &["unscannable", "continue"], "unscannable")? {
            "continue" => OverLimit::Continue,
            _ => OverLimit::Unscannable,
        };
        Ok(Self {
            rule_set,
            infected_tags,
            infected_metadata,
            over_limit,
        })
    }

    fn makes_infected(&self, m: &RuleMatch) -> bool {
        let by_tag = m
            .tags
            .iter()
            .any(|tag| self.infected_tags.iter().any(|t| t.eq_ignore_ascii_case(tag)));
        let by_metadata = m.metadata.iter().any(|(key, value)| {
            self.infected_metadata
                .iter()
                .any(|(k, v)| k == key && v.eq_ignore_ascii_case(value))
        });
        by_tag || by_metadata
    }

    /// Infected findings (engine `yara`, signature
    /// `YARA.NAMESPACE.RULE`) and the matches that are findings only.
    pub fn judge<'a>(&self, matches: &'a [RuleMatch]) -> Judged<'a> {
        let (infected, findings_only): (Vec<&RuleMatch>, Vec<&RuleMatch>) =
            matches.iter().partition(|m| self.makes_infected(m));
        Judged {
            infected: infected
                .into_iter()
                .map(|m| Finding {
                    engine: "yara".into(),
                    signature: format!("YARA.{}.{}", m.namespace, m.rule),
                })
                .collect(),
            findings_only,
        }
    }
}

/// `$pattern@offset+length, …` for a log line.
pub fn offsets(m: &RuleMatch) -> String {
    m.patterns
        .iter()
        .map(|p| format!("{}@{}+{}", p.pattern, p.offset, p.length))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use bucketscan_plugin_sdk::SettingValue;
    use bucketscan_plugin_sdk::yara::PatternMatch;

    fn settings(pairs: &[(&str, SettingValue)]) -> Settings {
        Settings::new(pairs.iter().map(|(k, v)| (k.to_string(), v.clone())).collect())
    }

    fn rule(name: &str, tags: &[&str], metadata: &[(&str, &str)]) -> RuleMatch {
        RuleMatch {
            rule: name.into(),
            namespace: "php_yar".into(),
            tags: tags.iter().map(|t| t.to_string()).collect(),
            metadata: metadata.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            patterns: vec![PatternMatch {
                pattern: "$a".into(),
                offset: 14,
                length: 11,
            }],
        }
    }

    #[test]
    fn tags_and_metadata_make_infected_and_the_rest_are_findings() {
        let policy = Policy::from_settings(&settings(&[("rule-set", SettingValue::Text("webshells".into()))])).unwrap();
        let matches = [
            rule("shell", &["webshell"], &[("severity", "HIGH")]),
            rule("dropper", &["Malware"], &[]),
            rule("suspicious", &["php"], &[("severity", "low")]),
        ];
        let judged = policy.judge(&matches);
        let names: Vec<&str> = judged.infected.iter().map(|f| f.signature.as_str()).collect();
        assert_eq!(names, ["YARA.php_yar.shell", "YARA.php_yar.dropper"]);
        assert!(judged.infected.iter().all(|f| f.engine == "yara"));
        assert_eq!(judged.findings_only.len(), 1);
        assert_eq!(offsets(judged.findings_only[0]), "$a@14+11");
    }

    #[test]
    fn settings_are_checked() {
        let missing = Policy::from_settings(&settings(&[])).unwrap_err();
        assert!(format!("{missing:?}").contains("rule-set"), "{missing:?}");
        let bad = Policy::from_settings(&settings(&[
            ("rule-set", SettingValue::Text("s".into())),
            ("infected-metadata", SettingValue::Items(vec!["severity".into()])),
        ]))
        .unwrap_err();
        assert!(format!("{bad:?}").contains("KEY=VALUE"), "{bad:?}");
        let custom = Policy::from_settings(&settings(&[
            ("rule-set", SettingValue::Text("s".into())),
            ("infected-tags", SettingValue::Items(vec![])),
            ("infected-metadata", SettingValue::Items(vec!["score=100".into()])),
            ("over-limit", SettingValue::Text("continue".into())),
        ]))
        .unwrap();
        assert_eq!(custom.over_limit, OverLimit::Continue);
        let matches = [rule("a", &["malware"], &[]), rule("b", &[], &[("score", "100")])];
        let judged = custom.judge(&matches);
        assert_eq!(judged.infected.len(), 1, "only the metadata rule counts now");
    }
}
