//! How clamd's signature names map to verdicts. Pure, so it is unit-tested
//! on the host.

use bucketscan_plugin_sdk::{Finding, PluginError, Settings, UnscannableReason, Verdict};

/// What an alert of one class turns into.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Treat {
    Infected,
    Unscannable,
    Blocked,
    Ignore,
}

impl Treat {
    fn parse(settings: &Settings, key: &str, choices: &[&str], default: &str) -> Result<Self, PluginError> {
        Ok(match settings.choice(key, choices, default)? {
            "infected" => Self::Infected,
            "unscannable" => Self::Unscannable,
            "blocked" => Self::Blocked,
            _ => Self::Ignore,
        })
    }
}

#[derive(Debug, Clone)]
pub struct Policy {
    pub max_size: Option<u64>,
    limits: Treat,
    encrypted: Treat,
    pua: Treat,
    heuristics: Treat,
}

/// The classes of names clamd reports.
#[derive(Debug, PartialEq, Eq)]
enum Class {
    LimitsExceeded,
    Encrypted,
    Pua,
    Heuristic,
    Malware,
}

fn classify(name: &str) -> Class {
    if name.starts_with("Heuristics.Limits.Exceeded") {
        Class::LimitsExceeded
    } else if name.starts_with("Heuristics.Encrypted") {
        Class::Encrypted
    } else if name.starts_with("PUA.") {
        Class::Pua
    } else if name.starts_with("Heuristics.") {
        Class::Heuristic
    } else {
        Class::Malware
    }
}

impl Policy {
    pub fn from_settings(settings: &Settings) -> Result<Self, PluginError> {
        settings.reject_unknown(&["max-size", "limits", "encrypted", "pua", "heuristics"])?;
        Ok(Self {
            max_size: settings.u64("max-size")?,
            limits: Treat::parse(settings, "limits", &["unscannable", "infected"], "unscannable")?,
            encrypted: Treat::parse(
                settings,
                "encrypted",
                &["unscannable", "infected", "blocked"],
                "unscannable",
            )?,
            pua: Treat::parse(settings, "pua", &["infected", "ignore"], "infected")?,
            heuristics: Treat::parse(settings, "heuristics", &["infected", "ignore"], "infected")?,
        })
    }

    /// The verdict for clamd's FOUND names (empty: clean). Infected wins over
    /// blocked, blocked over unscannable.
    pub fn verdict(&self, found: &[String]) -> Verdict {
        let mut infected = Vec::new();
        let mut blocked = None;
        let mut unscannable = None;
        for name in found {
            let (treat, reason) = match classify(name) {
                Class::Malware => (Treat::Infected, UnscannableReason::NotScanned),
                Class::Pua => (self.pua, UnscannableReason::NotScanned),
                Class::Heuristic => (self.heuristics, UnscannableReason::NotScanned),
                Class::LimitsExceeded => (self.limits, UnscannableReason::LimitsExceeded),
                Class::Encrypted => (self.encrypted, UnscannableReason::Encrypted),
            };
            match treat {
                Treat::Infected => infected.push(Finding::new("clamav", name)),
                Treat::Blocked => blocked = Some(format!("clamav: {name}")),
                Treat::Unscannable => unscannable = Some((reason, name.clone())),
                Treat::Ignore => {}
            }
        }
        if !infected.is_empty() {
            Verdict::Infected(infected)
        } else if let Some(reason) = blocked {
            Verdict::Blocked(reason)
        } else if let Some((reason, name)) = unscannable {
            Verdict::unscannable(reason, format!("clamav: {name}"))
        } else {
            Verdict::Clean
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bucketscan_plugin_sdk::SettingValue;

    fn policy(pairs: &[(&str, &str)]) -> Policy {
        Policy::from_settings(&Settings::new(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), SettingValue::Text(v.to_string())))
                .collect(),
        ))
        .unwrap()
    }

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn nothing_found_is_clean() {
        assert!(matches!(policy(&[]).verdict(&[]), Verdict::Clean));
    }

    #[test]
    fn limit_alerts_are_unscannable_by_default_never_clean() {
        let verdict = policy(&[]).verdict(&names(&["Heuristics.Limits.Exceeded.MaxFileSize"]));
        assert!(
            matches!(verdict, Verdict::Unscannable(ref u) if u.reason == UnscannableReason::LimitsExceeded),
            "{verdict:?}"
        );
        let verdict = policy(&[("limits", "infected")]).verdict(&names(&["Heuristics.Limits.Exceeded.MaxFileSize"]));
        assert!(matches!(verdict, Verdict::Infected(_)));
    }

    #[test]
    fn encrypted_archives_follow_policy() {
        let found = names(&["Heuristics.Encrypted.Zip"]);
        assert!(
            matches!(policy(&[]).verdict(&found), Verdict::Unscannable(ref u) if u.reason == UnscannableReason::Encrypted)
        );
        assert!(matches!(
            policy(&[("encrypted", "blocked")]).verdict(&found),
            Verdict::Blocked(_)
        ));
    }

    #[test]
    fn malware_wins_over_limit_alerts() {
        let found = names(&["Heuristics.Limits.Exceeded.MaxScanSize", "Win.Test.EICAR_HDB-1"]);
        match policy(&[]).verdict(&found) {
            Verdict::Infected(findings) => assert_eq!(findings[0].signature, "Win.Test.EICAR_HDB-1"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn pua_can_be_ignored() {
        let found = names(&["PUA.Win.Tool.Packed"]);
        assert!(matches!(policy(&[]).verdict(&found), Verdict::Infected(_)));
        assert!(matches!(policy(&[("pua", "ignore")]).verdict(&found), Verdict::Clean));
    }

    #[test]
    fn bad_settings_are_named() {
        let err = Policy::from_settings(&Settings::new(vec![(
            "limits".into(),
            SettingValue::Text("clean".into()),
        )]))
        .unwrap_err();
        assert!(
            matches!(&err, PluginError::InvalidSettings(m) if m.contains("`limits`")),
            "{err:?}"
        );
    }
}
